"""Generic CSV data dictionaries (issue 12 item 10): the common column names, a `key` column of
PK/FK/NA markers, per-file column mappings in `.dq-formats.yaml`, and key errors that say which
column the key came from. Real parsing through discovery, as a sync does."""

from __future__ import annotations

from pathlib import Path

import pytest

from dq_pipeline.catalog import CatalogError, discover, parse_catalog


def parse(root: Path, catalog_id: str) -> list:
    return parse_catalog(discover(root)[catalog_id])


def refusal(root: Path, catalog_id: str) -> CatalogError:
    with pytest.raises(CatalogError) as refused:
        parse(root, catalog_id)
    return refused.value


DICTIONARY = (
    "table_name,column_name,key,definition,datatype\n"
    "orders,order_id,PK,Surrogate key of the order,bigint\n"
    "orders,customer_id,FK,The customer who ordered,bigint\n"
    "orders,note,NA,Free text from the clerk,text\n"
    "customers,customer_id,pk / fk,,bigint\n"
)


def test_common_data_dictionary_columns_are_recognised_and_a_pk_fk_key_column_is_a_role(tmp_path: Path) -> None:
    (tmp_path / "dictionary.csv").write_text(DICTIONARY, encoding="utf-8")
    entries = {e.key: e for e in parse(tmp_path, "dictionary")}
    assert list(entries) == ["orders.order_id", "orders.customer_id", "orders.note", "customers.customer_id"]
    order_id = entries["orders.order_id"]
    assert order_id.kind == "column"
    assert order_id.payload == {
        "table": "orders", "column": "order_id", "key_role": "PK", "description": "Surrogate key of the order", "type": "bigint",
    }
    assert order_id.text == "column orders.order_id (bigint): Surrogate key of the order."
    assert entries["customers.customer_id"].payload["key_role"] == "pk / fk"


def test_a_key_column_holding_real_keys_is_still_the_entry_key(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("key,table_name,column_name\norders.id,orders,id\nPK,orders,\n", encoding="utf-8")
    assert [e.key for e in parse(tmp_path, "x")] == ["orders.id", "PK"]  # no column named: "PK" is a key here


def test_dq_formats_maps_a_files_columns(tmp_path: Path) -> None:
    (tmp_path / "dict").mkdir()
    (tmp_path / "dict" / "erp.csv").write_text(
        "TABNAME,FIELD,NOTES,key,description\nVBAK,VBELN,Sales document,PRIMARY,old text\nVBAK,ERDAT,Created on,,\n",
        encoding="utf-8",
    )
    (tmp_path / "plain.csv").write_text("TABNAME,FIELD\nA,B\n", encoding="utf-8")
    (tmp_path / ".dq-formats.yaml").write_text(
        '"dict/*.csv":\n  format: csv\n  columns: {table: TABNAME, column: FIELD, description: NOTES, key: null}\n',
        encoding="utf-8",
    )
    entries = parse(tmp_path, "dict/erp")
    assert [e.key for e in entries] == ["VBAK.VBELN", "VBAK.ERDAT"]
    assert entries[0].payload == {
        "table": "VBAK", "column": "VBELN", "description": "Sales document", "key_role": "PRIMARY", "source_description": "old text",
    }
    # Files the pattern does not match are read as before: no known key column, refused naming what it has.
    err = refusal(tmp_path, "plain")
    assert "no entry key" in str(err) and "this record has: TABNAME, FIELD" in str(err) and ".dq-formats.yaml" in str(err)


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ('"*.csv": {columns: {table: NOPE}}\n', "column(s) NOPE mapped in `columns` are in no record of the file"),
        ('"*.csv": {columns: {tabel: TABNAME}}\n', "unknown field(s) tabel in `columns`"),
        ('"*.csv": {format: csv, colums: {}}\n', "unknown setting(s) colums"),
        ('"*.csv": {format: dcat, columns: {table: TABNAME}}\n', "`columns` applies to csv, json, jsonl and yaml files, not dcat"),
    ],
    ids=["missing-column", "unknown-field", "unknown-setting", "not-a-record-format"],
)
def test_a_wrong_column_mapping_is_refused_naming_dq_formats(tmp_path: Path, override: str, reason: str) -> None:
    (tmp_path / "x.csv").write_text("TABNAME,FIELD\nA,B\n", encoding="utf-8")
    (tmp_path / ".dq-formats.yaml").write_text(override, encoding="utf-8")
    err = refusal(tmp_path, "x")
    assert err.problems[0].location == ".dq-formats.yaml" and reason in err.problems[0].reason, str(err)


def test_key_errors_say_which_column_the_key_came_from(tmp_path: Path) -> None:
    (tmp_path / "ids.csv").write_text("id,description\na,x\na,y\n", encoding="utf-8")
    (tmp_path / "cols.csv").write_text("table_name,column_name\nt,c\nt,c\n", encoding="utf-8")
    assert "duplicate entry key 'a' (first at line 2); the key is taken from column `id`" in str(refusal(tmp_path, "ids"))
    assert "the key is taken from columns `table_name` + `column_name`" in str(refusal(tmp_path, "cols"))
