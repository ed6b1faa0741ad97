"""Refused catalogs stay visible, and warnings are shown (issue items 9 and 12; docs/DESIGN.md,
"Command-line contract").

The installed `dq-pipeline` runs as a user types it, against SQLite and PostgreSQL, with hashing
vectors (`DQ_EMBEDDING_MODEL=hashing:32`: what is refused or warned about does not depend on meaning).
Syncs read a folder given by `--catalog-dir` while the environment names none, so `status` must say
which folder the last sync read rather than the configured default.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect

from dq_pipeline.sync import open_record, refusals
from dq_pipeline.sync.stores.schema import catalogs, metadata

EXE = Path(sys.executable).with_name("dq-pipeline")
BOOTSTRAP = Path(__file__).resolve().parent / "fixtures" / "open" / "datahub" / "bootstrap_mce.json"

GOOD = "table,column,description\norders,id,Order id\norders,total,Order total\n"
BROKEN = "key,description\nk1,a\nk1,b\n"  # a duplicate entry key: refused whole (I6)


def dq(env: dict[str, str], cwd: Path, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(EXE), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    if expect is not None:
        assert done.returncode == expect, (args, done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done


def dq_json(env: dict[str, str], cwd: Path, *args: str, expect: int | None = 0) -> dict:
    return json.loads(dq(env, cwd, *args, "--json", expect=expect).stdout)


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DQ_") and k != "DAGSTER_HOME"}
    env.update(DQ_DATABASE_URL=database_url, DQ_DATA_DIR=str(tmp_path / "data"), DQ_EMBEDDING_MODEL="hashing:32")
    return env


def served(database_url: str, catalog_id: str) -> tuple[str, int]:
    engine = open_record(database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(catalogs.select().where(catalogs.c.catalog_id == catalog_id)).one()
        return row.source_digest, row.entry_count
    finally:
        engine.dispose()


@pytest.mark.slow
def test_refused_catalog_is_recorded_shown_and_cleared(cli_env: dict[str, str], database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "orders.csv").write_text(GOOD, encoding="utf-8")
    (folder / "bootstrap_mce.json").write_bytes(BOOTSTRAP.read_bytes())  # DataHub's own file: one warning
    first = dq_json(cli_env, tmp_path, "sync", "--catalog-dir", str(folder))
    assert first["ok"] is True
    boot = first["catalogs"]["bootstrap_mce"]
    assert boot["warning_count"] == 1 and boot["warnings"][0].startswith("bootstrap_mce.json:820: duplicate key 'upstreams'")
    assert (first["catalogs"]["orders"]["warnings"], first["catalogs"]["orders"]["warning_count"]) == ([], 0)
    digest, entries = served(database_url, "orders")
    assert entries == 2

    (folder / "orders.csv").write_text(BROKEN, encoding="utf-8")
    text = dq(cli_env, tmp_path, "sync", "--catalog-dir", str(folder), expect=1)
    assert "orders: FAILED: catalog orders.csv refused" in text.stderr
    assert "  warning: bootstrap_mce.json:820: duplicate key 'upstreams' in one object (first at line 818)" in text.stdout

    status = dq_json(cli_env, tmp_path, "status")
    refused = status["refused"]
    assert list(refused) == ["orders"]
    assert refused["orders"]["file"] == "orders.csv" and refused["orders"]["problems"] == 1
    assert "line 3: duplicate entry key 'k1'" in refused["orders"]["reason"]
    assert refused["orders"]["served"] == {"source_digest": digest, "entries": 2}  # the version still served
    assert refused["orders"]["catalog_dir"] == str(folder.resolve())
    # The folder the last sync read, not the configured default ("catalogs", which does not exist here).
    assert (status["catalog_dir"], status["catalog_dir_source"], status["configured_catalog_dir"]) == (
        str(folder.resolve()), "last sync", "catalogs")
    assert status["catalogs"]["bootstrap_mce"]["warning_count"] == 1
    assert status["catalogs"]["bootstrap_mce"]["warnings"][0].startswith("bootstrap_mce.json:820:")
    assert status["catalogs"]["orders"]["entries"] == 2  # still served

    shown = dq(cli_env, tmp_path, "status").stdout
    assert f"catalog dir: {folder.resolve()} (last sync " in shown and "configured: catalogs)" in shown
    assert "refused (1)" in shown and "  orders: orders.csv refused at " in shown
    assert "still serving 2 entries" in shown and "line 3: duplicate entry key 'k1'" in shown
    assert "    warning: bootstrap_mce.json:820: duplicate key 'upstreams'" in shown

    verified = dq_json(cli_env, tmp_path, "verify")  # the stores agree on what is served: exit 0
    assert verified["in_sync"] is True and list(verified["refused"]) == ["orders"]
    assert verified["refused"]["orders"]["served"]["entries"] == 2
    assert dq_json(cli_env, tmp_path, "verify", "--catalog", "bootstrap_mce")["refused"] == {}
    assert "refused (1)" in dq(cli_env, tmp_path, "verify").stdout

    (folder / "orders.csv").write_text(GOOD.replace("Order total", "Order total with tax"), encoding="utf-8")
    fixed = dq_json(cli_env, tmp_path, "sync", "--catalog-dir", str(folder), "--catalog", "orders")
    assert fixed["catalogs"]["orders"]["updated"] == 1
    after = dq_json(cli_env, tmp_path, "status")
    assert after["refused"] == {} and dq_json(cli_env, tmp_path, "verify")["refused"] == {}
    assert after["catalogs"]["bootstrap_mce"]["warning_count"] == 1  # untouched by the other catalog's sync


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_refused_file_that_served_nothing_is_forgotten_once_removed(cli_env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "cats"
    folder.mkdir()
    (folder / "good.csv").write_text(GOOD, encoding="utf-8")
    (folder / "bad.csv").write_text(BROKEN, encoding="utf-8")
    dq(cli_env, tmp_path, "sync", "--catalog-dir", str(folder), expect=1)
    refused = dq_json(cli_env, tmp_path, "status")["refused"]
    assert list(refused) == ["bad"] and refused["bad"]["served"] is None
    assert "nothing served" in dq(cli_env, tmp_path, "status").stdout
    (folder / "bad.csv").unlink()
    dq(cli_env, tmp_path, "sync", "--catalog-dir", str(folder))
    assert dq_json(cli_env, tmp_path, "status")["refused"] == {}


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_many_warnings_are_capped_with_their_exact_count(cli_env: dict[str, str], tmp_path: Path) -> None:
    """150 duplicate dbt columns: more than the reader keeps (100) and the step lists (50)."""
    folder = tmp_path / "cats"
    folder.mkdir()
    columns = "".join(f"      - name: c{i}\n        description: first\n      - name: c{i}\n        description: last\n" for i in range(150))
    (folder / "schema.yml").write_text(f"version: 2\nmodels:\n  - name: m\n    columns:\n{columns}", encoding="utf-8")
    text = dq(cli_env, tmp_path, "sync", "--catalog-dir", str(folder)).stdout
    listed = [line for line in text.splitlines() if line.startswith("  warning: schema.yml:")]
    assert len(listed) == 20 and listed[0].startswith("  warning: schema.yml:7: duplicate column name 'c0'")
    assert "  ... and 130 more warning(s)" in text
    row = dq_json(cli_env, tmp_path, "sync", "--catalog-dir", str(folder))["catalogs"]["schema"]
    assert (len(row["warnings"]), row["warning_count"]) == (20, 150)
    status = dq_json(cli_env, tmp_path, "status")["catalogs"]["schema"]
    assert (len(status["warnings"]), status["warning_count"]) == (refusals.WARNINGS_KEPT, 150)
    shown = dq(cli_env, tmp_path, "status").stdout
    assert "schema: 151 entries" in shown and "150 warning(s)" in shown and "    ... and 145 more warning(s)" in shown


@pytest.mark.slow
def test_tables_register_before_create_schema_by_any_import_path(tmp_path: Path) -> None:
    """Importing only the schema module (as a migration script would) still creates the new tables:
    the package's __init__ registers them on `metadata` first."""
    db = tmp_path / "fresh.sqlite3"
    code = (
        "from sqlalchemy import create_engine; from dq_pipeline.sync.stores.schema import create_schema; "
        f"create_schema(create_engine('sqlite:///{db}'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    from sqlalchemy import create_engine

    names = set(inspect(create_engine(f"sqlite:///{db}")).get_table_names())
    assert {"dq_refusals", "dq_catalog_reads"} <= names
    assert {"dq_refusals", "dq_catalog_reads"} <= set(metadata.tables)


def test_recording_is_best_effort_and_only_for_refusals(tmp_path: Path) -> None:
    from contextlib import contextmanager

    from dq_pipeline.catalog import CatalogError
    from dq_pipeline.errors import StoreUnavailable

    @contextmanager
    def broken():
        raise StoreUnavailable("record down")
        yield  # pragma: no cover

    refusal = CatalogError.single("a.csv", "line 2", "bad")
    assert refusals.record_refusal(broken, "a", tmp_path, refusal) is False  # logged, never raised

    url = f"sqlite:///{tmp_path / 'dq.sqlite3'}"

    @contextmanager
    def record():
        engine = open_record(url)
        try:
            yield engine
        finally:
            engine.dispose()

    assert refusals.record_refusal(record, "a", tmp_path, StoreUnavailable("busy")) is False  # not a refusal
    assert refusals.record_refusal(record, "a", tmp_path, CatalogError("a.csv", [refusal.problems[0]] * 3)) is True
    with record() as engine:
        (row,) = refusals.refused(engine).values()
        assert row["problems"] == 3 and row["served"] is None and row["catalog_dir"] == str(tmp_path.resolve())
        assert refusals.forget_missing(engine, tmp_path, ["a"]) == []
        assert refusals.forget_missing(engine, tmp_path, []) == ["a"]
        assert refusals.refused(engine) == {}
