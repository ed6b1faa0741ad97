"""Generic catalog records (from CSV/JSON/JSONL/YAML) validated and turned into entries.

Recognised fields: `key` or `id` (explicit entry key), `table`, `column`, `kind`, `name`,
`description`, `type`/`data_type`, `tags`, `rules`/`tests`. In CSV, `tags` and `rules` are one
string separated by `|`. Every other field is kept in the payload and, when it is
`applies_to`, `expression` or `severity`, also in the embedded text. The entry key is the explicit
key, else `table.column`, else `table`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from .entry import CatalogError, Entry, Problem, canonical_json

KEY_MAX_LENGTH = 512
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
TEXT_FIELDS = ("applies_to", "expression", "severity")


def _split_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split("|") if part.strip()]
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict) and len(value) == 1:
        ((name, arg),) = value.items()
        return f"{name}: {canonical_json(arg) if not isinstance(arg, str) else arg}"
    return canonical_json(value)


class GenericRecord(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True, populate_by_name=True)

    key: str | None = Field(default=None, validation_alias=AliasChoices("key", "id"))
    table: str | None = None
    column: str | None = None
    kind: str | None = None
    name: str | None = None
    description: str | None = None
    type: str | None = Field(default=None, validation_alias=AliasChoices("type", "data_type"))
    tags: list[str] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list, validation_alias=AliasChoices("rules", "tests"))

    @field_validator("key", "table", "column", "kind", "name", "description", "type", mode="before")
    @classmethod
    def _scalar_to_text(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value is None:
            return value
        return str(value)

    @field_validator("key", "table", "column", "kind", "name", "type", mode="after")
    @classmethod
    def _empty_is_missing(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        return [str(t).strip() for t in _split_list(value)] if not isinstance(value, dict) else value

    @field_validator("rules", mode="before")
    @classmethod
    def _rules(cls, value: Any) -> Any:
        value = _split_list(value)
        return [_as_text(rule) for rule in value] if isinstance(value, list) else value

    def entry_key(self) -> str | None:
        if self.key:
            return self.key
        if self.table and self.column:
            return f"{self.table}.{self.column}"
        return self.table

    def entry_kind(self) -> str:
        if self.kind:
            return self.kind.lower()
        if self.column:
            return "column"
        return "table" if self.table else "entry"


def describe(kind: str, title: str, fields: dict[str, Any]) -> str:
    """The text that is embedded: kind and name first, then what a searcher would look for."""
    head = f"{kind} {title}"
    if fields.get("type"):
        head += f" ({fields['type']})"
    parts = [head + (f": {fields['description']}" if fields.get("description") else "")]
    if fields.get("tags"):
        parts.append("Tags: " + ", ".join(fields["tags"]))
    if fields.get("rules"):
        parts.append("Rules: " + "; ".join(fields["rules"]))
    for name in TEXT_FIELDS:
        if fields.get(name) not in (None, ""):
            parts.append(f"{name.replace('_', ' ').capitalize()}: {_as_text(fields[name])}")
    return ". ".join(p.rstrip(". ") for p in parts) + "."


def _validation_reason(exc: ValidationError) -> str:
    return "; ".join(
        f"field {'.'.join(str(p) for p in err['loc']) or 'record'}: {err['msg']}" for err in exc.errors()
    )


def entries_from_records(records: Iterable[tuple[str, dict[str, Any]]], display: str) -> list[Entry]:
    """Validate every record and build entries; all problems are collected, then raised together."""
    entries: list[Entry] = []
    problems: list[Problem] = []
    first_seen: dict[str, str] = {}
    for location, raw in records:
        try:
            record = GenericRecord.model_validate(raw)
        except ValidationError as exc:
            problems.append(Problem(location, _validation_reason(exc)))
            continue
        key, kind = record.entry_key(), record.entry_kind()
        if key is None:
            problems.append(Problem(location, "no entry key: give `key` or `id`, or `table` (and `column`)"))
            continue
        if len(key) > KEY_MAX_LENGTH or _CONTROL.search(key):
            problems.append(Problem(location, f"invalid entry key {key[:80]!r}: control characters or too long"))
            continue
        if not _KIND.match(kind):
            problems.append(Problem(location, f"invalid kind {kind!r}: use a short lower-case word"))
            continue
        if key in first_seen:
            problems.append(Problem(location, f"duplicate entry key {key!r} (first at {first_seen[key]})"))
            continue
        first_seen[key] = location
        fields = record.model_dump(exclude={"key", "kind"}, exclude_none=True)
        fields.update(record.model_extra or {})
        payload = {k: v for k, v in fields.items() if v not in (None, "", [], {})}
        entries.append(Entry(key=key, kind=kind, text=describe(kind, key, payload), payload=payload, location=location))
    if problems:
        raise CatalogError(display, problems)
    return entries
