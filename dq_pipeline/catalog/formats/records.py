"""Generic record files: CSV, JSON, JSON Lines and YAML, one row or object per entry.

Reads: a CSV with a header row; a JSON array of objects or an object whose `entries` holds one;
JSON Lines (blank lines skipped); YAML with the same shapes as JSON. Every row/object becomes a
``(location, mapping)`` pair for `generic.py`. Duplicate mapping keys in JSON/YAML, ragged CSV rows
and truncated documents are refused with the line or record path. Ignores: YAML tags beyond the
safe set (refused), JSON/YAML top-level keys other than `entries`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from ..entry import CatalogError, Entry, Problem
from ..generic import entries_from_records
from ..source import read_text
from . import Format

Record = tuple[str, dict[str, Any]]


def read_csv(text: str, display: str) -> Iterator[Record]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        blank = [i + 1 for i, h in enumerate(header) if not h]
        if blank:
            raise CatalogError.single(display, "line 1", f"empty column name in header at position(s) {blank}")
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise CatalogError.single(display, "line 1", f"duplicate column(s) in header: {', '.join(dupes)}")
        start = reader.line_num + 1
        for row in reader:
            location = f"line {start}"
            start = reader.line_num + 1
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise CatalogError.single(
                    display, location, f"expected {len(header)} fields as in the header, found {len(row)}"
                )
            yield location, dict(zip(header, row, strict=True))
    except csv.Error as exc:
        raise CatalogError.single(display, f"line {reader.line_num}", f"malformed CSV: {exc}") from None


def _no_duplicate_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r} in one object")
        seen[key] = value
    return seen


def load_json(text: str, display: str, line_offset: int = 0) -> Any:
    """A JSON document, refusing duplicate keys in one object and naming the line of a syntax error."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_pairs)
    except json.JSONDecodeError as exc:
        reason = f"invalid JSON: {exc.msg} (column {exc.colno})"
        if exc.pos >= len(text.rstrip()):
            reason = f"truncated JSON: {exc.msg}"
        raise CatalogError.single(display, f"line {exc.lineno + line_offset}", reason) from None
    except ValueError as exc:  # duplicate keys; the stdlib parser gives no position here
        raise CatalogError.single(display, f"line {line_offset + 1}" if line_offset else "document", str(exc)) from None


def _records_of_document(doc: Any, display: str, lines: dict[int, int] | None = None) -> Iterator[Record]:
    if isinstance(doc, dict) and "entries" in doc:
        items, prefix = doc["entries"], "entries"
    elif isinstance(doc, list):
        items, prefix = doc, ""
    elif doc is None:
        return
    else:
        raise CatalogError.single(
            display, "document", "expected a list of entries or an object with an `entries` list"
        )
    if not isinstance(items, list):
        raise CatalogError.single(display, prefix or "document", "`entries` must be a list")
    problems = []
    for i, item in enumerate(items):
        where = f"{prefix}[{i}]"
        if lines is not None and id(item) in lines:
            where = f"line {lines[id(item)]} ({where})"
        if not isinstance(item, dict):
            problems.append(Problem(where, f"an entry must be an object, found {type(item).__name__}"))
            continue
        yield where, item
    if problems:
        raise CatalogError(display, problems)


def read_json(text: str, display: str) -> Iterator[Record]:
    if not text.strip():
        return
    yield from _records_of_document(load_json(text, display), display)


def read_jsonl(text: str, display: str) -> Iterator[Record]:
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        obj = load_json(line, display, line_offset=number - 1)
        if not isinstance(obj, dict):
            raise CatalogError.single(display, f"line {number}", "each JSON Lines record must be an object")
        yield f"line {number}", obj


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys and remembers where each mapping starts."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.mapping_lines: dict[int, int] = {}

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_located_map(self, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
        data: dict[Any, Any] = {}
        self.mapping_lines[id(data)] = node.start_mark.line + 1
        yield data
        data.update(self.construct_mapping(node))


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _StrictLoader.construct_located_map)


def load_yaml(text: str, display: str) -> tuple[Any, dict[int, int]]:
    """A YAML document (safe tags only, no duplicate keys) and the line where each mapping starts (by id)."""
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data(), loader.mapping_lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}" if mark else "document"
        raise CatalogError.single(display, where, f"invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise CatalogError.single(display, "document", f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def read_yaml(text: str, display: str) -> Iterator[Record]:
    doc, lines = load_yaml(text, display)
    yield from _records_of_document(doc, display, lines)


def _format(name: str, suffixes: tuple[str, ...], reader: Any) -> Format:
    def parse(path: Path, display: str) -> list[Entry]:
        return entries_from_records(reader(read_text(path, display), display), display)

    return Format(name, suffixes, detect=lambda head: True, parse=parse)


FORMATS = [
    _format("csv", (".csv",), read_csv),
    _format("json", (".json",), read_json),
    _format("jsonl", (".jsonl", ".ndjson"), read_jsonl),
    _format("yaml", (".yaml", ".yml"), read_yaml),
]
