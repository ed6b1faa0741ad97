"""Generic catalog records (from CSV/JSON/JSONL/YAML) validated and turned into entries.

Recognised fields (the first spelling present is used; the common names of data dictionaries are
understood): `key` or `id` (explicit entry key), `table` (`table_name`), `column` (`column_name`,
`field_name`), `kind`, `name`, `description` (`definition`, `column_description`), `type`
(`data_type`, `datatype`), `tags`, `rules`/`tests`. In CSV, `tags` and `rules` are one string
separated by `|`; elsewhere a list, or one text or number (`tags: 5` is the tag "5", as in CSV). Every other field is kept in the payload and, when it is `applies_to`,
`expression` or `severity`, also in the embedded text. The entry key is the explicit key, else
`table.column`, else `table`.

A `key` column of a data dictionary often says what the column is to its table (PK, FK, NA...):
on a row that names a table and a column, a `key` holding such a marker is kept as `key_role`,
not taken as the entry key. Per file, ``.dq-formats.yaml`` may map columns explicitly (see
formats/__init__.py), e.g. ``{"dict/*.csv": {format: csv, columns: {table: TABNAME, key: null}}}``.
Errors about keys say which column the key was taken from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from .builder import EntryCollector, Refused, as_text
from .entry import Entry

RENAME_HINT = "or map this file's columns in .dq-formats.yaml (columns: {table: ..., column: ...})"


def _split_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split("|") if part.strip()]
    return value


class GenericRecord(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True, populate_by_name=True)

    key: str | None = Field(default=None, validation_alias=AliasChoices("key", "id"))
    table: str | None = Field(default=None, validation_alias=AliasChoices("table", "table_name"))
    column: str | None = Field(default=None, validation_alias=AliasChoices("column", "column_name", "field_name"))
    kind: str | None = None
    name: str | None = None
    description: str | None = Field(
        default=None, validation_alias=AliasChoices("description", "definition", "column_description")
    )
    type: str | None = Field(default=None, validation_alias=AliasChoices("type", "data_type", "datatype"))
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
        # A lone number is one tag, as the same cell of a CSV file is; any other non-list (an
        # object, a boolean) is left to pydantic, which refuses it naming the field.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return [str(value)]
        value = _split_list(value)
        return [str(t).strip() for t in value if t is not None] if isinstance(value, list) else value

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


# What a data dictionary's `key` column says about a column (not an entry key).
_KEY_ROLE = re.compile(
    r"^(?:pk|fk|uk|ak|bk|nk|sk|pk\s*[,/&+]\s*fk|fk\s*[,/&+]\s*pk|na|n/a|none|no|yes|y|n|-|"
    r"primary(?: key)?|foreign(?: key)?|unique(?: key)?)$",
    re.I,
)
_ALIASES = {"key": ("key", "id"), "table": ("table", "table_name"), "column": ("column", "column_name", "field_name")}


def _first(raw: dict[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        if name in raw and raw[name] not in (None, ""):
            return name
    return None


def _key_role(raw: dict[str, Any]) -> dict[str, Any]:
    """A row naming a table and a column whose `key` is a role marker (PK, FK, NA...): `key_role`."""
    value = raw.get("key")
    if (
        isinstance(value, str)
        and _KEY_ROLE.match(value.strip())
        and _first(raw, _ALIASES["table"])
        and _first(raw, _ALIASES["column"])
        and "key_role" not in raw
    ):
        raw = dict(raw)
        raw["key_role"] = raw.pop("key").strip()
    return raw


def _key_source(raw: dict[str, Any], record: GenericRecord) -> str:
    if record.key:
        return f"column `{_first(raw, _ALIASES['key'])}`"
    table = _first(raw, _ALIASES["table"])
    if record.column:
        return f"columns `{table}` + `{_first(raw, _ALIASES['column'])}`"
    return f"column `{table}`"


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
        raw = _key_role(raw) if isinstance(raw, dict) else raw
        try:
            record = GenericRecord.model_validate(raw)
        except ValidationError as exc:
            collector.problem(location, _validation_reason(exc))
            continue
        key = record.entry_key()
        if key is None:
            found = ", ".join(str(k) for k in raw)[:200] if isinstance(raw, dict) else ""
            collector.problem(
                location,
                "no entry key: give `key` or `id`, or `table`/`table_name` (and `column`/`column_name`)"
                + (f"; this record has: {found}" if found else "")
                + (f"; {RENAME_HINT}" if isinstance(raw, dict) else ""),
            )
            continue
        fields = record.model_dump(exclude={"key", "kind"}, exclude_none=True)
        fields.update(record.model_extra or {})
        collector.add(location, key, record.entry_kind(), fields, key_source=_key_source(raw, record))
    return collector.finish()
