"""dbt docs catalog: ``catalog.json`` written by ``dbt docs generate`` (what the warehouse holds).

A catalog.json with a sibling dbt manifest (same folder, ``catalog`` in the file name replaced by
``manifest``, e.g. ``target/manifest.json``) yields NO entries of its own: the manifest's entries
already carry its content (column types, columns the project does not document, relation comment,
type and owner). It is still read and validated, so a broken catalog is refused here as well.
A standalone catalog.json yields one `table` entry per node and source (key: the dbt unique_id)
and one `column` entry per column (key ``<unique_id>.<column>``) with its type and comment.

Reads: `metadata.dbt_schema_version`, `nodes` and `sources` (metadata, columns). Ignores: table
`stats`, `errors`, other top-level keys. Streams the file (see toolkit.documents.json_sections), so size is no concern.
Refuses, naming the JSON path: invalid or truncated JSON, nesting deeper than 100 levels, nodes or
columns that are not objects. Warns: an embedded text cut to its first 8,192 characters or a payload over 1 MiB (see builder: the payload is kept whole).
Duplicate keys: refused in any object (dbt writes none; RFC 8259 leaves their meaning undefined).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..builder import EntryCollector
from ..entry import CatalogError, Entry, Problem
from . import Format
from .toolkit.dbt import schema_version, sibling
from .toolkit.documents import json_sections
from .toolkit.paths import member
from .toolkit.sniffing import artifact_kind, read_head
from .toolkit.values import type_name
from .toolkit.wording import compose_text, labelled


@dataclass
class CatalogColumn:
    name: str
    type: str | None
    comment: str | None
    index: float
    location: str


@dataclass
class CatalogTable:
    unique_id: str
    location: str
    database: str | None = None
    schema: str | None = None
    name: str | None = None
    relation_type: str | None = None
    comment: str | None = None
    owner: str | None = None
    columns: list[CatalogColumn] = field(default_factory=list)

    def column(self, name: str) -> CatalogColumn | None:
        for column in self.columns:
            if column.name == name:
                return column
        lowered = name.lower()
        return next((c for c in self.columns if c.name.lower() == lowered), None)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


def _table(section: str, uid: str, raw: Any, problems: list[Problem]) -> CatalogTable | None:
    location = member(section, uid)
    if not isinstance(raw, dict):
        problems.append(Problem(location, f"expected an object, found {type_name(raw)}"))
        return None
    table = CatalogTable(uid, location)
    meta = raw.get("metadata")
    if isinstance(meta, dict):
        table.database, table.schema, table.name = (
            _text(meta.get("database")),
            _text(meta.get("schema")),
            _text(meta.get("name")),
        )
        table.relation_type, table.comment, table.owner = (
            _text(meta.get("type")),
            _text(meta.get("comment")),
            _text(meta.get("owner")),
        )
    elif meta is not None:
        problems.append(Problem(f"{location}.metadata", f"expected an object, found {type_name(meta)}"))
    columns = raw.get("columns")
    if columns is None:
        return table
    if not isinstance(columns, dict):
        problems.append(
            Problem(
                f"{location}.columns", f"expected an object of columns by name, found {type_name(columns)}"
            )
        )
        return table
    seen: set[str] = set()
    for position, (key, column) in enumerate(columns.items()):
        where = member(f"{location}.columns", key)
        if not isinstance(column, dict):
            problems.append(Problem(where, f"expected an object, found {type_name(column)}"))
            continue
        name = column.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append(Problem(where, "column without `name`"))
            continue
        if name in seen:
            problems.append(Problem(where, f"duplicate column name {name!r}"))
            continue
        seen.add(name)
        index = column.get("index")
        order = (
            float(index)
            if isinstance(index, (int, float)) and not isinstance(index, bool)
            else float(position)
        )
        table.columns.append(
            CatalogColumn(name, _text(column.get("type")), _text(column.get("comment")), order, where)
        )
    table.columns.sort(key=lambda c: c.index)
    return table


def read_catalog(path: Path, display: str) -> dict[str, CatalogTable]:
    """Every node and source of a catalog.json by unique_id; raises CatalogError (all problems at once)."""
    problems: list[Problem] = []
    tables: dict[str, CatalogTable] = {}
    metadata: dict[str, Any] = {}
    for section, key, value in json_sections(path, display, ("metadata", "nodes", "sources")):
        if key is None:
            if value is not None:
                problems.append(Problem(section, f"expected an object, found {type_name(value)}"))
            continue
        if section == "metadata":
            metadata[key] = value
            continue
        table = _table(section, key, value, problems)
        if table is not None:
            if key in tables:
                problems.append(Problem(table.location, f"unique_id {key!r} also in {tables[key].location}"))
                continue
            tables[key] = table
    version = schema_version(metadata)
    if "/catalog/" not in version:
        problems.insert(
            0, Problem("metadata.dbt_schema_version", f"not a dbt catalog (found {version or 'nothing'!r})")
        )
    if problems:
        raise CatalogError(display, problems)
    return tables


def has_manifest(path: Path, display: str) -> bool:
    found = sibling(path, display, "catalog", "manifest")
    return found is not None and found[0].is_file() and artifact_kind(read_head(found[0])) == "manifest"


def _resource_type(uid: str) -> str:
    return uid.split(".", 1)[0]


def parse(path: Path, display: str) -> list[Entry]:
    tables = read_catalog(path, display)
    if has_manifest(path, display):
        return []  # the manifest's entries carry this catalog (see the module docstring)
    collector = EntryCollector(display)
    for uid, table in tables.items():
        relation = ".".join(p for p in (table.database, table.schema, table.name) if p)
        title = table.name or uid
        payload = {
            "resource_type": _resource_type(uid),
            "database": table.database,
            "schema": table.schema,
            "name": table.name,
            "relation_type": table.relation_type,
            "owner": table.owner,
            "description": table.comment,
        }
        text = compose_text(
            "table", title, payload, labelled([("Relation", relation), ("Relation type", table.relation_type)])
        )
        collector.add(table.location, uid, "table", payload, text=text)
        for column in table.columns:
            fields = {"name": column.name, "table": uid, "type": column.type, "description": column.comment}
            collector.add(
                column.location, f"{uid}.{column.name}", "column", fields, title=f"{title}.{column.name}"
            )
    return collector.finish()


FORMAT = Format(
    "dbt_catalog",
    (".json",),
    detect=lambda head: artifact_kind(head) == "catalog",
    parse=parse,
    context=lambda path, display: "manifest beside" if has_manifest(path, display) else "",
    watches=lambda path: [found[0]] if (found := sibling(path, path.name, "catalog", "manifest")) else [],
)
