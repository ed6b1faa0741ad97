"""The catalog parsing layer: generic CSV/JSON/JSONL/YAML records become validated entries.

Invariant I6: bad input is refused whole with a CatalogError naming the file (relative to the
catalog folder), the line or record, and the reason; nothing is returned for a refused file.
No model, no database: every test here is fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from dq_pipeline.catalog import (
    CatalogError,
    Entry,
    discover,
    load_catalog,
    parse_catalog,
    validate_catalog_id,
)


def write(root: Path, name: str, content: str | bytes) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def parse(root: Path, name: str, content: str | bytes) -> list[Entry]:
    """Write one catalog file under `root` and parse it through discovery, as a sync would."""
    write(root, name, content)
    return parse_catalog(discover(root)[name.rsplit(".", 1)[0]])


def refusal(root: Path, name: str, content: str | bytes) -> CatalogError:
    with pytest.raises(CatalogError) as info:
        parse(root, name, content)
    return info.value


def by_key(entries: list[Entry]) -> dict[str, Entry]:
    return {e.key: e for e in entries}


# --- malformed input is refused whole, naming file, location and reason ---------------------------

MALFORMED = [
    # CSV
    pytest.param(
        "x.csv",
        "table,column\nt,a\nt\n",
        "line 3",
        "expected 2 fields as in the header, found 1",
        id="csv-short-row",
    ),
    pytest.param("x.csv", 'table,column\nt,a\nt,"b"x\n', "line 3", "malformed CSV", id="csv-broken-quoting"),
    pytest.param(
        "x.csv", "table,,column\nt,,a\n", "line 1", "empty column name in header", id="csv-blank-header"
    ),
    pytest.param(
        "x.csv", "table,table\nt,u\n", "line 1", "duplicate column(s) in header: table", id="csv-dup-header"
    ),
    pytest.param("x.csv", "column,description\nc,d\n", "line 2", "no entry key", id="csv-missing-key"),
    pytest.param(
        "x.csv", "table,kind\nt,Big Table\n", "line 2", "invalid kind 'big table'", id="csv-invalid-kind"
    ),
    pytest.param(
        "x.csv",
        "table,column\nt,c\nt,d\nt,c\n",
        "line 4",
        "duplicate entry key 't.c' (first at line 2)",
        id="csv-dup-key",
    ),
    pytest.param(
        "x.csv", 'key,description\n"a\nb",x\n', "line 2", "invalid entry key", id="csv-control-char-in-key"
    ),
    pytest.param("x.csv", b"table\nok\n\xff\n", "line 3", "invalid UTF-8 byte 0xff", id="csv-invalid-utf8"),
    pytest.param("x.csv", b"table\nok\nb\x00d\n", "line 3", "NUL byte", id="csv-nul-byte"),
    # JSON
    pytest.param(
        "x.json", '[{"table": "a"},\n {"table": "b"', "line 2", "truncated JSON", id="json-truncated"
    ),
    pytest.param("x.json", '[{"table": "a"} {"table": "b"}]', "line 1", "invalid JSON", id="json-syntax"),
    pytest.param(
        "x.json",
        '[{"table": "a"}, "b"]',
        "[1]",
        "an entry must be an object, found str",
        id="json-non-object",
    ),
    pytest.param(
        "x.json",
        '{"entries": [{"table": "a"}, 3]}',
        "entries[1]",
        "an entry must be an object, found int",
        id="json-entries-non-object",
    ),
    pytest.param(
        "x.json",
        '{"entries": {"table": "a"}}',
        "entries",
        "`entries` must be a list",
        id="json-entries-not-list",
    ),
    pytest.param("x.json", '{"table": "a"}', "document", "expected a list of entries", id="json-bare-object"),
    pytest.param(
        "x.json",
        '{"entries": [{"table": "a"}, {"column": "c"}]}',
        "entries[1]",
        "no entry key",
        id="json-missing-key",
    ),
    pytest.param(
        "x.json",
        '{"entries": [{"table": "a"}, {"table": "b"}, {"key": "a"}]}',
        "entries[2]",
        "duplicate entry key 'a' (first at entries[0])",
        id="json-dup-key",
    ),
    pytest.param(
        "x.json", '[{"table": "a", "description": ["x"]}]', "[0]", "field description", id="json-wrong-type"
    ),
    # JSON Lines
    pytest.param("x.jsonl", '{"table": "a"}\n[1]\n', "line 2", "must be an object", id="jsonl-non-object"),
    pytest.param(
        "x.jsonl", '{"table": "a"}\n{"table": "b"\n', "line 2", "truncated JSON", id="jsonl-truncated"
    ),
    pytest.param(
        "x.jsonl",
        '{"table": "a"}\n{"table": "b", "table": "c"}\n',
        "line 2",
        "duplicate key 'table'",
        id="jsonl-dup-mapping-key",
    ),
    pytest.param(
        "x.jsonl", '{"table": "a"}\n\n{"column": "c"}\n', "line 3", "no entry key", id="jsonl-missing-key"
    ),
    pytest.param(
        "x.jsonl",
        '{"table": "a"}\n{"table": "b"}\n{"table": "a"}\n',
        "line 3",
        "duplicate entry key 'a' (first at line 1)",
        id="jsonl-dup-key",
    ),
    # YAML
    pytest.param(
        "x.yaml", "entries:\n  - table: a\n   column: b\n", "line 3", "invalid YAML", id="yaml-bad-indent"
    ),
    pytest.param(
        "x.yaml",
        "- table: t\n  column: c\n  column: d\n",
        "line 3",
        "duplicate key 'column' in one mapping",
        id="yaml-dup-mapping-key",
    ),
    pytest.param(
        "x.yaml",
        "- table: t\n  x: !!python/object:os.system a\n",
        "line 2",
        "could not determine a constructor",
        id="yaml-unsafe-tag",
    ),
    pytest.param(
        "x.yaml", "- table: t\n- column: c\n", "line 2 ([1])", "no entry key", id="yaml-missing-key"
    ),
    pytest.param(
        "x.yaml",
        "entries:\n  - table: t\n  - table: t\n",
        "line 3 (entries[1])",
        "duplicate entry key 't' (first at line 2 (entries[0]))",
        id="yaml-dup-key",
    ),
    pytest.param(
        "x.yaml", "entries:\n  - table: t\n  - just text\n", "entries[1]", "found str", id="yaml-non-object"
    ),
]


@pytest.mark.parametrize(("name", "content", "location", "reason"), MALFORMED)
def test_malformed_catalog_is_refused_naming_file_location_and_reason(
    tmp_path: Path, name: str, content: str | bytes, location: str, reason: str
) -> None:
    display = f"domain/{name}"
    err = refusal(tmp_path, display, content)
    message = str(err)
    assert err.path == display
    assert message.startswith(f"catalog {display} refused")
    assert str(tmp_path) not in message  # the display path is relative to the catalog folder
    assert f"\n  {location}: " in message
    assert reason in message


def test_all_problems_of_a_file_are_reported_together(tmp_path: Path) -> None:
    err = refusal(tmp_path, "x.csv", "table,column,kind\nt,,table\n,c,\nt,d,Not Valid\nt,,\n")
    assert [(p.location, p.reason.split(":")[0]) for p in err.problems] == [
        ("line 3", "no entry key"),
        ("line 4", "invalid kind 'not valid'"),
        ("line 5", "duplicate entry key 't' (first at line 2); the key is taken from column `table`"),
    ]
    assert "catalog x.csv refused: 3 problem(s)" in str(err)


def test_problem_report_is_bounded(tmp_path: Path) -> None:
    err = refusal(tmp_path, "x.csv", "column\n" + "c\n" * 25)
    message = str(err)
    assert len(err.problems) == 25
    assert "25 problem(s)" in message
    assert message.count("no entry key") == 20
    assert "line 21: " in message and "line 22: " not in message
    assert message.rstrip().endswith("... and 5 more problem(s)")


def test_duplicate_mapping_key_in_json_object_is_refused(tmp_path: Path) -> None:
    err = refusal(tmp_path, "x.json", '[\n{"table": "a"},\n{"table": "b", "table": "c"}\n]')
    assert "duplicate key 'table' in one object" in str(err)


# --- locations of problems found while reviewing the parsers --------------------------------------


def test_duplicate_mapping_key_in_json_names_its_record(tmp_path: Path) -> None:
    err = refusal(tmp_path, "x.json", '[\n{"table": "a"},\n{"table": "b", "table": "c"}\n]')
    assert err.problems[0].location in ("line 3", "[1]")


def test_duplicate_mapping_key_on_first_jsonl_line_names_line_1(tmp_path: Path) -> None:
    err = refusal(tmp_path, "x.jsonl", '{"table": "b", "table": "c"}\n')
    assert "\n  line 1: duplicate key 'table'" in str(err)


def test_unhashable_yaml_mapping_key_is_refused(tmp_path: Path) -> None:
    err = refusal(tmp_path, "x.yaml", "- table: t\n  ? [a, b]\n  : x\n")
    assert "line 2" in str(err)


def test_non_object_record_is_reported_with_the_other_problems(tmp_path: Path) -> None:
    err = refusal(tmp_path, "x.json", '[{"column": "c"}, 5]')
    assert [p.location for p in err.problems] == ["[0]", "[1]"]


def test_unterminated_csv_quote_names_the_line_of_the_record(tmp_path: Path) -> None:
    err = refusal(tmp_path, "x.csv", 'table,column\nt,c\nt,"d\nu,v\nw,x\n')
    assert "\n  line 3: malformed CSV" in str(err)


def test_symlink_loop_is_refused_alone(tmp_path: Path) -> None:
    write(tmp_path, "good.csv", "table\nt\n")
    os.symlink(tmp_path / "loop.csv", tmp_path / "loop.csv")
    found = discover(tmp_path)
    assert found["loop"].error is not None
    assert [e.key for e in parse_catalog(found["good"])] == ["t"]


# --- entries: keys, kinds, text and payload -----------------------------------------------------


@pytest.mark.parametrize(
    ("record", "key", "kind"),
    [
        pytest.param({"key": "k1", "table": "t", "column": "c"}, "k1", "column", id="explicit-key"),
        pytest.param({"id": "k2", "table": "t"}, "k2", "table", id="explicit-id"),
        pytest.param({"table": "t", "column": "c"}, "t.c", "column", id="table-column"),
        pytest.param({"table": "t"}, "t", "table", id="table"),
        pytest.param(
            {"table": " t ", "column": " c ", "kind": " METRIC "}, "t.c", "metric", id="trimmed-lowercased"
        ),
        pytest.param({"key": "r", "kind": "rule"}, "r", "rule", id="explicit-kind"),
    ],
)
def test_entry_key_and_kind(tmp_path: Path, record: dict, key: str, kind: str) -> None:
    (entry,) = parse(tmp_path, "x.json", json.dumps([record]))
    assert (entry.key, entry.kind) == (key, kind)
    assert "key" not in entry.payload and "kind" not in entry.payload and "id" not in entry.payload


def test_text_is_built_from_kind_key_type_description_tags_rules_and_rule_fields(tmp_path: Path) -> None:
    record = {
        "key": "dq.orders.fresh",
        "kind": "rule",
        "type": "check",
        "description": "Orders load on time.",
        "tags": ["freshness", "sales"],
        "rules": ["not_null", {"max_age": "2h"}],
        "applies_to": "orders.updated_at",
        "expression": "max(updated_at) > now() - 2h",
        "severity": "error",
        "owner": "dq@example.com",
    }
    (entry,) = parse(tmp_path, "x.yaml", yaml.safe_dump([record]))
    assert entry.text == (
        "rule dq.orders.fresh (check): Orders load on time. Tags: freshness, sales. Rules: not_null; max_age: 2h. "
        "Applies to: orders.updated_at. Expression: max(updated_at) > now() - 2h. Severity: error."
    )
    assert entry.payload["owner"] == "dq@example.com"
    assert entry.payload["severity"] == "error"
    assert "owner" not in entry.text


def test_csv_splits_tags_and_rules_on_pipes_and_keeps_extra_columns(tmp_path: Path) -> None:
    (entry,) = parse(
        tmp_path,
        "x.csv",
        "table,column,data_type,tags,tests,owner\norders,id,bigint, pk | core ||,not_null|unique,ops\n",
    )
    assert entry.payload == {
        "table": "orders",
        "column": "id",
        "type": "bigint",
        "tags": ["pk", "core"],
        "rules": ["not_null", "unique"],
        "owner": "ops",
    }
    assert entry.text == "column orders.id (bigint). Tags: pk, core. Rules: not_null; unique."


@pytest.mark.parametrize("description", ["", "   "])
def test_empty_description_is_not_an_error(tmp_path: Path, description: str) -> None:
    (entry,) = parse(tmp_path, "x.csv", f"table,column,description\nt,c,{description}\n")
    assert entry.text == "column t.c."
    assert "description" not in entry.payload


# --- the same content in every format, on every platform ----------------------------------------

RECORDS = [
    {
        "table": "clientes",
        "kind": "table",
        "description": "Tabla de clientes",
        "tags": ["crm", "core"],
        "owner": "crm",
    },
    {
        "table": "clientes",
        "column": "dirección",
        "type": "varchar(200)",
        "description": "Dirección postal del cliente, con código postal",
        "tags": ["pii"],
        "rules": ["not_null"],
        "owner": "crm",
    },
    {"table": "clientes", "column": "telefono", "description": "Numéro de téléphone", "owner": "crm"},
]
CSV_RECORDS = (
    "table,column,kind,type,description,tags,rules,owner\n"
    "clientes,,table,,Tabla de clientes,crm|core,,crm\n"
    'clientes,dirección,,varchar(200),"Dirección postal del cliente, con código postal",pii,not_null,crm\n'
    "clientes,telefono,,,Numéro de téléphone,,,crm\n"
)
AS_FORMAT = {
    "x.csv": CSV_RECORDS,
    "x.json": json.dumps({"entries": RECORDS}, ensure_ascii=False, indent=2),
    "x.jsonl": "\n".join(json.dumps(r, ensure_ascii=False) for r in RECORDS) + "\n",
    "x.yaml": yaml.safe_dump({"entries": RECORDS}, allow_unicode=True),
}


def summary(entries: list[Entry]) -> list[tuple]:
    return [(e.key, e.kind, e.text, dict(e.payload), e.content_hash) for e in entries]


def test_every_format_yields_the_same_entries(tmp_path: Path) -> None:
    results = {name: summary(parse(tmp_path / name, name, text)) for name, text in AS_FORMAT.items()}
    assert [key for key, *_ in results["x.csv"]] == ["clientes", "clientes.dirección", "clientes.telefono"]
    for name, result in results.items():
        assert result == results["x.csv"], name


@pytest.mark.parametrize("name", list(AS_FORMAT))
def test_non_ascii_text_round_trips_exactly(tmp_path: Path, name: str) -> None:
    entries = by_key(parse(tmp_path, name, AS_FORMAT[name]))
    address = entries["clientes.dirección"]
    assert address.payload["column"] == "dirección"
    assert address.payload["description"] == "Dirección postal del cliente, con código postal"
    assert "column clientes.dirección (varchar(200)): Dirección postal" in address.text
    assert entries["clientes.telefono"].payload["description"] == "Numéro de téléphone"
    assert "Numéro de téléphone" in entries["clientes.telefono"].text


MULTILINE = {
    "x.csv": 'table,column,description,tags\nt,a,"first line\nsecond line",p|q\nt,b,plain,\n',
    "x.json": '{\n  "entries": [\n    {"table": "t", "column": "a", "description": "first line\\nsecond line",'
    ' "tags": ["p", "q"]},\n    {"table": "t", "column": "b", "description": "plain"}\n  ]\n}\n',
    "x.jsonl": '{"table": "t", "column": "a", "description": "first line\\nsecond line", "tags": ["p", "q"]}\n'
    '\n{"table": "t", "column": "b", "description": "plain"}\n',
    "x.yaml": "# comment\nentries:\n  - table: t\n    column: a\n    description: |-\n      first line\n      second line\n"
    "    tags: [p, q]\n  - table: t\n    column: b\n    description: plain\n",
}


@pytest.mark.parametrize("name", list(MULTILINE))
def test_crlf_file_parses_like_lf_file(tmp_path: Path, name: str) -> None:
    lf = parse(tmp_path / "lf", name, MULTILINE[name])
    crlf = parse(tmp_path / "crlf", name, MULTILINE[name].replace("\n", "\r\n"))
    assert summary(crlf) == summary(lf)
    assert [e.location for e in crlf] == [e.location for e in lf]
    assert by_key(crlf)["t.a"].payload["description"] == "first line\nsecond line"


@pytest.mark.parametrize("name", list(MULTILINE))
def test_utf8_bom_is_accepted(tmp_path: Path, name: str) -> None:
    plain = parse(tmp_path / "plain", name, MULTILINE[name])
    with_bom = parse(tmp_path / "bom", name, b"\xef\xbb\xbf" + MULTILINE[name].encode("utf-8"))
    assert summary(with_bom) == summary(plain)


# --- content hash -------------------------------------------------------------------------------


def test_content_hash_ignores_row_order_and_location(tmp_path: Path) -> None:
    forward = by_key(parse(tmp_path / "a", "x.csv", "table,column,description\nt,a,A\nt,b,B\n"))
    backward = by_key(parse(tmp_path / "b", "x.csv", "table,column,description\n\nt,b,B\nt,a,A\n"))
    assert forward["t.a"].location != backward["t.a"].location
    assert {k: e.content_hash for k, e in forward.items()} == {k: e.content_hash for k, e in backward.items()}


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param("t,a,Another description,ops", id="description"),
        pytest.param("t,a,A,finance", id="payload-only-field"),
    ],
)
def test_content_hash_changes_with_content(tmp_path: Path, changed: str) -> None:
    header = "table,column,description,owner\n"
    (before,) = parse(tmp_path / "a", "x.csv", header + "t,a,A,ops\n")
    (after,) = parse(tmp_path / "b", "x.csv", header + changed + "\n")
    assert before.content_hash != after.content_hash
    (again,) = parse(tmp_path / "c", "x.csv", header + "t,a,A,ops\n")
    assert again.content_hash == before.content_hash


# --- discovery and catalog ids ------------------------------------------------------------------


def test_discover_names_catalogs_by_relative_path_and_skips_hidden_and_unknown(tmp_path: Path) -> None:
    write(tmp_path, "finance/ledger.json", '[{"table": "gl"}]')
    write(tmp_path, "a/b/c.yml", "- table: c\n")
    write(tmp_path, "events.NDJSON", '{"table": "e"}\n')
    write(tmp_path, ".hidden.csv", "table\nh\n")
    write(tmp_path, ".git/x.csv", "table\nh\n")
    write(tmp_path, "sub/.cache/y.json", "[]")
    write(tmp_path, "notes.txt", "table\nn\n")
    write(tmp_path, "README.md", "# catalogs\n")
    found = discover(tmp_path)
    assert sorted(found) == ["a/b/c", "events", "finance/ledger"]
    assert found["finance/ledger"].display == "finance/ledger.json"
    assert all(f.error is None for f in found.values())


def test_two_files_sharing_an_id_refuse_that_catalog_only(tmp_path: Path) -> None:
    write(tmp_path, "a.csv", "table\nt\n")
    write(tmp_path, "a.json", '[{"table": "t"}]')
    write(tmp_path, "b.csv", "table\nu\n")
    found = discover(tmp_path)
    assert found["a"].error is not None
    with pytest.raises(CatalogError, match=r"catalog id 'a' is used by both a\.csv and a\.json"):
        parse_catalog(found["a"])
    with pytest.raises(CatalogError, match="used by both"):
        load_catalog(tmp_path, "a")
    assert [e.key for e in load_catalog(tmp_path, "b")] == ["u"]


def test_symlink_leaving_the_folder_is_refused_alone(tmp_path: Path) -> None:
    root, outside = tmp_path / "catalogs", tmp_path / "outside"
    write(outside, "secret.csv", "table\nsecret\n")
    write(root, "good.csv", "table\nt\n")
    root.joinpath("leak.csv").symlink_to(outside / "secret.csv")
    root.joinpath("dangling.csv").symlink_to(root / "missing.csv")
    found = discover(root)
    for name, reason in (("leak", "symlink points outside the catalog folder"), ("dangling", "broken symlink")):
        with pytest.raises(CatalogError, match=reason) as info:
            parse_catalog(found[name])
        assert info.value.path == f"{name}.csv"
    assert [e.key for e in parse_catalog(found["good"])] == ["t"]


def test_symlink_inside_the_folder_is_followed(tmp_path: Path) -> None:
    write(tmp_path, "real/x.csv", "table\nt\n")
    tmp_path.joinpath("alias.csv").symlink_to(tmp_path / "real" / "x.csv")
    assert [e.key for e in load_catalog(tmp_path, "alias")] == ["t"]


@pytest.mark.parametrize("catalog_id", ["finance/ledger", "crm", "a b/c_d-1.v2"])
def test_valid_catalog_ids(catalog_id: str) -> None:
    assert validate_catalog_id(catalog_id) == catalog_id


@pytest.mark.parametrize(
    "catalog_id", ["", "..", "../etc/passwd", "a/../b", "/etc/passwd", "a//b", ".hidden"]
)
def test_invalid_catalog_ids_are_refused(catalog_id: str) -> None:
    with pytest.raises(ValueError, match="invalid catalog id"):
        validate_catalog_id(catalog_id)


def test_load_catalog_refuses_an_invalid_id(catalog_dir: Path) -> None:
    with pytest.raises(ValueError, match="invalid catalog id"):
        load_catalog(catalog_dir, "../catalogs/crm/customers")


def test_removed_catalog_loads_as_empty(catalog_dir: Path) -> None:
    assert load_catalog(catalog_dir, "crm/customers")
    (catalog_dir / "crm" / "customers.yaml").unlink()
    assert load_catalog(catalog_dir, "crm/customers") == []
    assert load_catalog(catalog_dir, "never/existed") == []


# --- the shipped sample catalogs ----------------------------------------------------------------


def test_sample_catalogs_parse(catalog_dir: Path) -> None:
    found = discover(catalog_dir)
    assert sorted(found) == [
        "crm/customers",
        "data_quality/rules",
        "finance/ledger",
        "marketing/events",
        "sales/orders",
    ]
    counts = {catalog_id: len(parse_catalog(file)) for catalog_id, file in found.items()}
    assert sum(counts.values()) == 309
    assert all(counts.values())


def test_sample_crm_catalog_has_customer_email_column(catalog_dir: Path) -> None:
    email = by_key(load_catalog(catalog_dir, "crm/customers"))["customers.email"]
    assert email.kind == "column"
    assert email.payload["table"] == "customers" and email.payload["column"] == "email"
    assert email.text.startswith("column customers.email (varchar(255)): ")


def test_content_hash_is_unchanged_across_releases() -> None:
    """Rows already stored carry these hashes: a different spelling would re-embed every catalog on upgrade."""
    import datetime
    import decimal

    entries = [
        Entry("a.b", "column", 't é"x', {"z": 1, "a": [1, {"q": None}], "d": datetime.date(2020, 1, 2), "m": decimal.Decimal("1.5")}),
        Entry("k", "rule", "", {}),
        Entry("k", "table", "x\n\u2028", {"n": float("nan")}),
    ]
    assert [e.content_hash for e in entries] == [
        "c25d61ee5b5cd8e14f0ffe3bcf1f0bbb7f32bb8035dd6f6d031b85c805d22fce",
        "ba18456158ed875075bee96404fb2da9e02b37279be128b53b89057e2ab5dfba",
        "95666c0968cb2fd73e1aab0d0c950bfc4f2beb2c17bb235aaab4fc9a1ca9619e",
    ]
    # The payload is handed out as JSON values, a fresh copy each time (an entry is immutable).
    assert entries[0].payload == {"a": [1, {"q": None}], "d": "2020-01-02", "m": "1.5", "z": 1}
    entries[0].payload["z"] = 2
    assert entries[0].payload["z"] == 1
