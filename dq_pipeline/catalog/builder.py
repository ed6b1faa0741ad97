"""Collects a catalog's entries while checking what every format must check (I6).

Keys must be non-empty, free of control characters, at most `KEY_MAX_LENGTH` characters (the
database column) and unique within the catalog; kinds are short lower-case words; a payload holds
no NaN or Infinity (Python's json and YAML read them, JSON and the record's jsonb have no such
value: refused by field, here rather than at the commit). Problems are collected and raised
together, naming each location.

Huge values. The embedded text of an entry is cut to its first `TEXT_MAX_CHARS` characters, with
a warning: the embedding model reads only its maximum sequence length (256 word pieces, about
1,000-1,500 characters, for all-MiniLM-L6-v2; 512-8,192 tokens for larger models), so nothing a
search can find is lost, and what is stored, hashed and sent to the model stays bounded. The payload
is kept whole in the record (the system of record holds the source's values as they are; a Qdrant
point carries only ids and hashes, see `sync/write/point_ids.py`, so its request size does not grow with
it); a payload over `PAYLOAD_WARN_BYTES` is accepted with a warning naming its largest field, one over
`PAYLOAD_MAX_BYTES` is refused as hostile. Texts shorter than the bound are unchanged, and so are
their content hashes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .entry import CatalogError, Entry, Problem, canonical_json
from .notices import warn_at
from .spool import EntrySpool

KEY_MAX_LENGTH = 512
TEXT_MAX_CHARS = 8192
PAYLOAD_WARN_BYTES = 1024 * 1024
PAYLOAD_MAX_BYTES = 64 * 1024 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
TEXT_FIELDS = ("applies_to", "expression", "severity")


def as_text(value: Any) -> str:
    """A rule, test or expression as readable text (a one-key mapping reads as `name: argument`)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict) and len(value) == 1:
        ((name, arg),) = value.items()
        return f"{name}: {arg if isinstance(arg, str) else canonical_json(arg)}"
    return canonical_json(value)


def describe(kind: str, title: str, fields: dict[str, Any]) -> str:
    """The text that is embedded: kind and name first, then what a searcher would look for.

    An entry with no description is still embedded from its kind, name, type, tags and rules.
    """
    head = f"{kind} {title}"
    if fields.get("type"):
        head += f" ({fields['type']})"
    parts = [head + (f": {fields['description']}" if fields.get("description") else "")]
    if fields.get("tags"):
        parts.append("Tags: " + ", ".join(str(t) for t in fields["tags"]))
    if fields.get("rules"):
        parts.append("Rules: " + "; ".join(as_text(r) for r in fields["rules"]))
    for name in TEXT_FIELDS:
        if fields.get(name) not in (None, ""):
            parts.append(f"{name.replace('_', ' ').capitalize()}: {as_text(fields[name])}")
    return ". ".join(p.rstrip(". ") for p in parts) + "."


@dataclass(frozen=True)
class Refused:
    """A record that cannot be an entry; reported with the other problems of its file."""

    reason: str


_spool: ContextVar[EntrySpool | None] = ContextVar("dq_entry_spool", default=None)


@contextmanager
def spooling(spool: EntrySpool) -> Iterator[EntrySpool]:
    """Within this block, the (first) collector of a parse writes its entries into `spool` instead
    of a list, so the parse holds no entry once it is written (a context variable: the formats keep
    their ``parse(path, display)`` signature)."""
    token = _spool.set(spool)
    try:
        yield spool
    finally:
        _spool.reset(token)


def _non_finite_field(payload_json: str, payload: dict[str, Any]) -> str | None:
    """The first payload field holding NaN or +-Infinity (Python's json and YAML's `.nan` read them;
    RFC 8259 and the record's jsonb do not), else None. The text is searched first: the strict
    encoder runs only on payloads that spell one of those words somewhere."""
    if "NaN" not in payload_json and "Infinity" not in payload_json:
        return None
    for name, value in payload.items():
        try:
            json.dumps(value, allow_nan=False, default=str)  # unsorted: keys of mixed types are no matter here
        except ValueError:
            return str(name)
    return None


class EntryCollector:
    """The entries of one parse, in a list or (inside `spooling`) in an entry spool on disk.

    Duplicate keys are found without keeping the keys: a spooled parse keeps only each key's
    hash, and looks a key whose hash it has seen up in the spool, which names where it was first.
    """

    def __init__(self, display: str):
        self.display = display
        self.problems: list[Problem] = []
        self._spool = _spool.get()
        if self._spool is not None:
            _spool.set(None)  # one parse, one collector writing to the spool
        self.entries: list[Entry] | EntrySpool = [] if self._spool is None else self._spool
        self._first_seen: dict[str, str] = {}
        self._seen_hashes: set[int] = set()

    def problem(self, location: str, reason: str) -> None:
        self.problems.append(Problem(location, reason))

    def add(
        self,
        location: str,
        key: str | None,
        kind: str,
        payload: dict[str, Any],
        *,
        title: str | None = None,
        text: str | None = None,
        key_source: str | None = None,
    ) -> Entry | None:
        """Add one entry; the text defaults to `describe(kind, title or key, payload)`. Empty values are dropped."""
        if not key:
            self.problem(location, "no entry key")
            return None
        if len(key) > KEY_MAX_LENGTH or _CONTROL.search(key):
            self.problem(location, f"invalid entry key {key[:80]!r}: control characters or longer than {KEY_MAX_LENGTH}")
            return None
        if not _KIND.match(kind):
            self.problem(location, f"invalid kind {kind!r}: use a short lower-case word")
            return None
        first = self._first_location(key, location)
        if first is not None:
            self.problem(
                location,
                f"duplicate entry key {key!r} (first at {first})" + (f"; the key is taken from {key_source}" if key_source else ""),
            )
            return None
        payload = {k: v for k, v in payload.items() if v not in (None, "", [], {})}
        text = text or describe(kind, title or key, payload)
        if len(text) > TEXT_MAX_CHARS:
            warn_at(
                self.display,
                location,
                f"entry {key[:80]!r}: embedded text of {len(text):,} characters cut to its first "
                f"{TEXT_MAX_CHARS:,} (the model reads less); the payload keeps the whole value",
            )
            text = text[:TEXT_MAX_CHARS]
        entry = Entry(key=key, kind=kind, text=text, payload=payload, location=location)
        not_json = _non_finite_field(entry.payload_json, payload)
        if not_json is not None:
            self.problem(
                location,
                f"entry {key[:80]!r}: field `{not_json}` holds NaN or Infinity, which JSON has no value for "
                "(PostgreSQL's jsonb refuses it); write it as text or leave it out",
            )
            return None
        size = len(entry.payload_json)
        if size > PAYLOAD_WARN_BYTES:
            field, field_size = max(((k, len(canonical_json(v))) for k, v in payload.items()), key=lambda kv: kv[1])
            if size > PAYLOAD_MAX_BYTES:
                self.problem(
                    location,
                    f"entry {key[:80]!r}: payload of {size:,} bytes (field `{field}`: {field_size:,}) "
                    f"exceeds {PAYLOAD_MAX_BYTES:,} bytes",
                )
                if self._spool is not None:  # never spooled: its later duplicates are found here
                    self._first_seen[key] = location
                return None
            warn_at(
                self.display,
                location,
                f"entry {key[:80]!r}: payload of {size:,} bytes (field `{field}`: {field_size:,}) is stored "
                "whole in the record; only the embedded text is bounded",
            )
        if self._spool is None:
            self.entries.append(entry)  # type: ignore[union-attr]
        else:
            self._spool.add(entry)
        return entry

    def _first_location(self, key: str, location: str) -> str | None:
        """Where an entry with this key was added before, or None (and `key` is remembered)."""
        if self._spool is None:
            first = self._first_seen.get(key)
            if first is None:
                self._first_seen[key] = location
            return first
        fingerprint = hash(key)
        if fingerprint in self._seen_hashes:
            # a duplicate (of a spooled entry, or of one refused after its key was seen), or a collision of hashes
            return self._first_seen.get(key) or self._spool.location_of(key)
        self._seen_hashes.add(fingerprint)
        return None

    def finish(self) -> list[Entry] | EntrySpool:
        if self.problems:
            raise CatalogError(self.display, self.problems)
        return self.entries if self._spool is None else self._spool.seal()
