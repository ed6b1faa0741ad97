"""Frictionless Data: Data Packages (datapackage.json / .yaml / .yml) and standalone Table Schemas.

Reads a package (entry kind `dataset`, key: its `name`, else `id`, else the file's catalog path), each
resource (kind `table`, key ``<package>/<resource>``: title, description, path, format, media type,
licenses, primary/foreign keys, missing values, schema reference) and each field of an inline schema
(kind `column`, key ``<package>/<resource>.<field>``: type, format, title, description, examples, and
its constraints as rules: "required", "unique", "enum: a, b", "minimum: 0", "pattern: ..."; primary and
foreign keys too). A standalone Table Schema (top-level `fields`) is one `table` entry keyed by its
`name` (else the file's catalog path) with its columns keyed ``<schema>.<field>``.
A resource whose `schema` is a URL or path string is kept with the reference noted; it is never
fetched (no network, no other file), so it has no columns.
Ignores: inline `data` rows (counted only), dialects, encodings, sources and contributors beyond their
titles, vocabulary mappings on fields (`skos:*`, `rdfType`), the example `resources` of a Table Schema.
Refuses, naming the record path (and the line, in YAML): a resource or field without a
`name`, `resources`/`fields` that are not lists of objects, `constraints` that are not an object,
primary or foreign keys naming fields the schema does not have, two resources or fields with one name,
truncated JSON or YAML, nesting deeper than 100 levels, YAML alias bombs.
Warns: a key repeated in one JSON object or YAML mapping (the last value is used; line and key
named); a null item in `keywords` (skipped); an embedded text cut to its first 8,192 characters or
a payload over 1 MiB (see builder: the payload is kept whole).
Duplicate keys: accepted with a warning, the last value winning, in JSON and in YAML, because that
is what the format's own tool does: frictionless-py reads a descriptor with Python's `json.loads`
or PyYAML's `safe_load`, which keep the last value of a repeated key without an error, and then
validates the result. Two resources or fields with one `name` are another matter and stay refused
(each would be one entry key). YAML anchors and merge keys are read, bounded.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

from ..builder import EntryCollector
from ..entry import CatalogError, Entry
from . import Format
from .toolkit.documents import YAML_SUFFIXES, Document, load_document
from .toolkit.paths import at
from .toolkit.sniffing import outline, yaml_top_keys
from .toolkit.values import Bad, items, jsonable, mapping, scalar_text, text_list, type_name
from .toolkit.wording import compose_text, join_text, listing, show

_FLAGS = ("required", "unique")
TOOL = "frictionless-py"  # whose duplicate-key rule this reader follows (module header)
_YAML_FIELD_NAME = re.compile(r"^\s*-\s+name\s*:", re.M)


def detect(head: str) -> bool:
    shape = outline(head)
    if shape.root is None:  # YAML
        keys = yaml_top_keys(head)
        return "resources" in keys or ("fields" in keys and bool(_YAML_FIELD_NAME.search(head)))
    if shape.root != "object":
        return False
    if shape.has("", "resources"):
        return True  # a Data Package: top-level `resources` list
    # A Table Schema: top-level `fields` whose objects carry `name` (and usually `type`).
    return shape.has("", "fields") and shape.has("fields.item", "name")


def _names(value: Any, where: str) -> list[str]:
    """A key's field names: one name or a list of names."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise Bad(where, f"expected a field name or a list of field names, found {type_name(value)}")


def _licenses(holder: dict[str, Any], doc: Document, path: str) -> list[str]:
    found: list[str] = []
    raw = holder.get("licenses", holder.get("license"))
    for i, item in enumerate(raw if isinstance(raw, list) else [] if raw is None else [raw]):
        where = at(at(path, "licenses"), i) if isinstance(raw, list) else at(path, "license")
        if isinstance(item, dict):
            label = scalar_text(item.get("name"), at(where, "name")) or scalar_text(item.get("title"), at(where, "title"))
            label = label or scalar_text(item.get("path"), at(where, "path"))
        else:
            label = scalar_text(item, doc.where(holder, where), "a license")
        if label:
            found.append(label)
    return found


def _titles(value: Any, where: str) -> list[str]:
    """Titles (or names) of sources / contributors; anything else in them is left out."""
    found = []
    for i, item in enumerate(items(value, where, f"`{where}`")):
        if isinstance(item, dict):
            label = scalar_text(item.get("title"), at(at(where, i), "title")) or scalar_text(
                item.get("name"), at(at(where, i), "name")
            )
        else:
            label = scalar_text(item, at(where, i))
        if label:
            found.append(label)
    return found


class _Schema:
    """One Table Schema's fields, checked and turned into column entries."""

    def __init__(self, doc: Document, collector: EntryCollector, schema: dict[str, Any], path: str):
        self.doc = doc
        self.collector = collector
        self.schema = schema
        self.path = path
        where = doc.where(schema, at(path, "fields"))
        fields = items(schema.get("fields"), where, "`fields`", required=True)
        self.fields: list[tuple[str, str, str, dict[str, Any]]] = []
        for i, field in enumerate(fields):
            fpath = at(at(path, "fields"), i)
            try:
                if not isinstance(field, dict):
                    raise Bad(fpath, f"a field must be an object, found {type_name(field)}")
                name = scalar_text(field.get("name"), doc.where(field, at(fpath, "name")), "a field name")
                if not name:
                    raise Bad(doc.where(field, fpath), "a field needs a non-empty `name`")
                self.fields.append((doc.where(field, fpath), fpath, name, field))
            except Bad as exc:
                collector.problem(exc.location, exc.reason)
        known = {name for _, _, name, _ in self.fields}
        self.primary_key: list[str] = []
        if schema.get("primaryKey") not in (None, [], ""):
            self.primary_key = self._known(schema["primaryKey"], at(path, "primaryKey"), known)
        self.foreign_keys: list[dict[str, Any]] = []
        for i, fk in enumerate(
            items(schema.get("foreignKeys"), doc.where(schema, at(path, "foreignKeys")), "`foreignKeys`")
        ):
            fk_path = at(at(path, "foreignKeys"), i)
            try:
                fk = mapping(fk, fk_path, "a foreign key")
                local = self._known(fk.get("fields"), at(fk_path, "fields"), known)
                reference = mapping(fk.get("reference"), at(fk_path, "reference"), "`reference`")
                if not reference:
                    raise Bad(fk_path, "a foreign key needs a `reference`")
                target = scalar_text(reference.get("resource"), at(at(fk_path, "reference"), "resource")) or ""
                remote = _names(reference.get("fields"), at(at(fk_path, "reference"), "fields"))
                if len(remote) != len(local):
                    raise Bad(fk_path, f"{len(local)} local field(s) but {len(remote)} referenced field(s)")
                self.foreign_keys.append(
                    {"fields": local, "reference": {"resource": target, "fields": remote}}
                )
            except Bad as exc:
                collector.problem(exc.location, exc.reason)
        missing = items(
            schema.get("missingValues"), doc.where(schema, at(path, "missingValues")), "`missingValues`"
        )
        # "" is a real missing-value marker (an empty cell), so blanks are kept here.
        self.missing_values = [
            v if isinstance(v, str) else scalar_text(v, at(at(path, "missingValues"), i))
            for i, v in enumerate(missing)
        ]

    def _known(self, value: Any, where: str, known: set[str]) -> list[str]:
        try:
            names = _names(value, where)
        except Bad as exc:
            self.collector.problem(exc.location, exc.reason)
            return []
        unknown = [n for n in names if n not in known]
        if unknown:
            self.collector.problem(where, f"names field(s) the schema does not have: {', '.join(unknown)}")
        return names

    def key_payload(self) -> dict[str, Any]:
        return {
            "primary_key": self.primary_key,
            "foreign_keys": self.foreign_keys,
            "missing_values": self.missing_values,
        }

    def column_names(self) -> list[str]:
        return [name for _, _, name, _ in self.fields]

    def add_columns(self, table_key: str, table_name: str) -> None:
        for location, path, name, field in self.fields:
            try:
                self._add_column(location, path, table_key, table_name, name, field)
            except Bad as exc:
                self.collector.problem(exc.location, exc.reason)

    def _add_column(
        self, location: str, fpath: str, table_key: str, table_name: str, name: str, field: dict[str, Any]
    ) -> None:
        def path(key: str) -> str:
            return self.doc.where(field, at(fpath, key))

        ftype = scalar_text(field.get("type"), path("type"), "a type name")
        fmt = scalar_text(field.get("format"), path("format"), "a format")
        title = scalar_text(field.get("title"), path("title"))
        description = scalar_text(field.get("description"), path("description"))
        constraints = mapping(field.get("constraints"), path("constraints"), "`constraints`")
        rules: list[str] = []
        if name in self.primary_key:
            rules.append(
                "primary key"
                if len(self.primary_key) == 1
                else f"part of primary key ({', '.join(self.primary_key)})"
            )
        references = []
        for fk in self.foreign_keys:
            if name in fk["fields"]:
                target = fk["reference"]["fields"][fk["fields"].index(name)]
                resource = fk["reference"]["resource"]
                ref = f"{resource}.{target}" if resource else target
                references.append(ref)
                rules.append(f"foreign key to {ref}")
        for rule, value in constraints.items():
            if rule in _FLAGS and isinstance(value, bool):
                if value:
                    rules.append(rule)
            elif rule == "enum":
                rules.append(f"enum: {listing(value) if isinstance(value, list) else show(value)}")
            else:
                rules.append(f"{rule}: {show(value)}")
        examples = [field[k] for k in ("example",) if k in field and field[k] not in (None, "")]
        examples += [
            v for v in items(field.get("examples"), path("examples"), "`examples`") if v not in (None, "")
        ]
        payload = {
            "table": table_key,
            "name": name,
            "title": title,
            "description": description,
            "type": ftype,
            "format": fmt if fmt != "default" else None,
            "constraints": jsonable(constraints),
            "rules": rules,
            "examples": jsonable(examples),
            "primary_key": name in self.primary_key or None,
            "references": references,
        }
        extras = []
        if payload["format"]:
            extras.append(f"Format: {fmt}")
        if examples:
            extras.append(f"Examples: {listing(examples, 5)}")
        text = compose_text(
            "column",
            f"{table_name}.{name}",
            {"type": ftype, "description": join_text(title, description), "rules": rules},
            extras,
        )
        self.collector.add(location, f"{table_key}.{name}", "column", payload, text=text)


def _fallback_key(display: str) -> str:
    return str(PurePosixPath(display).with_suffix(""))


def _table_text(
    kind: str, name: str, fields: dict[str, Any], extras: list[str], schema: _Schema | None
) -> str:
    if schema is not None:
        columns = schema.column_names()
        if columns:
            extras.append(f"Columns: {listing(columns, 40)}")
        if schema.primary_key:
            extras.append(f"Primary key: {', '.join(schema.primary_key)}")
    return compose_text(kind, name, fields, extras)


def _parse_table_schema(doc: Document, collector: EntryCollector, display: str) -> None:
    root = doc.value
    name = scalar_text(root.get("name"), doc.where(root, "name"), "a schema name")
    key = name or _fallback_key(display)
    title = scalar_text(root.get("title"), "title")
    description = scalar_text(root.get("description"), "description")
    schema = _Schema(doc, collector, root, "")
    payload = {
        "name": name,
        "title": title,
        "description": description,
        "version": scalar_text(root.get("version"), "version"),
        "homepage": scalar_text(root.get("homepage"), "homepage"),
        "profile": scalar_text(root.get("$schema", root.get("profile")), "$schema"),
        "licenses": _licenses(root, doc, ""),
        **schema.key_payload(),
    }
    extras = [f"Licenses: {', '.join(payload['licenses'])}"] if payload["licenses"] else []
    text = _table_text(
        "table", name or title or key, {"description": join_text(title, description)}, extras, schema
    )
    collector.add(doc.where(root, "document"), key, "table", jsonable(payload), text=text)
    schema.add_columns(key, name or key)


def _parse_resource(
    doc: Document, collector: EntryCollector, package: str, i: int, resource: Any, seen: dict[str, str]
) -> None:
    path = at("resources", i)
    if not isinstance(resource, dict):
        raise Bad(path, f"a resource must be an object, found {type_name(resource)}")
    location = doc.where(resource, path)
    name = scalar_text(resource.get("name"), at(path, "name"), "a resource name")
    if not name:
        raise Bad(location, "a resource needs a non-empty `name`")
    if name in seen:
        raise Bad(location, f"duplicate resource name {name!r} (first at {seen[name]})")
    seen[name] = location
    title = scalar_text(resource.get("title"), at(path, "title"))
    description = scalar_text(resource.get("description"), at(path, "description"))
    raw_schema = resource.get("schema")
    schema: _Schema | None = None
    schema_ref = None
    if isinstance(raw_schema, dict):
        schema = _Schema(doc, collector, raw_schema, at(path, "schema"))
    elif raw_schema is not None:
        schema_ref = scalar_text(raw_schema, at(path, "schema"), "an inline schema object or a schema URL/path")
    data = resource.get("data")
    payload: dict[str, Any] = {
        "package": package,
        "name": name,
        "title": title,
        "description": description,
        "path": jsonable(resource.get("path"))
        if isinstance(resource.get("path"), list)
        else scalar_text(resource.get("path"), at(path, "path")),
        "format": scalar_text(resource.get("format"), at(path, "format")),
        "mediatype": scalar_text(resource.get("mediatype"), at(path, "mediatype")),
        "profile": scalar_text(resource.get("profile"), at(path, "profile")),
        "licenses": _licenses(resource, doc, path),
        "schema_reference": schema_ref,
        "inline_rows": len(data) if isinstance(data, list) else None,
    }
    if schema is not None:
        payload.update(schema.key_payload())
    extras = []
    fmt, media = payload["format"], payload["mediatype"]
    if fmt or media:
        extras.append(f"Format: {fmt} ({media})" if fmt and media else f"Format: {fmt or media}")
    if isinstance(payload["path"], str):
        extras.append(f"Path: {payload['path']}")
    if payload["licenses"]:
        extras.append(f"Licenses: {', '.join(payload['licenses'])}")
    if schema_ref:
        extras.append(f"Schema: {schema_ref} (referenced, not read)")
    key = f"{package}/{name}"
    text = _table_text("table", name, {"description": join_text(title, description)}, extras, schema)
    collector.add(location, key, "table", jsonable(payload), text=text)
    if schema is not None:
        schema.add_columns(key, name)


def _parse_package(doc: Document, collector: EntryCollector, display: str) -> None:
    root = doc.value
    name = scalar_text(root.get("name"), "name", "a package name")
    ident = scalar_text(root.get("id"), "id", "a package id")
    key = name or ident or _fallback_key(display)
    resources = items(root.get("resources"), doc.where(root, "resources"), "`resources`", required=True)
    title = scalar_text(root.get("title"), "title")
    description = scalar_text(root.get("description"), "description")
    keywords = text_list(root.get("keywords"), "keywords")
    names = [r.get("name") for r in resources if isinstance(r, dict) and isinstance(r.get("name"), str)]
    payload = {
        "name": name,
        "id": ident,
        "title": title,
        "description": description,
        "keywords": keywords,
        "version": scalar_text(root.get("version"), "version"),
        "homepage": scalar_text(root.get("homepage"), "homepage"),
        "profile": scalar_text(root.get("profile"), "profile"),
        "created": scalar_text(root.get("created"), "created"),
        "licenses": _licenses(root, doc, ""),
        "sources": _titles(root.get("sources"), "sources"),
        "contributors": _titles(root.get("contributors"), "contributors"),
        "resources": names,
    }
    extras = []
    if names:
        extras.append(f"Resources: {listing(names, 40)}")
    if payload["licenses"]:
        extras.append(f"Licenses: {', '.join(payload['licenses'])}")
    text = compose_text("dataset", key, {"description": join_text(title, description), "tags": keywords}, extras)
    collector.add(doc.where(root, "document"), key, "dataset", jsonable(payload), text=text)
    seen: dict[str, str] = {}
    for i, resource in enumerate(resources):
        try:
            _parse_resource(doc, collector, key, i, resource, seen)
        except Bad as exc:
            collector.problem(exc.location, exc.reason)


def parse(path: Path, display: str) -> list[Entry]:
    doc = load_document(path, display, duplicates="warn", tool=TOOL)
    if not isinstance(doc.value, dict):
        raise CatalogError.single(
            display,
            "document",
            f"expected a Data Package or Table Schema object, found {type_name(doc.value)}",
        )
    collector = EntryCollector(display)
    try:
        if "fields" in doc.value:
            _parse_table_schema(doc, collector, display)
        elif "resources" in doc.value:
            _parse_package(doc, collector, display)
        else:
            raise Bad("document", "neither a Data Package (`resources`) nor a Table Schema (`fields`)")
    except Bad as exc:
        collector.problem(exc.location, exc.reason)
    return collector.finish()


FORMAT = Format("frictionless", (".json", *YAML_SUFFIXES), detect=detect, parse=parse)
