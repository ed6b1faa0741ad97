"""Generic record files: CSV, JSON, JSON Lines and YAML, one row or object per entry.

Reads: a CSV with a header row; a JSON array of objects or an object whose `entries` holds one;
JSON Lines (blank lines skipped); YAML with the same shapes as JSON. CSV and JSON Lines are read a
line at a time (`source.text_lines`: memory bounded by the longest record, not by the file). Every
row/object becomes a ``(location, mapping)`` pair for `generic.py`. YAML anchors, aliases and merge
keys (``<<: *base``, an explicit key overriding the merged one) are read.

Refuses, with the line or record path: ragged CSV rows, blank or repeated header names, unclosed
quotes, truncated or invalid JSON/YAML, YAML tags beyond the safe set, nesting deeper than
`source.MAX_NESTING` (100) levels, YAML whose aliases expand beyond `ALIAS_BUDGET` nodes more than
written (a "billion laughs") or refer to themselves, binary (NUL bytes) and non-UTF-8 text.
Ignores: JSON/YAML top-level keys other than `entries`, blank CSV rows and JSON Lines.
Warns: an embedded text cut to its first 8,192 characters or a payload over 1 MiB (see builder: the payload is kept whole).
Duplicate keys: refused, in JSON objects (RFC 8259 leaves their meaning undefined) and YAML mappings
(the YAML spec requires unique keys); a CSV header naming one column twice too. `load_json` and
`load_yaml` take ``duplicates="warn"`` for formats whose own tool keeps the last value (dbt YAML;
DataHub and frictionless-py JSON): the last value is used, with a warning naming the line and the key.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from ..builder import Refused
from ..entry import CatalogError, Entry
from ..generic import entries_from_records
from ..notices import warn
from ..source import MAX_NESTING, deeper_than, json_too_deep, read_text, text_lines
from . import OVERRIDES_FILE, Format

Record = tuple[str, "dict[str, Any] | Refused"]


def _csv_lines(lines: Iterable[str]) -> Iterator[str]:
    """The lines the csv module reads from a file opened with ``newline=""``: a bare CR ends one too."""
    for line in lines:
        if "\r" in line:
            yield from io.StringIO(line, newline="")
        else:
            yield line


def read_csv(lines: Iterable[str], display: str) -> Iterator[Record]:
    """The records of a CSV file, from its decoded lines (`source.text_lines`)."""
    reader = csv.reader(_csv_lines(lines), strict=True)
    start = 1
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
                yield location, Refused(f"expected {len(header)} fields as in the header, found {len(row)}")
                continue
            yield location, dict(zip(header, row, strict=True))
    except csv.Error as exc:
        # `start` is where the broken record began (an unclosed quote runs to the end of the file).
        raise CatalogError.single(display, f"line {start}", f"malformed CSV: {exc}") from None


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(f"duplicate key {key!r} in one object")
        seen[key] = value
    return seen


class _Marked(dict):  # type: ignore[type-arg]
    duplicate: str | None = None


def _marking_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    marked = _Marked()
    for key, value in pairs:
        if key in marked and marked.duplicate is None:
            marked.duplicate = key
        marked[key] = value
    return marked


def _path_to_duplicate(value: Any, path: str = "") -> tuple[str, str] | None:
    """JSON path and key of the first object holding a duplicate key (depth first, in document order)."""
    if isinstance(value, _Marked):
        if value.duplicate is not None:
            return path or "document", value.duplicate
        children = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        children = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for child_path, child in children:
        found = _path_to_duplicate(child, child_path)
        if found:
            return found
    return None


def _last_wins_pairs(found: list[bool]) -> Any:
    """An object hook that keeps the last value of a repeated key (as `json.loads` does) and notes that it saw one."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        value = dict(pairs)
        if len(value) != len(pairs) and not found:
            found.append(True)
        return value

    return hook


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]')


def duplicate_key_sites(text: str) -> Iterator[tuple[str, int, int, str]]:
    """Each repeated key of one object in a JSON text that is known to be valid: (key, its line, the
    line of its first occurrence, the JSON path of the repeat), in document order. One linear pass
    over the tokens (strings and punctuation; numbers and literals are skipped); the stack holds
    one frame per open container, so it is as deep as the (already bounded) nesting."""
    stack: list[list[Any]] = []  # [kind, path, first line of each key | item index, current key]
    line, counted = 1, 0
    pending: tuple[str, int] | None = None
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        first = token[0]
        if first == '"':
            pending = (token, match.start())
            continue
        if first == ":" and pending is not None and stack and stack[-1][0] == "{":
            key, at = json.loads(pending[0]), pending[1]
            line += text.count("\n", counted, at)
            counted = at
            frame = stack[-1]
            if key in frame[2]:
                yield key, line, frame[2][key], f"{frame[1]}.{key}" if frame[1] else key
            else:
                frame[2][key] = line
            frame[3] = key
        elif first in "{[":
            if not stack:
                path = ""
            elif stack[-1][0] == "{":
                path = f"{stack[-1][1]}.{stack[-1][3]}" if stack[-1][1] else str(stack[-1][3])
            else:
                path = f"{stack[-1][1]}[{stack[-1][2]}]"
            stack.append([first, path, {} if first == "{" else 0, None])
        elif first in "}]":
            if stack:
                stack.pop()
        elif first == "," and stack and stack[-1][0] == "[":
            stack[-1][2] += 1
        pending = None


def _warn_duplicates(text: str, display: str, line_offset: int, tool: str, within: str | None) -> None:
    """One warning per repeated key, naming its line and key (and the record path)."""
    for key, line, first, path in duplicate_key_sites(text):
        reason = f"duplicate key {key!r} in one object (first at line {first + line_offset}): the last value is used, as {tool} does"
        if within is None:
            warn(display, line + line_offset, f"{reason} ({path})" if path else reason)
        else:  # a JSON text held in a string of the file: its lines are the string's, the file's place is `within`
            reason = f"duplicate key {key!r} in one object of the serialized value (its line {line}, first at its line {first}): the last value is used, as {tool} does"
            warn(display, None, f"{reason} ({path})" if path else reason, within)


def _invalid_json(exc: json.JSONDecodeError, text: str, display: str, line_offset: int) -> CatalogError:
    reason = f"invalid JSON: {exc.msg} (column {exc.colno})"
    if exc.pos >= len(text.rstrip()):
        reason = f"truncated JSON: {exc.msg}"
    return CatalogError.single(display, f"line {exc.lineno + line_offset}", reason)


def load_json(
    text: str,
    display: str,
    line: int | None = None,
    *,
    duplicates: str = "refuse",
    tool: str = "the format's reader",
    within: str | None = None,
) -> Any:
    """A JSON document, refusing nesting deeper than `source.MAX_NESTING`; errors name the line or the JSON path.

    `duplicates`: "refuse" a key repeated in one object (RFC 8259 leaves its meaning undefined), or
    "warn" and keep the last value, for formats whose own reader does that (`json.loads` does: DataHub,
    frictionless-py); each warning names the line and the key, and says it follows `tool`.
    `line`: the document is that one line of a larger file (JSON Lines). `within`: the document is
    a string value at that record path of the file (a serialized aspect), so warnings name the path.
    """
    line_offset = 0 if line is None else line - 1
    repeated: list[bool] = []
    try:
        value = json.loads(text, object_pairs_hook=_last_wins_pairs(repeated) if duplicates == "warn" else _no_duplicate_pairs)
    except json.JSONDecodeError as exc:
        raise _invalid_json(exc, text, display, line_offset) from None
    except RecursionError:  # the C decoder stops at Python's recursion limit, in constant memory
        raise json_too_deep(display, text, line_offset) from None
    except _DuplicateKey:
        # The parser gives no position for this; a second pass finds the record that holds it. That
        # pass reads on past the object, so it may find the text is not JSON at all (`{...} x`).
        try:
            marked = json.loads(text, object_pairs_hook=_marking_pairs)
        except json.JSONDecodeError as exc:
            raise _invalid_json(exc, text, display, line_offset) from None
        except RecursionError:
            raise json_too_deep(display, text, line_offset) from None
        if deeper_than(marked):
            raise json_too_deep(display, text, line_offset) from None
        path, key = _path_to_duplicate(marked) or ("document", "?")
        if line is not None:
            path = f"line {line}" + ("" if path == "document" else f" ({path})")
        raise CatalogError.single(display, path, f"duplicate key {key!r} in one object") from None
    if deeper_than(value):
        raise json_too_deep(display, text, line_offset) from None
    if repeated:
        _warn_duplicates(text, display, line_offset, tool, within)
    return value


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
    for i, item in enumerate(items):
        where = f"{prefix}[{i}]"
        if lines is not None and id(item) in lines:
            where = f"line {lines[id(item)]} ({where})"
        if not isinstance(item, dict):
            yield where, Refused(f"an entry must be an object, found {type(item).__name__}")
            continue
        yield where, item


def read_json(text: str, display: str) -> Iterator[Record]:
    if not text.strip():
        return
    yield from _records_of_document(load_json(text, display), display)


def read_jsonl(lines: Iterable[str], display: str) -> Iterator[Record]:
    """The records of a JSON Lines file, from its decoded lines (`source.text_lines`)."""
    for number, line in enumerate(lines, start=1):
        line = line.removesuffix("\n")  # a line's own text: its JSON errors name its line and column
        if not line.strip():
            continue
        obj = load_json(line, display, line=number)
        if not isinstance(obj, dict):
            yield f"line {number}", Refused("each JSON Lines record must be an object")
            continue
        yield f"line {number}", obj


_MERGE = "tag:yaml.org,2002:merge"


class _Refusal(Exception):
    def __init__(self, line: int | None, reason: str):
        super().__init__(reason)
        self.line = line
        self.reason = reason


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that bounds nesting and alias expansion, handles merge keys, remembers where each
    mapping starts, and refuses (or, for dbt, reports) duplicate mapping keys."""

    def __init__(self, stream: str, display: str, duplicates: str):
        super().__init__(stream)
        self.display = display
        self.duplicates = duplicates
        self.mapping_lines: dict[int, int] = {}
        self._depth = 0

    # --- composing: bounded depth, bounded expansion --------------------------------------------

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise _Refusal(
                    self.peek_event().start_mark.line + 1,
                    f"nesting deeper than {MAX_NESTING} levels (hostile or broken input)",
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        if node is not None:
            _check_expansion(node)
        return node

    # --- constructing ---------------------------------------------------------------------------

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Explicit keys are checked before merge keys are resolved: a key beside `<<: *anchor`
        # overrides the merged one (YAML merge semantics) and is not a duplicate.
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, f"a mapping key must be a scalar, found {type(key).__name__}", key_node.start_mark
                ) from None
            line = key_node.start_mark.line + 1
            if key in seen:
                if self.duplicates != "warn":
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} in one mapping", key_node.start_mark
                    )
                warn(
                    self.display,
                    line,
                    f"duplicate key {key!r} in one mapping (first at line {seen[key]}): the last value is used",
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_located_map(self, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
        data: dict[Any, Any] = {}
        self.mapping_lines[id(data)] = node.start_mark.line + 1
        yield data
        data.update(self.construct_mapping(node))


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _StrictLoader.construct_located_map)

# Nodes an alias may add to a document beyond what is written: generous for anchors reused by
# merge keys (a 1,000-column file merging a 20-key anchor into each adds 40,000), and four orders
# of magnitude below a "billion laughs" (nine aliases nested eight levels deep: 43 million).
ALIAS_BUDGET = 200_000


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand beyond `ALIAS_BUDGET` nodes, nest deeper than
    `MAX_NESTING` once expanded, or refer to themselves; linear in the nodes written, iterative."""
    written: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) not in written:
            written.add(id(node))
            stack.extend(_children(node))
    limit = len(written) + ALIAS_BUDGET
    done: dict[int, tuple[int, int]] = {}  # id -> (nodes once expanded, depth once expanded)
    active: set[int] = set()
    pending: list[tuple[yaml.Node, bool]] = [(root, False)]
    while pending:
        node, leaving = pending.pop()
        key = id(node)
        if leaving:
            kids = [done[id(child)] for child in _children(node)]
            size = 1 + sum(k[0] for k in kids)
            depth = 1 + max((k[1] for k in kids), default=0)
            line = node.start_mark.line + 1
            if size > limit:
                raise _Refusal(
                    line,
                    f"aliases expand this node to {size:,} nodes, more than the {len(written):,} written "
                    f"+ {ALIAS_BUDGET:,} allowed (an alias bomb?)",
                )
            if depth > MAX_NESTING:
                raise _Refusal(line, f"aliases nest this node deeper than {MAX_NESTING} levels")
            done[key] = (size, depth)
            active.discard(key)
            continue
        if key in done:
            continue
        if key in active:
            raise _Refusal(node.start_mark.line + 1, "an alias refers to a node that contains it (a recursive alias)")
        active.add(key)
        pending.append((node, True))
        pending.extend((child, False) for child in _children(node) if id(child) not in done)


def load_yaml(text: str, display: str, duplicates: str = "refuse") -> tuple[Any, dict[int, int]]:
    """A YAML document (safe tags only; anchors, aliases and merge keys bounded) and the line where
    each mapping starts (by id). `duplicates`: "refuse" duplicate mapping keys, or "warn" and keep
    the last value (what dbt does)."""
    loader = _StrictLoader(text, display, duplicates)
    try:
        return loader.get_single_data(), loader.mapping_lines
    except _Refusal as exc:
        where = f"line {exc.line}" if exc.line else "document"
        raise CatalogError.single(display, where, exc.reason) from None
    except RecursionError:  # not expected past the bounds above; refused by name all the same
        raise CatalogError.single(display, "document", f"nesting deeper than {MAX_NESTING} levels") from None
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


RECORD_FIELDS = ("key", "table", "column", "kind", "name", "description", "type", "tags", "rules")
# Every spelling of a field generic.py recognises: a mapped column replaces them all.
_SPELLINGS = {
    "key": ("key", "id"),
    "table": ("table", "table_name"),
    "column": ("column", "column_name", "field_name"),
    "description": ("description", "definition", "column_description"),
    "type": ("type", "data_type", "datatype"),
    "rules": ("rules", "tests"),
}


def _renamed(records: Iterator[Record], columns: dict[str, str | None], display: str) -> Iterator[Record]:
    """Each record with the file's columns renamed to entry fields (`.dq-formats.yaml` `columns`)."""
    seen: set[str] = set()
    any_record = False
    for location, raw in records:
        if isinstance(raw, dict):
            any_record = True
            raw = dict(raw)
            taken = {}
            for field, source in columns.items():
                for spelling in _SPELLINGS.get(field, (field,)):
                    if spelling != source and spelling not in columns.values() and spelling in raw:
                        # The mapping says which column is this field; a column spelled like it is kept aside.
                        raw["key_role" if spelling == "key" else f"source_{spelling}"] = raw.pop(spelling)
                if source is not None and source in raw:
                    seen.add(source)
                    taken[field] = raw.pop(source)
            raw.update(taken)
        yield location, raw
    missing = sorted(s for s in columns.values() if s is not None and s not in seen)
    if any_record and missing:
        raise CatalogError.single(
            display, OVERRIDES_FILE, f"column(s) {', '.join(missing)} mapped in `columns` are in no record of the file"
        )


def with_columns(fmt: Format, columns: dict[str, str | None]) -> Format:
    """The record format `fmt` reading the file's columns under the entry fields `columns` names."""
    load, reader = _READERS[fmt.name]

    def parse(path: Path, display: str) -> list[Entry]:
        return entries_from_records(_renamed(reader(load(path, display), display), columns, display), display)

    return Format(fmt.name, fmt.suffixes, detect=fmt.detect, parse=parse)


def _format(name: str, suffixes: tuple[str, ...]) -> Format:
    load, reader = _READERS[name]

    def parse(path: Path, display: str) -> list[Entry]:
        return entries_from_records(reader(load(path, display), display), display)

    return Format(name, suffixes, detect=lambda head: True, parse=parse)


# Each record format: how its file is read (line by line, in memory bounded by the longest line, for
# the line-based formats; whole for a JSON or YAML document, parsed whole anyway) and its reader.
_READERS: dict[str, tuple[Any, Any]] = {
    "csv": (text_lines, read_csv),
    "json": (read_text, read_json),
    "jsonl": (text_lines, read_jsonl),
    "yaml": (read_text, read_yaml),
}

FORMATS = [
    _format("csv", (".csv",)),
    _format("json", (".json",)),
    _format("jsonl", (".jsonl", ".ndjson")),
    _format("yaml", (".yaml", ".yml")),
]
