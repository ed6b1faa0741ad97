"""dbt manifest: ``manifest.json`` (``metadata.dbt_schema_version`` .../manifest/vN.json).

Reads (entries): one per model, seed, snapshot (`nodes`) and source table (`sources`), keyed by the dbt
unique_id; one per column, keyed ``<unique_id>.<column>``; one per data test (generic and singular),
keyed by its unique_id and worded as "not_null on customers.customer_id" with its arguments,
severity and the node it attaches to (`attached_node`, else `depends_on`). Node and column texts
carry descriptions, tags, meta, materialization, relation and the tests that apply ("Rules: ...").
Descriptions resolve ``{{ doc(...) }}`` through the manifest's `docs` blocks; other Jinja is made
readable (toolkit.dbt.Readable). Disabled resources (the `disabled` section, `config.enabled: false`)
and the tests attached to them are left out.

A sibling ``catalog.json`` (see dbt_catalog) adds column types the manifest lacks, the columns the
project does not document (payload `documented: false`) and the relation comment, type and owner.

Refuses, naming the JSON path (line for syntax): invalid or truncated JSON, nesting deeper than 100
levels, a document that is not one object, sections and nodes that are not objects, a node without
`resource_type` or `name` or whose unique_id differs from its key, two columns of one name.
Warns: an embedded text cut to its first 8,192 characters or a payload over 1 MiB (see builder: the payload is kept whole).
Duplicate keys: refused in any object (dbt writes none; RFC 8259 leaves their meaning undefined).

Ignores: macros, exposures, metrics, semantic models, saved queries, unit tests, groups, selectors,
functions, parent/child maps, analyses and operations, compiled SQL.

Size: a manifest is often one multi-megabyte line. It is streamed in one pass (toolkit.documents.json_sections,
ijson): each node is built, reduced to the fields above and dropped, so memory is bounded by the
largest node plus the entries, and duplicate keys anywhere are still refused. Measured on a 103 MB
one-line manifest (the hubspot one x68): streaming alone 3.6 s and 21 MB peak RSS, where
``records.load_json`` takes 2.7 s and 432 MB before any entry exists; the whole parse, 124,644
entries, 6.3 s and 220 MB (the entries). The real 2.6 MB hubspot manifest: 0.1 s, 22 MB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..builder import EntryCollector
from ..entry import CatalogError, Entry, Problem
from . import Format
from .dbt_catalog import CatalogTable, read_catalog
from .toolkit.dbt import (
    NOT_ARGUMENTS,
    Readable,
    argument_text,
    meta_text,
    readable_payload,
    rule_text,
    schema_version,
    sibling,
    tag_list,
)
from .toolkit.documents import json_sections
from .toolkit.paths import member
from .toolkit.sniffing import artifact_kind, read_head
from .toolkit.values import type_name
from .toolkit.wording import compose_text, labelled

NODE_KINDS = ("model", "seed", "snapshot")
SECTIONS = ("metadata", "nodes", "sources", "docs", "disabled")
_REF = re.compile(r"""\b(ref|source)\s*\(([^)]*)\)""")
_QUOTED = re.compile(r"""['"]([^'"]*)['"]""")


@dataclass
class Column:
    name: str
    location: str
    description: str = ""
    type: str | None = None
    tags: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    rules: list[str] = field(default_factory=list)
    documented: bool = True


@dataclass
class Node:
    uid: str
    kind: str
    name: str
    location: str
    title: str
    package: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    tags: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    rules: list[str] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)
    column_types: dict[str, str] = field(default_factory=dict)


@dataclass
class Test:
    uid: str
    name: str
    location: str
    test: str | None  # the generic test (namespace.name), None for a singular test
    arguments: dict[str, Any]
    column: str | None
    attached: str | None
    depends_on: list[str]
    config: dict[str, Any]
    description: str
    tags: list[str]
    meta: dict[str, Any]
    package: str | None
    path: str | None


class _Reader:
    """Reduces each streamed node to what the entries need, collecting problems with their JSON path."""

    def __init__(self, display: str):
        self.display = display
        self.problems: list[Problem] = []
        self.metadata: dict[str, Any] = {}
        self.nodes: list[Node] = []
        self.tests: list[Test] = []
        self.docs: dict[tuple[str, str], str] = {}
        self.disabled: set[str] = set()

    def problem(self, location: str, reason: str) -> None:
        self.problems.append(Problem(location, reason))

    def mapping(self, raw: dict[str, Any], name: str, location: str) -> dict[str, Any]:
        value = raw.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(f"{location}.{name}", f"expected an object, found {type_name(value)}")
            return {}
        return value

    def text(self, raw: dict[str, Any], name: str) -> str:
        value = raw.get(name)
        return "" if value is None or isinstance(value, (dict, list)) else str(value)

    def take(self, section: str, key: str | None, value: Any) -> None:
        if key is None:
            if section == "disabled" and isinstance(value, list):  # manifests before v5: a list of nodes
                self.disabled.update(
                    n["unique_id"]
                    for n in value
                    if isinstance(n, dict) and isinstance(n.get("unique_id"), str)
                )
            elif value is not None:
                self.problem(section, f"expected an object, found {type_name(value)}")
            return
        if section == "metadata":
            self.metadata[key] = value
        elif section == "disabled":
            self.disabled.add(key)
        elif section == "docs":
            self.doc(key, value)
        else:
            self.node(section, key, value)

    def doc(self, key: str, raw: Any) -> None:
        location = member("docs", key)
        if not isinstance(raw, dict):
            self.problem(location, f"expected an object, found {type_name(raw)}")
            return
        name, package = raw.get("name"), raw.get("package_name")
        if not isinstance(name, str) or not name:
            self.problem(location, "doc block without `name`")
            return
        self.docs[(package if isinstance(package, str) else "", name)] = self.text(raw, "block_contents")

    def node(self, section: str, uid: str, raw: Any) -> None:
        location = member(section, uid)
        if not isinstance(raw, dict):
            self.problem(location, f"expected an object, found {type_name(raw)}")
            return
        kind = "source" if section == "sources" else raw.get("resource_type")
        if not isinstance(kind, str) or not kind:
            self.problem(location, "no `resource_type`")
            return
        if kind not in NODE_KINDS and kind not in ("source", "test"):
            return  # analyses, operations, unit tests...: not catalog entries
        config = self.mapping(raw, "config", location)
        if config.get("enabled") is False or raw.get("enabled") is False:
            self.disabled.add(uid)
            return
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            self.problem(location, "no `name`")
            return
        if raw.get("unique_id", uid) != uid:
            self.problem(location, f"unique_id {raw.get('unique_id')!r} differs from its key")
            return
        if kind == "test":
            self.test(uid, name, location, raw, config)
            return
        package = raw.get("package_name") if isinstance(raw.get("package_name"), str) else None
        source_name = self.text(raw, "source_name")
        node = Node(
            uid,
            kind,
            name,
            location,
            f"{source_name}.{name}" if kind == "source" and source_name else name,
            package,
        )
        node.description = self.text(raw, "description")
        node.tags = tag_list(raw.get("tags"), config.get("tags"))
        config_meta = config.get("meta") if isinstance(config.get("meta"), dict) else {}
        node.meta = {
            **self.mapping(raw, "source_meta", location),
            **config_meta,
            **self.mapping(raw, "meta", location),
        }
        relation = raw.get("identifier") if kind == "source" else raw.get("alias")
        node.payload = {
            "name": name,
            "package": package,
            "path": raw.get("original_file_path"),
            "materialized": config.get("materialized") if kind in ("model", "snapshot") else None,
            "database": raw.get("database"),
            "schema": raw.get("schema"),
            "relation": relation or name,
            "relation_name": raw.get("relation_name"),
            "source_name": source_name or None,
            "source_description": self.text(raw, "source_description") or None,
            "loader": raw.get("loader") or None,
            "access": raw.get("access") if kind == "model" else None,
        }
        types = config.get("column_types")
        if isinstance(types, dict):
            node.column_types = {
                str(k).lower(): str(v) for k, v in types.items() if isinstance(v, (str, int, float))
            }
        for constraint in _list(raw.get("constraints")):
            if isinstance(constraint, dict) and constraint.get("type"):
                cols = constraint.get("columns")
                node.rules.append(
                    f"constraint {constraint['type']}"
                    + (f" ({', '.join(map(str, cols))})" if isinstance(cols, list) and cols else "")
                )
        self.columns(node, raw)
        self.nodes.append(node)

    def columns(self, node: Node, raw: dict[str, Any]) -> None:
        columns = raw.get("columns")
        where = f"{node.location}.columns"
        if columns is None:
            return
        if not isinstance(columns, dict):
            self.problem(where, f"expected an object of columns by name, found {type_name(columns)}")
            return
        seen: dict[str, str] = {}
        for key, col in columns.items():
            location = member(where, key)
            if not isinstance(col, dict):
                self.problem(location, f"expected an object, found {type_name(col)}")
                continue
            name = col.get("name")
            if not isinstance(name, str) or not name.strip():
                self.problem(location, "column without `name`")
                continue
            if name in seen:
                self.problem(location, f"duplicate column name {name!r} (first at {seen[name]})")
                continue
            seen[name] = location
            config = self.mapping(col, "config", location)
            column = Column(name, location, self.text(col, "description"))
            data_type = col.get("data_type")
            column.type = str(data_type) if isinstance(data_type, (str, int)) and str(data_type) else None
            column.tags = tag_list(col.get("tags"), config.get("tags"))
            meta = self.mapping(col, "meta", location)
            config_meta = config.get("meta") if isinstance(config.get("meta"), dict) else {}
            column.meta = {**config_meta, **meta}
            for constraint in _list(col.get("constraints")):
                if isinstance(constraint, dict) and constraint.get("type"):
                    column.rules.append(f"constraint {constraint['type']}")
            node.columns.append(column)

    def test(self, uid: str, name: str, location: str, raw: dict[str, Any], config: dict[str, Any]) -> None:
        metadata = self.mapping(raw, "test_metadata", location)
        test_name = metadata.get("name") if isinstance(metadata.get("name"), str) else None
        namespace = metadata.get("namespace") if isinstance(metadata.get("namespace"), str) else None
        if test_name and namespace:
            test_name = f"{namespace}.{test_name}"
        kwargs = self.mapping(metadata, "kwargs", f"{location}.test_metadata")
        depends = self.mapping(raw, "depends_on", location).get("nodes") or []
        depends = [d for d in depends if isinstance(d, str)] if isinstance(depends, list) else []
        column = raw.get("column_name") or kwargs.get("column_name")
        attached = raw.get("attached_node")
        if not isinstance(attached, str) or not attached:
            attached = _attached(kwargs.get("model"), depends)
        self.tests.append(
            Test(
                uid,
                name,
                location,
                test_name,
                kwargs,
                str(column) if isinstance(column, (str, int)) else None,
                attached,
                depends,
                config,
                self.text(raw, "description"),
                tag_list(raw.get("tags"), config.get("tags")),
                self.mapping(raw, "meta", location),
                raw.get("package_name") if isinstance(raw.get("package_name"), str) else None,
                raw.get("original_file_path") if isinstance(raw.get("original_file_path"), str) else None,
            )
        )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _attached(model: Any, depends: list[str]) -> str | None:
    """The node a test attaches to, for manifests without `attached_node`: the one its `model` argument names."""
    if len(depends) <= 1:
        return depends[0] if depends else None
    names = (
        _QUOTED.findall(found.group(2)) if isinstance(model, str) and (found := _REF.search(model)) else []
    )
    for uid in depends:
        if names and uid.split(".")[-1] == names[-1]:
            return uid
    return depends[0]


def _relation(payload: dict[str, Any]) -> str:
    """``database.schema.identifier`` of what is built in the warehouse (an ephemeral model is not)."""
    if payload.get("materialized") == "ephemeral":
        return ""
    parts = [payload.get("database"), payload.get("schema"), payload.get("relation")]
    return ".".join(str(p) for p in parts if p) if all(isinstance(p, str) and p for p in parts[1:]) else ""


def _merge_catalog(node: Node, table: CatalogTable | None) -> None:
    """Fill types from catalog.json (then seed `column_types`) and add the columns only the warehouse knows."""
    if table is not None:
        known = {c.name.lower() for c in node.columns}
        for column in node.columns:
            found = table.column(column.name)
            if found is not None:
                column.type = column.type or found.type
                column.description = column.description or (found.comment or "")
        for found in table.columns:
            if found.name.lower() not in known:
                node.columns.append(
                    Column(found.name, found.location, found.comment or "", found.type, documented=False)
                )
        node.description = node.description or (table.comment or "")
        node.payload.update(relation_type=table.relation_type, owner=table.owner)
    for column in node.columns:
        column.type = column.type or node.column_types.get(column.name.lower())


def _companions(path: Path) -> list[Path]:
    found = sibling(path, path.name, "manifest", "catalog")
    return [found[0]] if found is not None and found[0].is_file() else []


def _catalog_beside(path: Path, display: str) -> tuple[dict[str, CatalogTable], list[Problem]]:
    found = sibling(path, display, "manifest", "catalog")
    if found is None or not found[0].is_file() or artifact_kind(read_head(found[0])) != "catalog":
        return {}, []
    try:
        return read_catalog(*found), []
    except CatalogError as exc:
        return {}, [
            Problem(f"{found[1]} (the catalog beside this manifest) {p.location}", p.reason)
            for p in exc.problems
        ]


def parse(path: Path, display: str) -> list[Entry]:
    reader = _Reader(display)
    for section, key, value in json_sections(path, display, SECTIONS):
        reader.take(section, key, value)
    version = schema_version(reader.metadata)
    if "/manifest/" not in version:
        reader.problems.insert(
            0, Problem("metadata.dbt_schema_version", f"not a dbt manifest (found {version or 'nothing'!r})")
        )
    tables, catalog_problems = _catalog_beside(path, display)
    reader.problems.extend(catalog_problems)
    if reader.problems:
        raise CatalogError(display, reader.problems)

    root = (
        reader.metadata.get("project_name") if isinstance(reader.metadata.get("project_name"), str) else None
    )
    readable = Readable(reader.docs, root)
    nodes = {n.uid: n for n in reader.nodes}
    tests = [t for t in reader.tests if t.attached not in reader.disabled]
    for node in reader.nodes:
        _merge_catalog(node, tables.get(node.uid))
    for test in tests:
        node = nodes.get(test.attached or "")
        if node is None:
            continue
        rule = _rule(test, readable)
        column = _column(node, test.column) if test.column else None
        if column is not None:
            column.rules.append(rule)
        else:
            node.rules.append(f"{rule} on {test.column}" if test.column else rule)

    collector = EntryCollector(display)
    ordered = [n for n in reader.nodes if n.kind != "source"] + [
        n for n in reader.nodes if n.kind == "source"
    ]
    for node in ordered:
        _add_node(collector, node, readable)
    for test in tests:
        _add_test(collector, test, nodes.get(test.attached or ""), readable)
    return collector.finish()


def _column(node: Node, name: str) -> Column | None:
    for column in node.columns:
        if column.name == name:
            return column
    lowered = name.lower()
    return next((c for c in node.columns if c.name.lower() == lowered), None)


def _rule(test: Test, readable: Readable) -> str:
    if test.test is None:
        return f"{test.name} (singular test)"
    arguments = dict(test.arguments)
    where = test.config.get("where")
    if isinstance(where, str) and where:
        arguments["where"] = where
    return rule_text(test.test, arguments, readable)


def _add_node(collector: EntryCollector, node: Node, readable: Readable) -> None:
    description = readable.text(node.description, node.package)
    meta = readable_payload(node.meta, readable)
    payload = {
        **node.payload,
        "description": description,
        "tags": node.tags,
        "meta": meta,
        "rules": node.rules,
    }
    if node.payload.get("source_description"):
        payload["source_description"] = readable.text(node.payload["source_description"], node.package)
    extras = [
        ("Materialized", payload.get("materialized")),
        ("Relation", _relation(payload)),
        ("Loader", payload.get("loader")),
        ("Meta", meta_text(meta)),
    ]
    text = compose_text(node.kind, node.title, payload, labelled(extras))
    collector.add(node.location, node.uid, node.kind, payload, text=text)
    for column in node.columns:
        column_meta = readable_payload(column.meta, readable)
        fields = {
            "name": column.name,
            "table": node.uid,
            "type": column.type,
            "description": readable.text(column.description, node.package),
            "tags": column.tags,
            "meta": column_meta,
            "rules": column.rules,
            "documented": column.documented,
        }
        text = compose_text(
            "column", f"{node.title}.{column.name}", fields, labelled([("Meta", meta_text(column_meta))])
        )
        collector.add(column.location, f"{node.uid}.{column.name}", "column", fields, text=text)


def _add_test(collector: EntryCollector, test: Test, node: Node | None, readable: Readable) -> None:
    target = node.title if node is not None else (test.attached or "").rsplit(".", 1)[-1]
    if test.column:
        target = f"{target}.{test.column}" if target else test.column
    shown = {k: v for k, v in test.arguments.items() if k not in NOT_ARGUMENTS}
    where = test.config.get("where")
    severity = test.config.get("severity")
    if test.test is None:
        targets = ", ".join(d.rsplit(".", 1)[-1] for d in test.depends_on)
        title = f"{test.name} (singular)" + (f" on {targets}" if targets else "")
    else:
        title = f"{test.test} on {target}" if target else test.test
        if shown:
            title += f" ({', '.join(f'{k}: {argument_text(v, readable)}' for k, v in shown.items())})"
    if isinstance(where, str) and where:
        title += f" where {readable.text(where)}"
    payload = {
        "name": test.name,
        "test": test.test or "singular",
        "column": test.column,
        "applies_to": test.attached,
        "arguments": readable_payload(shown, readable),
        "severity": str(severity).lower() if isinstance(severity, str) else None,
        "where": readable.text(where) if isinstance(where, str) else None,
        "depends_on": test.depends_on,
        "description": readable.text(test.description, test.package),
        "tags": test.tags,
        "meta": readable_payload(test.meta, readable),
        "package": test.package,
        "path": test.path,
    }
    collector.add(test.location, test.uid, "test", payload, title=title)


FORMAT = Format(
    "dbt_manifest",
    (".json",),
    detect=lambda head: artifact_kind(head) == "manifest",
    parse=parse,
    companions=_companions,
)
