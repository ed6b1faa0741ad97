"""dbt property files (``schema.yml``, ``_models.yml``...): YAML with `models`, `sources`, `seeds`, `snapshots`.

Detected by a top-level ``version: 2`` beside a dbt key, or (dbt 1.5+ made `version` optional) by
top-level keys that are all dbt property keys, one of them models/sources/seeds/snapshots.
Reads (entries): ``model.<name>``, ``seed.<name>``, ``snapshot.<name>``, ``source.<source>`` and
``source.<source>.<table>`` (kind `source`), their columns (``<parent key>.<column>``), and one per
data test under `data_tests:` or the older `tests:` (both at once is refused, as dbt does): a name
(``unique``) or a one-key mapping (``relationships: {to: ref('x'), field: id}``, the dbt 1.10
`arguments:` form, or `test_name:` with a custom `name:`), with `config`/`severity`/`where`.
Test keys: ``test.<test>.<target key>``, plus a hash of the arguments when it has any, so two tests
of one kind on one target differ and a key never depends on the order of the file.
Descriptions are made readable: ``{{ doc("x") }}`` becomes "x" in words (doc blocks live in other
files), other Jinja as in toolkit.dbt.Readable. `config.enabled: false` leaves a resource out.

Warns (accepted as dbt accepts them, each warning naming the file and both lines): a duplicate mapping key
(dbt >= 1.10 warns, the last value wins) and a duplicate column name in one model, seed, snapshot or
source table (dbt keeps the last definition: dbt1033 "Only the last definition will be used"; the
first one, its tests included, is left out). YAML anchors, aliases and merge keys (``<<: *cols``)
work as in dbt, an explicit key beside a merge overriding the merged value; alias expansion is
bounded (`records.ALIAS_BUDGET` nodes beyond those written) and so is nesting (`MAX_NESTING`).

Refuses, naming the line: invalid YAML, tags beyond the safe set, alias bombs, nesting deeper than
100 levels, a property file that is not a mapping or has a `version` other than 2, two models (seeds,
snapshots, sources, source tables) of one name in one file (dbt refuses duplicate patches), a
resource or column without `name`, lists and mappings of the wrong type, `tests` beside `data_tests`.
Also warns, as every format: an embedded text cut to its first 8,192 characters or a payload over 1 MiB (see builder: the payload is kept whole).
Duplicate keys: a mapping key given twice is a warning and the last value wins (dbt >= 1.10); a
duplicate column name likewise; two resources of one name are refused.

Ignores (without failing): semantic_models, metrics, saved_queries, unit_tests, exposures, macros,
analyses, groups, singular-test properties (top-level data_tests), functions, model `versions`,
freshness and other settings not listed above.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..builder import EntryCollector
from ..entry import Entry
from ..notices import warn_at
from ..source import read_text
from . import Format
from .records import load_yaml
from .toolkit.dbt import (
    NOT_ARGUMENTS,
    Readable,
    args_hash,
    argument_text,
    has_template,
    meta_text,
    readable_payload,
    rule_text,
    tag_list,
)
from .toolkit.values import type_name
from .toolkit.wording import compose_text, labelled

RESOURCES = ("models", "sources", "seeds", "snapshots")
IGNORED = (
    "version",
    "semantic_models",
    "metrics",
    "saved_queries",
    "unit_tests",
    "exposures",
    "macros",
    "analyses",
    "groups",
    "data_tests",
    "functions",
)
_TOP_KEY = re.compile(r"""^(?:"([^"]+)"|'([^']+)'|([A-Za-z_][\w-]*))[ \t]*:(?:[ \t]|$)""", re.M)
_VERSION_2 = re.compile(r"""^version[ \t]*:[ \t]*["']?2["']?[ \t]*(?:#.*)?$""", re.M)


def detect(head: str) -> bool:
    head = head.replace("\r\n", "\n")
    keys = {a or b or c for a, b, c in _TOP_KEY.findall(head)}
    if not keys & set(RESOURCES + IGNORED[1:]):
        return False
    if _VERSION_2.search(head):
        return True
    return bool(keys & set(RESOURCES)) and keys <= set(RESOURCES + IGNORED)


class _File:
    def __init__(self, display: str, lines: dict[int, int]):
        self.collector = EntryCollector(display)
        self.lines = lines
        self.readable = Readable()
        self.reported: set[tuple[str, str]] = set()

    def at(self, value: Any, path: str, parent: Any = None) -> str:
        """`line N (path)`: the line of this mapping, else of the nearest mapping holding it."""
        line = self.lines.get(id(value)) or self.lines.get(id(parent))
        return f"line {line} ({path})" if line else path

    def problem(self, location: str, reason: str) -> None:
        if (location, reason) not in self.reported:  # a value read twice is reported once
            self.reported.add((location, reason))
            self.collector.problem(location, reason)

    def items(self, holder: dict[str, Any], key: str, path: str) -> list[tuple[str, Any]]:
        """The list under `key` (missing or null: empty), each item with its path; a non-list is a problem."""
        value = holder.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(
                self.at(holder, f"{path}.{key}" if path else key),
                f"`{key}` must be a list, found {type_name(value)}",
            )
            return []
        return [(f"{path}.{key}[{i}]" if path else f"{key}[{i}]", item) for i, item in enumerate(value)]

    def mapping(self, holder: dict[str, Any], key: str, path: str) -> dict[str, Any]:
        value = holder.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(
                self.at(holder, f"{path}.{key}"), f"`{key}` must be a mapping, found {type_name(value)}"
            )
            return {}
        return value

    def named(self, item: Any, path: str, parent: Any, what: str) -> str | None:
        if not isinstance(item, dict):
            self.problem(self.at(item, path, parent), f"a {what} must be a mapping, found {type_name(item)}")
            return None
        name = item.get("name")
        if isinstance(name, (int, float)) and not isinstance(name, bool):
            name = str(name)
        if not isinstance(name, str) or not name.strip():
            self.problem(self.at(item, path), f"{what} without `name`")
            return None
        return name.strip()

    def text(self, value: Any) -> str:
        return (
            self.readable.text(value)
            if isinstance(value, (str, int, float)) and not isinstance(value, bool)
            else ""
        )

    def enabled(self, item: dict[str, Any], path: str) -> bool:
        config = self.mapping(item, "config", path)
        return config.get("enabled") is not False and item.get("enabled") is not False

    # --- resources ----------------------------------------------------------------------------

    def resources(self, doc: dict[str, Any], section: str) -> None:
        kind = section[:-1]
        seen: dict[str, str] = {}
        for path, item in self.items(doc, section, ""):
            name = self.named(item, path, doc, kind)
            if name is None:
                continue
            location = self.at(item, path)
            if name in seen:
                self.problem(location, f"duplicate {kind} name {name!r} (first at {seen[name]})")
                continue
            seen[name] = location
            if not self.enabled(item, path):
                continue
            if section == "sources":
                self.source(item, name, path, location)
            else:
                self.resource(item, kind, name, path, location)

    def resource(self, item: dict[str, Any], kind: str, name: str, path: str, location: str) -> None:
        config = self.mapping(item, "config", path)
        key = f"{kind}.{name}"
        column_types = config.get("column_types") if isinstance(config.get("column_types"), dict) else {}
        payload = {
            "name": name,
            "description": self.text(item.get("description")),
            "tags": tag_list(item.get("tags"), config.get("tags")),
            "meta": readable_payload(
                {**self.mapping(config, "meta", f"{path}.config"), **self.mapping(item, "meta", path)},
                self.readable,
            ),
            "materialized": config.get("materialized") if kind in ("model", "snapshot") else None,
            "access": item.get("access") or config.get("access"),
            "group": item.get("group") or config.get("group"),
            "rules": self.constraints(item),
        }
        payload = {k: v for k, v in payload.items() if not has_template(v)}
        columns = self.columns(item, path, key, name, {str(k).lower(): v for k, v in column_types.items()})
        payload["rules"] += self.tests(item, path, key, name, None)
        extras = [("Materialized", payload.get("materialized")), ("Meta", meta_text(payload["meta"]))]
        text = compose_text(kind, name, payload, labelled(extras))
        self.collector.add(location, key, kind, payload, text=text)
        self.add_columns(columns)

    def source(self, item: dict[str, Any], name: str, path: str, location: str) -> None:
        key = f"source.{name}"
        config = self.mapping(item, "config", path)
        database, schema = item.get("database"), item.get("schema", name)
        payload = {
            "name": name,
            "description": self.text(item.get("description")),
            "tags": tag_list(item.get("tags"), config.get("tags")),
            "meta": readable_payload(
                {**self.mapping(config, "meta", f"{path}.config"), **self.mapping(item, "meta", path)},
                self.readable,
            ),
            "database": database,
            "schema": schema,
            "loader": item.get("loader"),
        }
        extras = [("Loader", self.text(payload["loader"])), ("Meta", meta_text(payload["meta"]))]
        text = compose_text("source", name, payload, labelled(extras))
        self.collector.add(location, key, "source", payload, text=text)
        seen: dict[str, str] = {}
        for table_path, table in self.items(item, "tables", path):
            table_name = self.named(table, table_path, item, "source table")
            if table_name is None:
                continue
            table_location = self.at(table, table_path)
            if table_name in seen:
                self.problem(
                    table_location,
                    f"duplicate table name {table_name!r} in source {name!r} (first at {seen[table_name]})",
                )
                continue
            seen[table_name] = table_location
            if self.enabled(table, table_path):
                self.source_table(table, name, table_name, table_path, table_location, database, schema)

    def source_table(
        self,
        table: dict[str, Any],
        source: str,
        name: str,
        path: str,
        location: str,
        database: Any,
        schema: Any,
    ) -> None:
        key = f"source.{source}.{name}"
        title = f"{source}.{name}"
        config = self.mapping(table, "config", path)
        identifier = table.get("identifier") or name
        payload = {
            "name": name,
            "source_name": source,
            "description": self.text(table.get("description")),
            "tags": tag_list(table.get("tags"), config.get("tags")),
            "meta": readable_payload(
                {**self.mapping(config, "meta", f"{path}.config"), **self.mapping(table, "meta", path)},
                self.readable,
            ),
            "database": database,
            "schema": schema,
            "identifier": identifier,
            "rules": self.constraints(table),
        }
        columns = self.columns(table, path, key, title, {})
        payload["rules"] += self.tests(table, path, key, title, None)
        parts = [database, schema, identifier] if database else [schema, identifier]
        literal = all(isinstance(p, str) and p and not has_template(p) for p in parts)
        extras = [("Relation", ".".join(parts) if literal else ""), ("Meta", meta_text(payload["meta"]))]
        text = compose_text("source", title, payload, labelled(extras))
        self.collector.add(location, key, "source", payload, text=text)
        self.add_columns(columns)

    def constraints(self, item: dict[str, Any]) -> list[str]:
        rules = []
        given = item.get("constraints")
        for constraint in given if isinstance(given, list) else []:
            if isinstance(constraint, dict) and isinstance(constraint.get("type"), str):
                cols = constraint.get("columns")
                rules.append(
                    f"constraint {constraint['type']}"
                    + (f" ({', '.join(map(str, cols))})" if isinstance(cols, list) and cols else "")
                )
        return rules

    def columns(
        self, item: dict[str, Any], path: str, parent_key: str, parent_title: str, types: dict[str, Any]
    ) -> list[tuple[str, str, str, dict[str, Any]]]:
        """Column entries to add after their table: (location, key, title, payload)."""
        found = []
        chosen: dict[str, tuple[str, Any, str]] = {}
        for column_path, column in self.items(item, "columns", path):
            name = self.named(column, column_path, item, "column")
            if name is None:
                continue
            location = self.at(column, column_path)
            if name in chosen:
                # dbt keeps the last definition and warns (dbt1033 in dbt Fusion, as dbt Core does).
                warn_at(
                    self.collector.display,
                    location,
                    f"duplicate column name {name!r} in {parent_title} (first at {chosen[name][2]}): "
                    "only the last definition is used, as in dbt",
                )
            chosen[name] = (column_path, column, location)
        for name, (column_path, column, location) in chosen.items():
            config = self.mapping(column, "config", column_path)
            data_type = column.get("data_type") or types.get(name.lower())
            key = f"{parent_key}.{name}"
            payload = {
                "name": name,
                "table": parent_key,
                "type": str(data_type)
                if isinstance(data_type, (str, int)) and not has_template(data_type)
                else None,
                "description": self.text(column.get("description")),
                "tags": tag_list(column.get("tags"), config.get("tags")),
                "meta": readable_payload(
                    {
                        **self.mapping(config, "meta", f"{column_path}.config"),
                        **self.mapping(column, "meta", column_path),
                    },
                    self.readable,
                ),
                "rules": self.constraints(column)
                + self.tests(column, column_path, parent_key, parent_title, name),
            }
            found.append((location, key, f"{parent_title}.{name}", payload))
        return found

    def add_columns(self, columns: list[tuple[str, str, str, dict[str, Any]]]) -> None:
        for location, key, title, payload in columns:
            text = compose_text("column", title, payload, labelled([("Meta", meta_text(payload["meta"]))]))
            self.collector.add(location, key, "column", payload, text=text)

    # --- tests --------------------------------------------------------------------------------

    def tests(
        self, item: dict[str, Any], path: str, target: str, title: str, column: str | None
    ) -> list[str]:
        """Adds one entry per test of `item` and returns the tests as rules of the item."""
        if item.get("tests") is not None and item.get("data_tests") is not None:
            self.problem(self.at(item, path), "both `tests` and `data_tests` given: use `data_tests` only")
            return []
        key = "data_tests" if item.get("data_tests") is not None else "tests"
        rules = []
        for test_path, test in self.items(item, key, path):
            rule = self.test(test, test_path, item, target, title, column)
            if rule:
                rules.append(rule)
        return rules

    def test(
        self, test: Any, path: str, parent: dict[str, Any], target: str, title: str, column: str | None
    ) -> str | None:
        location = self.at(test, path, parent)
        custom: str | None = None
        if isinstance(test, str) and test.strip():
            name, arguments = test.strip(), {}
        elif isinstance(test, dict) and isinstance(test.get("test_name"), str):
            name, arguments = test["test_name"], {k: v for k, v in test.items() if k != "test_name"}
        elif isinstance(test, dict) and len(test) == 1:
            ((name, arguments),) = test.items()
            if arguments is None:
                arguments = {}
            if not isinstance(arguments, dict):
                self.problem(
                    location,
                    f"the arguments of test {name!r} must be a mapping, found {type_name(arguments)}",
                )
                return None
        else:
            self.problem(
                location, "a test must be a test name or a mapping of one test name to its arguments"
            )
            return None
        name = str(name)
        if column is None and isinstance(arguments.get("column_name"), str):
            column = arguments["column_name"]  # a model-level test naming its column
        if isinstance(arguments.get("name"), str):
            custom = arguments["name"]
        config = arguments.get("config") if isinstance(arguments.get("config"), dict) else {}
        if arguments.get("config") is not None and not isinstance(arguments.get("config"), dict):
            self.problem(
                location,
                f"`config` of test {name!r} must be a mapping, found {type_name(arguments['config'])}",
            )
            return None
        if config.get("enabled") is False or arguments.get("enabled") is False:
            return None
        given = arguments.get("arguments") if isinstance(arguments.get("arguments"), dict) else {}
        checked = {
            **{k: v for k, v in arguments.items() if k not in NOT_ARGUMENTS and k != "arguments"},
            **given,
        }
        for setting in ("where", "enabled", "store_failures", "limit", "warn_if", "error_if", "fail_calc"):
            checked.pop(setting, None)
        where = config.get("where", arguments.get("where"))
        severity = config.get("severity", arguments.get("severity"))
        identity = {**checked, **({"where": where} if where else {})}
        tested = f"{target}.{column}" if column else target
        key = f"test.{custom or name}.{tested}" + (f".{args_hash(identity)}" if identity else "")
        shown = ", ".join(f"{k}: {argument_text(v, self.readable)}" for k, v in checked.items())
        description = arguments.get("description", config.get("description"))
        payload = {
            "name": custom,
            "test": name,
            "column": column,
            "applies_to": target,
            "arguments": readable_payload(checked, self.readable),
            "severity": str(severity).lower()
            if isinstance(severity, str) and not has_template(severity)
            else None,
            "where": self.readable.text(where) if isinstance(where, str) else None,
            "description": self.text(description),
            "tags": tag_list(arguments.get("tags"), config.get("tags")),
            "meta": readable_payload(config.get("meta") if isinstance(config.get("meta"), dict) else {}, self.readable),
        }
        heading = f"{name} on {title}.{column}" if column else f"{name} on {title}"
        heading += f" ({shown})" if shown else ""
        if payload["where"]:
            heading += f" where {payload['where']}"
        self.collector.add(location, key, "test", payload, title=heading)
        rule = rule_text(name, checked, self.readable)
        return rule + (f" where {payload['where']}" if payload["where"] else "")


def parse(path: Path, display: str) -> list[Entry]:
    doc, lines = load_yaml(read_text(path, display), display, duplicates="warn")
    file = _File(display, lines)
    if doc is None:
        return []
    if not isinstance(doc, dict):
        file.problem("document", f"a dbt property file must be a mapping, found {type_name(doc)}")
        return file.collector.finish()
    version = doc.get("version")
    if version is not None and str(version).strip() != "2":
        file.problem(
            file.at(doc, "version"), f"unsupported dbt property file version {version!r} (expected 2)"
        )
        return file.collector.finish()
    for section in RESOURCES:
        file.resources(doc, section)
    return file.collector.finish()


FORMAT = Format("dbt_schema", (".yml", ".yaml"), detect=detect, parse=parse)
