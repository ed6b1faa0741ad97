"""What the head of a file shows, for detection: formats are told apart by content before a parse."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import ijson

from ...source import nesting_offset

HEAD_BYTES = 65536


def read_head(path: Path, size: int = HEAD_BYTES) -> str:
    """The file's first bytes as text: enough to tell its format, never the whole of a large file."""
    with path.open("rb") as handle:
        return handle.read(size).decode("utf-8-sig", errors="replace")


@dataclass(frozen=True)
class Outline:
    """What a JSON head shows of the document's structure: the root type and each object's keys.

    Prefixes are ijson's: "" is the root, "dataset.item" any item of the root's `dataset` list.
    """

    root: str | None
    keys: frozenset[tuple[str, str]]

    def has(self, prefix: str, *names: str) -> bool:
        return any((prefix, name) in self.keys for name in names)


@lru_cache(maxsize=16)
def outline(head: str) -> Outline:
    """Parse as much of the head as is valid JSON (it is usually cut short) and note the keys seen.

    Only the head up to where it nests deeper than `MAX_NESTING` is sniffed: ijson's prefixes grow
    with the depth, so a 64 KB run of `[` would otherwise cost memory in the square of the depth
    (~10 GB). The parser then refuses such a file by name.
    """
    stripped = head.lstrip()
    if not stripped.startswith(("{", "[")):
        return Outline(None, frozenset())
    root = "object" if stripped.startswith("{") else "array"
    too_deep = nesting_offset(stripped)
    if too_deep is not None:
        stripped = stripped[:too_deep]
    keys: set[tuple[str, str]] = set()
    try:
        for prefix, event, value in ijson.parse(io.BytesIO(stripped.encode("utf-8"))):
            if event == "map_key":
                keys.add((prefix, value))
    except (ijson.JSONError, ValueError, UnicodeError):
        pass  # the head ends mid-document, or the file is broken: what was seen still counts
    return Outline(root, frozenset(keys))


_YAML_TOP_KEY = re.compile(
    r"""^(?:"([^"\n]+)"|'([^'\n]+)'|([^\s#'"\-?:{}\[\],][^:\n]*?))[ \t]*:(?:[ \t]|$)""", re.M
)


def yaml_top_keys(head: str) -> set[str]:
    """Keys written at the start of a line in a YAML head (the document's top-level keys)."""
    return {(a or b or c).strip() for a, b, c in _YAML_TOP_KEY.findall(head.replace("\r\n", "\n"))}


_DBT_ARTIFACT = re.compile(r'"dbt_schema_version"\s*:\s*"[^"]*/(manifest|catalog)/v\d+\.json"')


def artifact_kind(head: str) -> str | None:
    """`manifest` or `catalog` for the head of a dbt JSON artifact (its metadata comes first), else None."""
    found = _DBT_ARTIFACT.search(head)
    return found.group(1) if found else None
