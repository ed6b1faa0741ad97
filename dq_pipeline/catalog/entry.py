"""The unit of the index: one catalog entry, and the error raised for a catalog that fails validation."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import RefusedInput


def canonical_json(value: Any) -> str:
    """One spelling per value, so equal content always hashes equally."""
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    except TypeError:
        # Keys of mixed types (YAML allows `1:` beside `a:` in one mapping) cannot be sorted: sort
        # them by the text JSON writes for them. Only values that failed here take this path, so
        # every hash made before stays the same.
        return json.dumps(_text_keys(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def _text_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {_key_text(k): _text_keys(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_text_keys(v) for v in value]
    return value


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)  # as json.dumps spells a key: 1 -> "1", True -> "true", None -> "null"
    return str(key)


@dataclass(frozen=True, slots=True, init=False)
class Entry:
    """A parsed catalog entry.

    `location` says where the entry came from (``file:line`` or a record path) for error
    messages; it is not part of the content hash, so moving a row inside its file re-embeds nothing.

    Entries are kept compact (slots, the payload as its canonical JSON text, decoded on access, and
    the content hash computed once, here), and a parse of a whole catalog keeps them on disk
    (catalog/spool.py), not in memory.
    """

    key: str
    kind: str
    text: str
    payload_json: str
    location: str
    content_hash: str

    def __init__(self, key: str, kind: str, text: str, payload: Mapping[str, Any] | None = None, location: str = ""):
        payload_json = canonical_json(dict(payload or {}))
        # Byte for byte canonical_json({"kind", "payload", "text"}): the hashes of existing rows stay valid.
        body = f'{{"kind":{canonical_json(kind)},"payload":{payload_json},"text":{canonical_json(text)}}}'
        for name, value in (
            ("key", key),
            ("kind", sys.intern(kind)),  # a handful of distinct kinds, shared by every entry
            ("text", text),
            ("payload_json", payload_json),
            ("location", location),
            ("content_hash", hashlib.sha256(body.encode("utf-8")).hexdigest()),
        ):
            object.__setattr__(self, name, value)

    @classmethod
    def restore(cls, key: str, kind: str, text: str, payload_json: str, location: str, content_hash: str) -> Entry:
        """An entry read back from where it was kept (an entry spool), its hash not computed again."""
        entry = object.__new__(cls)
        for name, value in zip(cls.__slots__, (key, sys.intern(kind), text, payload_json, location, content_hash), strict=True):
            object.__setattr__(entry, name, value)
        return entry

    @property
    def payload(self) -> dict[str, Any]:
        """A fresh copy of the payload, as JSON values."""
        return json.loads(self.payload_json)


LOCATION_MAX = 240


def short_location(location: str, limit: int = LOCATION_MAX) -> str:
    """A record path cut in its middle when long (a 400-deep `children` path is ~5 KB): head … tail."""
    if len(location) <= limit:
        return location
    tail = limit * 2 // 3
    return f"{location[: limit - tail - 1]}…{location[-tail:]}"


@dataclass(frozen=True)
class Problem:
    """One reason a catalog was refused: where, and why."""

    location: str
    reason: str

    def __str__(self) -> str:
        return f"{short_location(self.location)}: {self.reason}"


class CatalogError(RefusedInput):
    """A catalog failed to parse or validate; it is refused whole (I6).

    The message names the file, the line or record and the reason for every problem found, up to
    `MAX_REPORTED` (the first ones, in file order, then their count), each location shortened to
    `LOCATION_MAX` characters: a broken million-row file or a 400-deep record path does not produce
    a megabyte of error. `problems` holds the first `MAX_KEPT` of them.
    """

    MAX_REPORTED = 20
    MAX_KEPT = 1000

    def __init__(self, path: str, problems: list[Problem]):
        self.path = path
        self.count = len(problems)
        self.problems = problems[: self.MAX_KEPT]
        shown = problems[: self.MAX_REPORTED]
        more = len(problems) - len(shown)
        lines = [str(p) for p in shown]
        if more > 0:
            lines.append(f"... and {more} more problem(s)")
        summary = f"catalog {path} refused: {len(problems)} problem(s)"
        super().__init__(summary + "\n  " + "\n  ".join(lines) if lines else summary)

    @classmethod
    def single(cls, path: str, location: str, reason: str) -> CatalogError:
        return cls(path, [Problem(location, reason)])
