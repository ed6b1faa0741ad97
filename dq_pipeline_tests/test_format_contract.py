"""What every registered format makes, and what it refuses (issue 15), over the format registry.

For each format of `formats.registry()`, from its sample (test_catalog_contract.CONTRACT: a real file
where the license allows, else a repository sample catalog):

* its entries have unique non-empty keys, a kind the format makes, a non-empty text and a payload
  that is strict JSON (RFC 8259: no NaN, no Infinity; PostgreSQL's jsonb holds nothing else);
* parsing is deterministic: the same bytes in another folder give the same keys, texts, payloads
  and content hashes, and each hash is the one `Entry` computes from its content;
* an empty, blank, garbage, binary or deeply nested file, handed to the format's own parser (not
  left to detection, which would pass it to another format), is refused with a `CatalogError`
  naming the file, a location and a reason, and through detection it is refused by name too. The
  only exception: where the format's own reading makes such a file a catalog with no entries (an
  empty generic records file, an empty dbt properties file, a CSV whose only line is its header);
* a document of another shape (null, a number, a list of lists...) and the sample with one value
  replaced by a hostile one (a number for a text, a list for a scalar, NaN, a mapping with keys of
  mixed types) is refused by name or parsed into entries that keep the contract above, and never
  raises anything else (TypeError, KeyError, RecursionError...).

The crashes this found, and the earlier review's, are pinned at the end.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from dq_pipeline.catalog import CatalogError, discover, parse_catalog
from dq_pipeline.catalog.entry import Entry
from dq_pipeline.catalog.formats import Format, registry
from dq_pipeline.catalog.notices import collecting
from dq_pipeline_tests.test_catalog_contract import CONTRACT, place

FORMATS: dict[str, Format] = {fmt.name: fmt for fmt in registry()}
RECORDS = ("csv", "json", "jsonl", "yaml")
DEPTH = 5_000  # past `source.MAX_NESTING` (100) and past Python's recursion limit (1,000)

# The kinds each format makes (its module header says which). The generic records formats take the
# kind a record names; their samples name these.
KINDS = {
    "dbt_manifest": {"model", "seed", "snapshot", "source", "column", "test"},
    "dbt_catalog": {"table", "column"},
    "dbt_schema": {"model", "seed", "snapshot", "source", "column", "test"},
    "frictionless": {"dataset", "table", "column"},
    "dcat": {"dataset", "distribution", "field"},
    "openmetadata": {"table", "column", "test"},
    "datahub": {"dataset", "field", "glossary_term"},
    "great_expectations": {"rule"},
    **{name: {"table", "column", "rule", "entry"} for name in RECORDS},
}

HOSTILE_FILES = {
    "empty": b"",
    "blank": b" \n\t \n",
    "bom only": b"\xef\xbb\xbf",
    "garbage": b'<<<not a catalog>>> ::: {[ "',
    "binary": bytes(range(256)) * 8,
    "utf-16": '{"a": 1}'.encode("utf-16"),
    "nul byte": b'{"a": "\x00"}',
    "deep array": b"[" * DEPTH + b"]" * DEPTH,
    "deep object": b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
}

# (format, input) -> what the format's own reading makes of it: a catalog with no entries.
NO_ENTRIES = {
    # Emptying a generic records file empties its catalog; dbt reads an empty properties file as
    # declaring nothing.
    **{(name, kind): "empty document" for name in (*RECORDS, "dbt_schema") for kind in ("empty", "bom only")},
    ("json", "blank"): "empty document",
    ("jsonl", "blank"): "no lines",
    # Any one line of text is a CSV header: a header without rows is a catalog without entries.
    ("csv", "garbage"): "header only",
    ("csv", "deep array"): "header only",
    ("csv", "deep object"): "header only",
}

OTHER_SHAPES = {
    "null": b"null",
    "number": b"42",
    "string": b'"x"',
    "empty list": b"[]",
    "empty object": b"{}",
    "list of numbers": b"[1, 2]",
    "list of lists": b"[[], [[]]]",
    "list of null": b"[null]",
    "object of lists": b'{"entries": [[1]], "dataset": [[1]], "nodes": [[1]], "resources": [[1]]}',
    "yaml documents": b"a: 1\n---\nb: 2\n",
    "yaml python tag": b"a: !!python/object:os.system ls\n",
    "json lines of mixed shapes": b'{"table": "t"}\n[1]\n5\n',
}


def _sample(name: str) -> tuple[str, bytes]:
    relative, source = CONTRACT[name]
    return relative, source.read_bytes()


def _parse_own(fmt: Format, path: Path, display: str) -> list[Entry]:
    with collecting(display):
        return list(fmt.parse(path, display))


def assert_refused_by_name(err: CatalogError, display: str) -> None:
    assert err.path == display
    assert display in str(err)
    assert err.problems, str(err)
    for problem in err.problems:
        assert problem.location and problem.reason, str(err)


def assert_entries_keep_the_contract(name: str, entries: list[Entry]) -> None:
    keys = [e.key for e in entries]
    assert all(isinstance(k, str) and k.strip() for k in keys)
    assert len(set(keys)) == len(keys), "duplicate keys"
    for entry in entries:
        assert entry.kind in KINDS[name], (entry.key, entry.kind)
        assert isinstance(entry.text, str) and entry.text.strip(), entry.key
        payload = entry.payload
        assert isinstance(payload, dict)
        json.dumps(payload, allow_nan=False)  # strict JSON: what the record's jsonb can hold
        assert json.loads(entry.payload_json) == payload
        assert len(entry.content_hash) == 64 and int(entry.content_hash, 16) >= 0


def test_every_registered_format_has_a_sample_and_its_kinds() -> None:
    assert sorted(FORMATS) == sorted(CONTRACT) == sorted(KINDS)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_sample_parses_into_entries_that_keep_the_contract(tmp_path: Path, name: str) -> None:
    relative, data = _sample(name)
    catalog_id = place(tmp_path, relative, data)
    entries = parse_catalog(discover(tmp_path)[catalog_id])
    assert entries
    assert_entries_keep_the_contract(name, entries)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_parse_is_deterministic(tmp_path: Path, name: str) -> None:
    relative, data = _sample(name)
    parses = []
    for folder in ("one", "two"):
        root = tmp_path / folder
        catalog_id = place(root, relative, data)
        entries = parse_catalog(discover(root)[catalog_id])
        parses.append([(e.key, e.kind, e.text, e.payload_json, e.content_hash) for e in entries])
    assert parses[0] == parses[1]
    for key, kind, text, payload_json, content_hash in parses[0]:
        assert Entry(key, kind, text, json.loads(payload_json)).content_hash == content_hash, key


@pytest.mark.parametrize("hostile", sorted(HOSTILE_FILES))
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_hostile_file_is_refused_by_name(tmp_path: Path, name: str, hostile: str) -> None:
    relative, _ = _sample(name)
    data = HOSTILE_FILES[hostile]
    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    try:
        entries = _parse_own(FORMATS[name], path, relative)
    except CatalogError as err:
        assert (name, hostile) not in NO_ENTRIES, f"{name} refused what its tool reads: {err}"
        assert_refused_by_name(err, relative)
    else:
        assert (name, hostile) in NO_ENTRIES, f"{name} accepted {hostile!r}: {len(entries)} entries"
        assert entries == []
    # Through detection (which may choose another format): refused by name, or no entries.
    try:
        assert parse_catalog(discover(tmp_path)[relative.rsplit(".", 1)[0]]) == []
    except CatalogError as err:
        assert_refused_by_name(err, relative)


@pytest.mark.parametrize("shape", sorted(OTHER_SHAPES))
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_document_of_another_shape_is_refused_or_read_never_a_crash(tmp_path: Path, name: str, shape: str) -> None:
    relative, _ = _sample(name)
    path = tmp_path / Path(relative).name
    path.write_bytes(OTHER_SHAPES[shape])
    try:
        assert_entries_keep_the_contract(name, _parse_own(FORMATS[name], path, relative))
    except CatalogError as err:
        assert_refused_by_name(err, relative)


# --- one hostile value in a valid sample ------------------------------------------------------

HOSTILE_VALUES: list[Any] = [
    5, -1, 2.5, 10**30, True, None, "", "  ", "{{ doc('x') }}", "<b>x</b> &amp;",
    [], [1, 2], [None], [[[]]], [{"a": 1}], {}, {"a": 1}, {"x": [1, {"y": None}]},
    float("nan"), float("inf"), {1: "a", "b": 2},
]
YAML_ONLY_VALUES: list[Any] = [
    __import__("datetime").date(2020, 1, 2), __import__("datetime").datetime(2020, 1, 2, 3, 4), {None: 1, "a": 2},
]
MUTATIONS = {"json": 30, "yaml": 12}  # per format (YAML parses ~10x slower); a seeded draw, the same every run


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value[:3]):
            found += _paths(item, (*path, i))
    return found


def _replaced(doc: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    holder = doc
    for part in path[:-1]:
        holder = holder[part]
    holder[path[-1]] = new
    return doc


def _mutants(name: str) -> list[tuple[str, bytes]]:
    relative, data = _sample(name)
    as_yaml = relative.endswith((".yml", ".yaml"))
    if as_yaml:
        doc = yaml.safe_load(data)
    elif relative.endswith(".jsonl"):
        doc = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    else:
        doc = json.loads(data)
    values = HOSTILE_VALUES + (YAML_ONLY_VALUES if as_yaml else [])
    draw = random.Random(name)
    paths = _paths(doc)
    mutants = []
    for _ in range(MUTATIONS["yaml" if as_yaml else "json"]):
        path, value = draw.choice(paths), draw.choice(values)
        mutant = _replaced(copy.deepcopy(doc), path, copy.deepcopy(value))
        if as_yaml:
            text = yaml.safe_dump(mutant, allow_unicode=True)
        elif relative.endswith(".jsonl"):
            text = "\n".join(json.dumps(m) for m in mutant) if isinstance(mutant, list) else json.dumps(mutant)
        else:
            text = json.dumps(mutant)  # int keys are written as text, as a JSON file would hold them
        mutants.append((f"{list(path)} = {value!r}", text.encode()))
    return mutants


@pytest.mark.parametrize("name", sorted(n for n in FORMATS if n != "csv"))  # CSV cells are all text
def test_one_hostile_value_is_refused_by_name_or_read_never_a_crash(tmp_path: Path, name: str) -> None:
    relative, _ = _sample(name)
    path = tmp_path / Path(relative).name
    for what, data in _mutants(name):
        path.write_bytes(data)
        try:
            assert_entries_keep_the_contract(name, _parse_own(FORMATS[name], path, relative))
        except CatalogError as err:
            assert_refused_by_name(err, relative)
        except Exception as exc:  # the contract: a refusal by name, nothing else
            raise AssertionError(f"{name} with {what}: {type(exc).__name__}: {exc}") from exc


# --- the crashes found, pinned ----------------------------------------------------------------


def _parse_file(tmp_path: Path, name: str, text: str) -> list[Entry]:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return parse_catalog(discover(tmp_path)[name.rsplit(".", 1)[0]])


@pytest.mark.parametrize(
    "name, text",
    [
        ("c.json", '[{"table": "t", "tags": 5}, {"table": "u", "tags": [1, 2]}, {"table": "v", "tags": 2.5}]'),
        ("c.yaml", "- {table: t, tags: 5}\n- {table: u, tags: [1, 2]}\n- {table: v, tags: 2.5}\n"),
        ("c.jsonl", '{"table": "t", "tags": 5}\n{"table": "u", "tags": [1, 2]}\n{"table": "v", "tags": 2.5}\n'),
    ],
)
def test_generic_numeric_tags_are_tags_as_in_csv(tmp_path: Path, name: str, text: str) -> None:
    # Was a TypeError ('int' object is not iterable): a lone number is one tag, as a CSV cell is.
    entries = {e.key: e for e in _parse_file(tmp_path, name, text)}
    assert entries["t"].payload["tags"] == ["5"] and entries["t"].text == "table t. Tags: 5."
    assert entries["u"].payload["tags"] == ["1", "2"]
    assert entries["v"].payload["tags"] == ["2.5"]


def test_generic_tags_of_another_type_are_refused_by_record(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as refused:
        _parse_file(tmp_path, "c.yaml", "- {table: t, tags: true}\n- {table: u, tags: {a: 1}}\n")
    assert [p.location for p in refused.value.problems] == ["line 1 ([0])", "line 2 ([1])"]
    assert all("field tags" in p.reason for p in refused.value.problems)


def test_dcat_theme_label_that_is_an_object_is_refused_by_path(tmp_path: Path) -> None:
    # Was `Bad` escaping the parse uncaught: the theme taxonomy was read outside the record loop.
    doc = {
        "dataset": [{"identifier": "x", "title": "X", "theme": ["a"]}],
        "themeTaxonomy": [{"id": "a", "label": {"es": "Agua"}}, {"id": ["b"], "label": "B"}],
    }
    with pytest.raises(CatalogError) as refused:
        _parse_file(tmp_path, "data.json", json.dumps(doc))
    assert_refused_by_name(refused.value, "data.json")
    assert [(p.location, p.reason) for p in refused.value.problems] == [
        ("themeTaxonomy[0].label", "expected a theme label, found an object"),
        ("themeTaxonomy[1].id", "expected a theme id, found a list"),
    ]


@pytest.mark.parametrize(
    "name, text, field",
    [
        ("n.json", '[{"table": "t", "pii": NaN}]', "pii"),
        ("n.yaml", "- {table: t, max: .inf}\n", "max"),
        ("suite.json", json.dumps({
            "expectation_suite_name": "s",
            "expectations": [{"expectation_type": "expect_column_values_to_be_between",
                              "kwargs": {"column": "c", "min_value": 0, "max_value": float("inf")}}],
        }), "kwargs"),
    ],
)
def test_nan_or_infinity_in_a_payload_is_refused_by_record(tmp_path: Path, name: str, text: str, field: str) -> None:
    # Python's json reads NaN and Infinity and YAML has .nan and .inf; JSON and jsonb have neither, so
    # such an entry failed at the PostgreSQL commit, far from its file, after it was embedded.
    with pytest.raises(CatalogError) as refused:
        _parse_file(tmp_path, name, text)
    assert_refused_by_name(refused.value, name)
    assert f"field `{field}` holds NaN or Infinity" in str(refused.value)


def test_text_that_says_nan_or_infinity_is_fine(tmp_path: Path) -> None:
    entries = _parse_file(tmp_path, "t.yaml", "- {table: t, description: 'NaN counts as missing; Infinity too'}\n")
    assert entries[0].payload["description"] == "NaN counts as missing; Infinity too"


def test_mapping_with_keys_of_mixed_types_is_read_with_one_spelling(tmp_path: Path) -> None:
    # Was a TypeError from sorting the keys 1 and "b" for the canonical JSON (a rule, or any payload).
    text = "- table: t\n  rules: [{1: a, b: 2}]\n  extra: {2: x, a: y, true: z}\n"
    first = _parse_file(tmp_path, "m.yaml", text)[0]
    assert first.payload["extra"] == {"2": "x", "a": "y", "true": "z"}
    assert first.payload["rules"] == ['{"1":"a","b":2}']
    (tmp_path / "m.yaml").unlink()
    assert _parse_file(tmp_path, "m.yaml", text)[0].content_hash == first.content_hash
