"""Generic catalog records (from CSV/JSON/JSONL/YAML) validated and turned into entries.

Recognised fields: `key` or `id` (explicit entry key), `table`, `column`, `kind`, `name`,
`description`, `type`/`data_type`, `tags`, `rules`/`tests`. In CSV, `tags` and `rules` are one
string separated by `|`. Every other field is kept in the payload and, when it is
`applies_to`, `expression` or `severity`, also in the embedded text. The entry key is the explicit
key, else `table.column`, else `table`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from .builder import EntryCollector, Refused, as_text
from .entry import Entry


def _split_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split("|") if part.strip()]
    return value


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
        return [str(t).strip() for t in _split_list(value) if t is not None] if not isinstance(value, dict) else value

    @field_validator("rules", mode="before")
    @classmethod
    def _rules(cls, value: Any) -> Any:
        value = _split_list(value)
        return [as_text(rule) for rule in value] if isinstance(value, list) else value

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


def _validation_reason(exc: ValidationError) -> str:
    return "; ".join(
        f"field {'.'.join(str(p) for p in err['loc']) or 'record'}: {err['msg']}" for err in exc.errors()
    )


def entries_from_records(records: Iterable[tuple[str, Any]], display: str) -> list[Entry]:
    """Validate every record and build entries; all problems are collected, then raised together."""
    collector = EntryCollector(display)
    for location, raw in records:
        if isinstance(raw, Refused):
            collector.problem(location, raw.reason)
            continue
        try:
            record = GenericRecord.model_validate(raw)
        except ValidationError as exc:
            collector.problem(location, _validation_reason(exc))
            continue
        key = record.entry_key()
        if key is None:
            collector.problem(location, "no entry key: give `key` or `id`, or `table` (and `column`)")
            continue
        fields = record.model_dump(exclude={"key", "kind"}, exclude_none=True)
        fields.update(record.model_extra or {})
        collector.add(location, key, record.entry_kind(), fields)
    return collector.finish()
