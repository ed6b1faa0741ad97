"""OpenMetadata exports: table entities (``{"tables": [...]}``, an API page ``{"data": [...]}`` or one table
object) and the ``tableTests.json`` form (a list of ``{"table", "tableTests", "columnTests"}``).

Reads each table (entry kind `table`, key: its `fullyQualifiedName`, else ``<databaseSchema>.<name>``,
else ``<database>.<name>``, else its name: description, tags, table type, owner, `tableConstraints` as
rules such as "primary key (address_id, shop_id)") and each column, nested `children` included (kind
`column`, key ``<table key>.<column>.<child>``: `dataTypeDisplay` (else `dataType`), description, tags,
length, column constraint as a rule). Each test becomes an entry of kind `test`, keyed
``<table>[.<column>]/<test type>/<hash of its config>`` and described in words ("Values in column
user_id must be at least 0"); the same test listed once per run (the export repeats it with each result)
is one entry, carrying its latest result and number of runs in the payload (not in the text).

Ignores: sample data, table profiles, joins, usage summaries, followers, hrefs, versions, view
definitions, data models, lineage; OpenMetadata 1.x test suites (`testCases` with `entityLink`).
Refuses, naming the record path (``tables[2].columns[5].children[0]``): duplicate JSON keys, truncated
JSON, a table or column without a name, `columns`/`children`/tests that are not lists of objects, table
constraints naming columns the table does not have, a test without a type, nesting deeper than 100
levels (so `children` at most ~45 deep) as one problem at its line.
Warns: an embedded text cut to its first 8,192 characters or a payload over 1 MiB (see builder: the payload is kept whole).
Duplicate keys: refused in any JSON object (RFC 8259 leaves their meaning undefined).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..builder import EntryCollector
from ..entry import CatalogError, Entry
from . import Format
from .toolkit.documents import load_document
from .toolkit.html_text import html_to_text
from .toolkit.paths import at
from .toolkit.sniffing import outline
from .toolkit.values import Bad, items, jsonable, mapping, scalar_text, short_hash, type_name
from .toolkit.wording import bounds, compose_text, listing, show

_COLUMN_CONSTRAINTS = {
    "NULL": "nullable",
    "NOT_NULL": "not null",
    "UNIQUE": "unique",
    "PRIMARY_KEY": "primary key",
}
_TABLE_CONSTRAINTS = {
    "PRIMARY_KEY": "primary key",
    "UNIQUE": "unique",
    "FOREIGN_KEY": "foreign key",
    "SORT_KEY": "sort key",
    "DIST_KEY": "distribution key",
}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def detect(head: str) -> bool:
    shape = outline(head)
    if shape.root == "array":
        return shape.has("item", "tableTests", "columnTests")
    if shape.root != "object":
        return False
    if shape.has("", "tableTests", "columnTests") and shape.has("", "table"):
        return True
    for holder in ("tables", "data"):
        if (
            shape.has("", holder)
            and shape.has(f"{holder}.item", "columns")
            and shape.has(f"{holder}.item.columns.item", "dataType")
        ):
            return True
    return (
        shape.has("", "columns")
        and shape.has("columns.item", "dataType")
        and shape.has("", "fullyQualifiedName", "tableType", "databaseSchema")
    )


def _tags(value: Any, where: str) -> list[str]:
    found = []
    for i, tag in enumerate(items(value, where, "`tags`")):
        if isinstance(tag, dict):
            label = scalar_text(tag.get("tagFQN"), at(at(where, i), "tagFQN")) or scalar_text(
                tag.get("name"), at(at(where, i), "name")
            )
        else:
            label = scalar_text(tag, at(where, i))
        if label:
            found.append(label)
    return found


def _reference_name(value: Any, where: str) -> str | None:
    """An entity reference (`database`, `databaseSchema`, `owner`) by its FQN or name; text as is."""
    if isinstance(value, dict):
        return scalar_text(value.get("fullyQualifiedName"), at(where, "fullyQualifiedName")) or scalar_text(
            value.get("name"), at(where, "name")
        )
    return scalar_text(value, where, "an entity reference")


def _describe_text(value: Any, where: str) -> str | None:
    return html_to_text(scalar_text(value, where))


class _Export:
    def __init__(self, display: str):
        self.collector = EntryCollector(display)

    # --- tables ---------------------------------------------------------------------------------

    def table(self, where: str, record: Any) -> None:
        if not isinstance(record, dict):
            raise Bad(where, f"a table must be an object, found {type_name(record)}")
        name = scalar_text(record.get("name"), at(where, "name"), "a table name")
        if not name:
            raise Bad(where, "a table needs a non-empty `name`")
        fqn = scalar_text(record.get("fullyQualifiedName"), at(where, "fullyQualifiedName"))
        schema = _reference_name(record.get("databaseSchema"), at(where, "databaseSchema"))
        database = _reference_name(record.get("database"), at(where, "database"))
        key = fqn or (f"{schema or database}.{name}" if schema or database else name)
        columns = items(record.get("columns"), at(where, "columns"), "`columns`")
        top_names = {c.get("name") for c in columns if isinstance(c, dict)}
        rules, primary = self.constraints(
            record.get("tableConstraints"), at(where, "tableConstraints"), top_names
        )
        tags = _tags(record.get("tags"), at(where, "tags"))
        description = _describe_text(record.get("description"), at(where, "description"))
        payload = {
            "name": name,
            "fully_qualified_name": fqn,
            "display_name": scalar_text(record.get("displayName"), at(where, "displayName")),
            "description": description,
            "table_type": scalar_text(record.get("tableType"), at(where, "tableType")),
            "database": database,
            "database_schema": schema,
            "service": _reference_name(record.get("service"), at(where, "service")),
            "owner": _reference_name(record.get("owner"), at(where, "owner")),
            "tags": tags,
            "rules": rules,
            "constraints": jsonable(record.get("tableConstraints")),
            "columns": len(columns),
        }
        extras = []
        names = [c.get("name") for c in columns if isinstance(c, dict) and isinstance(c.get("name"), str)]
        if names:
            extras.append(f"Columns: {listing(names, 40)}")
        text = compose_text("table", key, {"description": description, "tags": tags, "rules": rules}, extras)
        self.collector.add(where, key, "table", payload, text=text)
        for i, column in enumerate(columns):
            try:
                self.column(key, key, name, at(at(where, "columns"), i), column, primary)
            except Bad as exc:
                self.collector.problem(exc.location, exc.reason)

    def constraints(self, value: Any, where: str, known: set[Any]) -> tuple[list[str], set[str]]:
        rules: list[str] = []
        primary: set[str] = set()
        for i, constraint in enumerate(items(value, where, "`tableConstraints`")):
            cwhere = at(where, i)
            constraint = mapping(constraint, cwhere, "a table constraint")
            kind = scalar_text(constraint.get("constraintType"), at(cwhere, "constraintType")) or "constraint"
            columns = [
                scalar_text(c, at(at(cwhere, "columns"), j))
                for j, c in enumerate(items(constraint.get("columns"), at(cwhere, "columns"), "`columns`"))
            ]
            unknown = [c for c in columns if c not in known]
            if unknown:
                raise Bad(
                    at(cwhere, "columns"),
                    f"names column(s) the table does not have: {', '.join(map(str, unknown))}",
                )
            words = f"{_TABLE_CONSTRAINTS.get(kind, kind.lower().replace('_', ' '))} ({', '.join(c for c in columns if c)})"
            referred = [
                scalar_text(c, at(at(cwhere, "referredColumns"), j))
                for j, c in enumerate(
                    items(
                        constraint.get("referredColumns"), at(cwhere, "referredColumns"), "`referredColumns`"
                    )
                )
            ]
            if referred:
                words += f" references {', '.join(c for c in referred if c)}"
            rules.append(words)
            if kind == "PRIMARY_KEY":
                primary.update(c for c in columns if c)
        return rules, primary

    def column(
        self,
        table_key: str,
        parent_key: str,
        path_name: str,
        where: str,
        record: Any,
        primary: set[str],
        depth: int = 0,
    ) -> None:
        if not isinstance(record, dict):
            raise Bad(where, f"a column must be an object, found {type_name(record)}")
        name = scalar_text(record.get("name"), at(where, "name"), "a column name")
        if not name:
            raise Bad(where, "a column needs a non-empty `name`")
        key = f"{parent_key}.{name}"
        title = f"{path_name}.{name}"
        children = items(record.get("children"), at(where, "children"), "`children`")
        data_type = scalar_text(record.get("dataType"), at(where, "dataType"))
        shown_type = scalar_text(record.get("dataTypeDisplay"), at(where, "dataTypeDisplay")) or data_type
        description = _describe_text(record.get("description"), at(where, "description"))
        tags = _tags(record.get("tags"), at(where, "tags"))
        rules = []
        constraint = scalar_text(record.get("constraint"), at(where, "constraint"))
        if constraint:
            rules.append(_COLUMN_CONSTRAINTS.get(constraint, constraint.lower().replace("_", " ")))
        if depth == 0 and name in primary and "primary key" not in rules:
            rules.append("primary key")
        payload = {
            "table": table_key,
            "parent": parent_key if depth else None,
            "name": name,
            "fully_qualified_name": scalar_text(record.get("fullyQualifiedName"), at(where, "fullyQualifiedName")),
            "display_name": scalar_text(record.get("displayName"), at(where, "displayName")),
            "description": description,
            "data_type": data_type,
            "data_type_display": scalar_text(record.get("dataTypeDisplay"), at(where, "dataTypeDisplay")),
            "array_data_type": scalar_text(record.get("arrayDataType"), at(where, "arrayDataType")),
            "data_length": record.get("dataLength") if isinstance(record.get("dataLength"), int) else None,
            "precision": record.get("precision") if isinstance(record.get("precision"), int) else None,
            "scale": record.get("scale") if isinstance(record.get("scale"), int) else None,
            "ordinal_position": record.get("ordinalPosition")
            if isinstance(record.get("ordinalPosition"), int)
            else None,
            "constraint": constraint,
            "tags": tags,
            "rules": rules,
            "children": [
                c.get("name") for c in children if isinstance(c, dict) and isinstance(c.get("name"), str)
            ],
        }
        text = compose_text(
            "column", title, {"type": shown_type, "description": description, "tags": tags, "rules": rules}
        )
        self.collector.add(where, key, "column", payload, text=text)
        for i, child in enumerate(children):
            try:
                self.column(table_key, key, title, at(at(where, "children"), i), child, primary, depth + 1)
            except Bad as exc:
                self.collector.problem(exc.location, exc.reason)

    # --- tests ----------------------------------------------------------------------------------

    def test_group(self, where: str, record: Any) -> None:
        if not isinstance(record, dict):
            raise Bad(
                where,
                f"expected an object with `table`, `tableTests` and `columnTests`, found {type_name(record)}",
            )
        table = scalar_text(record.get("table"), at(where, "table"), "a table name")
        if not table:
            raise Bad(where, "tests need the `table` they apply to")
        found: dict[str, dict[str, Any]] = {}
        for section, column_test in (("tableTests", False), ("columnTests", True)):
            for i, test in enumerate(items(record.get(section), at(where, section), f"`{section}`")):
                try:
                    self.test(found, table, at(at(where, section), i), test, column_test)
                except Bad as exc:
                    self.collector.problem(exc.location, exc.reason)
        for key, test in found.items():
            payload = test["payload"]
            text = compose_text(
                "test",
                f"{payload['test_type']} on {payload['column'] or payload['table']}",
                {
                    "description": payload.get("description"),
                    "rules": [test["wording"]],
                    "applies_to": test["target"],
                },
            )
            self.collector.add(test["where"], key, "test", payload, text=text)

    def test(
        self, found: dict[str, dict[str, Any]], table: str, where: str, record: Any, column_test: bool
    ) -> None:
        if not isinstance(record, dict):
            raise Bad(where, f"a test must be an object, found {type_name(record)}")
        case = mapping(record.get("testCase"), at(where, "testCase"), "`testCase`")
        type_key = "columnTestType" if column_test else "tableTestType"
        test_type = scalar_text(case.get(type_key), at(at(where, "testCase"), type_key), "a test type")
        if not test_type:
            raise Bad(where, f"a test needs `testCase.{type_key}`")
        config = mapping(case.get("config"), at(at(where, "testCase"), "config"), "`config`")
        column = None
        if column_test:
            column = scalar_text(record.get("columnName"), at(where, "columnName"), "a column name")
            if not column:
                raise Bad(where, "a column test needs a `columnName`")
        target = f"{table}.{column}" if column else table
        key = f"{target}/{test_type}/{short_hash(config)}"
        description = _describe_text(record.get("description"), at(where, "description"))
        results = [
            r
            for r in [record.get("result"), *items(record.get("results"), at(where, "results"), "`results`")]
            if isinstance(r, dict)
        ]
        runs = [
            {
                "status": scalar_text(r.get("testCaseStatus"), at(where, "result")),
                "result": scalar_text(r.get("result"), at(where, "result")),
                "timestamp": r.get("timestamp") if isinstance(r.get("timestamp"), (int, float)) else None,
            }
            for r in results
        ]
        entry = found.get(key)
        if entry is None:
            entry = found[key] = {
                "where": where,
                "target": target,
                "wording": _test_words(test_type, config, column),
                "runs": [],
                "payload": {
                    "table": table,
                    "column": column,
                    "test_type": test_type,
                    "config": jsonable(config),
                    "description": description,
                    "execution_frequency": scalar_text(
                        record.get("executionFrequency"), at(where, "executionFrequency")
                    ),
                },
                "described_at": -1.0,
            }
        latest = max((r["timestamp"] or 0 for r in runs), default=0)
        if description and latest >= entry["described_at"]:
            entry["payload"]["description"] = description  # the latest run's wording wins
            entry["described_at"] = latest
        entry["runs"].extend(runs)
        ordered = sorted(entry["runs"], key=lambda r: r["timestamp"] or 0)
        entry["payload"]["runs"] = len(ordered)
        entry["payload"]["last_result"] = (
            {k: v for k, v in ordered[-1].items() if v is not None} if ordered else None
        )


def _words(test_type: str) -> str:
    return _CAMEL.sub(" ", test_type).lower()


def _test_words(test_type: str, config: dict[str, Any], column: str | None) -> str:
    """An OpenMetadata (0.x) table or column test in words; unknown types fall back to their name and config."""
    subject = f"Values in column {column}" if column else "The table"
    low = next((v for k, v in config.items() if k.lower().startswith("min")), None)
    high = next((v for k, v in config.items() if k.lower().startswith("max")), None)
    known = {
        "tableRowCountToEqual": lambda: f"The table must have exactly {show(config.get('value'))} rows",
        "tableRowCountToBeBetween": lambda: f"The table must have {bounds(low, high)} rows",
        "tableColumnCountToEqual": lambda: (
            f"The table must have exactly {show(config.get('columnCount', config.get('value')))} columns"
        ),
        "tableColumnCountToBeBetween": lambda: f"The table must have {bounds(low, high)} columns",
        "tableColumnNameToExist": lambda: f"The table must have a column {show(config.get('columnName'))}",
        "tableColumnToMatchSet": lambda: (
            "The table's columns must be "
            + show(config.get("columnNames"))
            + (" (in this order)" if config.get("ordered") else "")
        ),
        "tableCustomSQLQuery": lambda: f"The custom SQL check must pass: {show(config.get('sqlExpression'))}",
        "columnValuesToBeUnique": lambda: f"{subject} must be unique",
        "columnValuesToBeNotNull": lambda: f"{subject} must not be null",
        "columnValuesToBeBetween": lambda: f"{subject} must be {bounds(low, high)}",
        "columnValuesToMatchRegex": lambda: f"{subject} must match the pattern {show(config.get('regex'))}",
        "columnValuesToNotMatchRegex": lambda: (
            f"{subject} must not match the pattern {show(config.get('forbiddenRegex'))}"
        ),
        "columnValuesToBeInSet": lambda: f"{subject} must be one of: {show(config.get('allowedValues'))}",
        "columnValuesToBeNotInSet": lambda: (
            f"{subject} must not be any of: {show(config.get('forbiddenValues'))}"
        ),
        "columnValueLengthsToBeBetween": lambda: (
            f"Value lengths in column {column} must be {bounds(low, high)}"
        ),
        "columnValuesMissingCountToBeEqual": lambda: (
            f"Column {column} must have exactly {show(config.get('missingCountValue'))} missing values"
            + (
                f" (also counting {show(config.get('missingValueMatch'))} as missing)"
                if config.get("missingValueMatch")
                else ""
            )
        ),
        "columnValueMaxToBeBetween": lambda: f"The maximum of column {column} must be {bounds(low, high)}",
        "columnValueMinToBeBetween": lambda: f"The minimum of column {column} must be {bounds(low, high)}",
        "columnValueMeanToBeBetween": lambda: f"The mean of column {column} must be {bounds(low, high)}",
        "columnValueMedianToBeBetween": lambda: f"The median of column {column} must be {bounds(low, high)}",
        "columnValueStdDevToBeBetween": lambda: (
            f"The standard deviation of column {column} must be {bounds(low, high)}"
        ),
        "columnValuesSumToBeBetween": lambda: f"The sum of column {column} must be {bounds(low, high)}",
    }
    if test_type in known:
        return known[test_type]()
    words = _words(test_type)
    where = f" on column {column}" if column else ""
    settings = "; ".join(f"{k}: {show(v)}" for k, v in config.items())
    return f"Test: {words}{where}" + (f" ({settings})" if settings else "")


def parse(path: Path, display: str) -> list[Entry]:
    doc = load_document(path, display).value
    export = _Export(display)

    def each(values: list[Any], prefix: str, handler: Any) -> None:
        for i, value in enumerate(values):
            try:
                handler(at(prefix, i) if prefix else f"[{i}]", value)
            except Bad as exc:
                export.collector.problem(exc.location, exc.reason)

    if isinstance(doc, list):
        each(doc, "", export.test_group)
    elif isinstance(doc, dict) and ("tableTests" in doc or "columnTests" in doc):
        each([doc], "", lambda _where, value: export.test_group("document", value))
    elif isinstance(doc, dict) and isinstance(doc.get("tables", doc.get("data")), list):
        holder = "tables" if "tables" in doc else "data"
        each(doc[holder], holder, export.table)
    elif isinstance(doc, dict) and "tables" in doc:
        raise CatalogError.single(
            display, "tables", f"`tables` must be a list, found {type_name(doc['tables'])}"
        )
    elif isinstance(doc, dict) and "columns" in doc:
        each([doc], "", lambda _where, value: export.table("document", value))
    else:
        raise CatalogError.single(
            display, "document", "expected OpenMetadata `tables`, a table object or a list of table tests"
        )
    return export.collector.finish()


FORMAT = Format("openmetadata", (".json",), detect=detect, parse=parse)
