"""Duplicate keys follow the format's own tool: DataHub and frictionless-py keep the last value (they
read with Python's `json` / PyYAML), so those readers accept a repeated key with a warning naming the
line and the key; formats whose rule is to refuse (generic JSON records, DCAT) still refuse.

The real file is DataHub's own `bootstrap_mce.json` (fixtures/open/ATTRIBUTION.md), which repeats
`upstreams` in one fine-grained lineage and was refused whole before.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from dq_pipeline.catalog import CatalogError, Entry, Problem, discover, parse_with_warnings
from dq_pipeline.catalog.formats.records import duplicate_key_sites

OPEN = Path(__file__).resolve().parent / "fixtures" / "open"
ORDERS = "urn:li:dataset:(urn:li:dataPlatform:hive,orders,PROD)"


def read(root: Path, name: str, content: str | bytes) -> tuple[dict[str, Entry], list[Problem]]:
    path = root / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    entries, warnings = parse_with_warnings(discover(root)[name.rsplit(".", 1)[0]])
    return {e.key: e for e in entries}, warnings


def lines_holding(text: str, needle: str) -> list[int]:
    return [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]


# --- DataHub ------------------------------------------------------------------------------------


def test_datahub_bootstrap_file_is_read_whole_with_one_warning(tmp_path: Path) -> None:
    raw = (OPEN / "datahub" / "bootstrap_mce.json").read_text(encoding="utf-8")
    entries, warnings = read(tmp_path, "bootstrap_mce.json", raw)
    # SOURCES.md's independent count of the upstream file: 7 datasets, 28 schema fields, 3 glossary terms.
    assert Counter(e.kind for e in entries.values()) == {"dataset": 7, "field": 28, "glossary_term": 3}
    # The lines come from the file itself: the only object holding `"upstreams"` twice in a row.
    first, second = [n for n in lines_holding(raw, '"upstreams"') if n in (818, 820)]
    assert raw.splitlines()[first].strip().startswith('"downstreamType"')  # the line between them
    (warning,) = warnings
    assert warning.location == f"bootstrap_mce.json:{second}"
    assert warning.reason.startswith(f"duplicate key 'upstreams' in one object (first at line {first}): the last value is used")
    assert "DataHub" in warning.reason and warning.reason.endswith("fineGrainedLineages[0].upstreams)")


def test_datahub_real_record_alone_names_its_own_lines(tmp_path: Path) -> None:
    raw = (OPEN / "datahub" / "bootstrap_mce.record8.json").read_text(encoding="utf-8")
    entries, warnings = read(tmp_path, "mce.json", raw)
    assert "urn:li:dataset:(urn:li:dataPlatform:hive,fct_users_created,PROD)" in entries
    fine_grained = lines_holding(raw, '"upstreams": ["urn:li:schemaField')
    assert len(fine_grained) == 2
    assert [(w.location, w.reason.split(":")[0]) for w in warnings] == [
        (f"mce.json:{fine_grained[1]}", f"duplicate key 'upstreams' in one object (first at line {fine_grained[0]})")
    ]


def test_datahub_last_value_wins_in_the_file(tmp_path: Path) -> None:
    record = {
        "entityType": "dataset",
        "entityUrn": ORDERS,
        "changeType": "UPSERT",
        "aspectName": "datasetProperties",
        "aspect": {"json": {"description": "first", "name": "orders"}},
    }
    text = json.dumps([record], indent=2).replace('"name": "orders"', '"name": "orders",\n        "description": "last"')
    entries, warnings = read(tmp_path, "mce.json", text)
    assert entries[ORDERS].payload["description"] == "last"
    line = lines_holding(text, '"description": "last"')[0]
    first = lines_holding(text, '"description": "first"')[0]
    (warning,) = warnings
    assert warning.location == f"mce.json:{line}"
    assert f"duplicate key 'description' in one object (first at line {first})" in warning.reason


def test_datahub_serialized_aspect_duplicate_is_a_warning_at_its_record(tmp_path: Path) -> None:
    mcp = {
        "entityType": "dataset",
        "entityUrn": ORDERS,
        "changeType": "UPSERT",
        "aspectName": "datasetProperties",
        "aspect": {"value": '{"description": "a", "description": "b"}', "contentType": "application/json"},
    }
    entries, warnings = read(tmp_path, "mce.json", json.dumps([mcp]))
    assert entries[ORDERS].payload["description"] == "b"
    (warning,) = warnings
    assert warning.location == "mce.json ([0].aspect.value)"
    assert warning.reason.startswith("duplicate key 'description' in one object of the serialized value")


# --- Frictionless --------------------------------------------------------------------------------


def test_frictionless_json_duplicate_key_keeps_the_last_value(tmp_path: Path) -> None:
    text = '{"name": "p",\n "resources": [{"name": "r", "schema": {"fields": [\n  {"name": "a", "type": "string",\n   "type": "integer"}]}}]}'
    entries, warnings = read(tmp_path, "datapackage.json", text)
    assert entries["p/r.a"].payload["type"] == "integer"
    (warning,) = warnings
    assert warning.location == "datapackage.json:4"
    assert warning.reason.startswith("duplicate key 'type' in one object (first at line 3): the last value is used, as frictionless-py does")


def test_frictionless_yaml_duplicate_key_keeps_the_last_value(tmp_path: Path) -> None:
    entries, warnings = read(tmp_path, "datapackage.yaml", "name: p\nresources:\n  - name: r\n    name: s\n")
    assert "p/s" in entries and "p/r" not in entries
    (warning,) = warnings
    assert warning.location == "datapackage.yaml:4"
    assert warning.reason.startswith("duplicate key 'name' in one mapping (first at line 3)")


def test_frictionless_duplicate_field_names_stay_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as info:
        read(tmp_path, "datapackage.json", '{"name": "p", "resources": [{"name": "r", "schema": {"fields": [{"name": "a"}, {"name": "a"}]}}]}')
    assert "duplicate entry key 'p/r.a'" in str(info.value)


# --- formats whose rule is to refuse --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("records.json", '[{"key": "a", "description": "x", "description": "y"}]', "duplicate key 'description' in one object"),
        ("data.json", '{"conformsTo": "https://project-open-data.cio.gov/v1.1/schema", "dataset": [{"title": "t", "title": "u"}]}',
         "duplicate key 'title' in one object"),
        ("records.yaml", "- key: a\n  key: b\n", "duplicate key 'key' in one mapping"),
    ],
    ids=["generic-json", "dcat", "generic-yaml"],
)
def test_other_formats_still_refuse_duplicate_keys(tmp_path: Path, name: str, content: str, reason: str) -> None:
    with pytest.raises(CatalogError) as info:
        read(tmp_path, name, content)
    assert reason in str(info.value)


def test_a_repeated_key_in_text_that_is_not_json_is_refused_as_invalid_json(tmp_path: Path) -> None:
    """The duplicate's second pass reads past the object: text after it is the first problem, named
    like any invalid JSON (it escaped as a raw JSONDecodeError)."""
    with pytest.raises(CatalogError) as info:
        read(tmp_path, "records.jsonl", '{"key": "a", "key": "b"} x\n')
    assert "line 1: invalid JSON: Extra data" in str(info.value)


# --- the scanner that finds the lines ------------------------------------------------------------


def test_duplicate_key_sites_skip_strings_and_follow_paths() -> None:
    text = '{"a": "x\\": {\\"a\\": 1,",\n "l": [{"k": 1}, {"k": 2,\n "k": [1, {"z": 0, "z": 1}]}],\n "a": null}'
    assert list(duplicate_key_sites(text)) == [("k", 3, 2, "l[1].k"), ("z", 3, 3, "l[1].k[1].z"), ("a", 4, 1, "a")]
    assert list(duplicate_key_sites('{"a": {"b": 1}, "b": {"a": 2}}')) == []  # same names, other objects
    assert list(duplicate_key_sites('{"\\u0061": 1, "a": 2}')) == [("a", 1, 1, "a")]  # compared as decoded keys
