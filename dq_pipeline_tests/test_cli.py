"""The command-line contract (docs/DESIGN.md): outputs, JSON shapes and exit codes, end to end.

Runs with the real bundled model, real embedded Qdrant, and SQLite or PostgreSQL as the system of
record. Most cases run the click command in-process (the model loads once); the first-run case
runs the installed `dq-pipeline` executable as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dq_pipeline.cli import cli

from .cli_helpers import run, run_json

pytestmark = pytest.mark.model


SAMPLE_COUNTS = {
    "crm/customers": 72,
    "data_quality/rules": 44,
    "finance/ledger": 75,
    "marketing/events": 58,
    "sales/orders": 60,
}


def test_sync_verify_resync_edit_delete(env: dict[str, str], catalog_dir: Path) -> None:
    first = run_json("sync")
    assert first["ok"] is True
    assert {cid: c["inserted"] for cid, c in first["catalogs"].items()} == SAMPLE_COUNTS
    assert all(c["embedded"] == c["inserted"] and c["error"] is None for c in first["catalogs"].values())

    verified = run_json("verify")
    assert verified["in_sync"] is True
    for cid, counts in verified["catalogs"].items():
        assert counts == {"pg": SAMPLE_COUNTS[cid], "qdrant": SAMPLE_COUNTS[cid], "missing": 0, "orphans": 0, "mismatched": 0, "pending_journal": 0}

    again = run_json("sync")  # I4: nothing embedded, nothing written
    assert all(
        (c["embedded"], c["inserted"], c["updated"], c["deleted"], c["unchanged"]) == (0, 0, 0, 0, SAMPLE_COUNTS[cid])
        for cid, c in again["catalogs"].items()
    )

    orders = catalog_dir / "sales" / "orders.csv"
    lines = orders.read_text(encoding="utf-8").splitlines(keepends=True)
    assert lines[0].split(",")[:5] == ["table", "column", "kind", "type", "description"]
    edited = next(i for i, line in enumerate(lines) if line.startswith("orders,order_id,"))
    lines[edited] = _with_description(lines[edited], "Surrogate key of an order, assigned by the order service.")
    deleted = next(i for i, line in enumerate(lines) if line.startswith("returns,") and i != edited and ",column," in line)
    deleted_key = ".".join(lines[deleted].split(",")[:2])
    del lines[deleted]
    orders.write_text("".join(lines), encoding="utf-8")

    changed = run_json("sync", "--catalog", "sales/orders")["catalogs"]["sales/orders"]
    assert (changed["embedded"], changed["updated"], changed["deleted"], changed["inserted"]) == (1, 1, 1, 0)
    assert changed["unchanged"] == SAMPLE_COUNTS["sales/orders"] - 2
    assert deleted_key.startswith("returns.")
    assert run_json("verify", "--catalog", "sales/orders")["catalogs"]["sales/orders"]["pg"] == SAMPLE_COUNTS["sales/orders"] - 1

    (catalog_dir / "marketing" / "events.jsonl").unlink()  # a removed file syncs as an empty catalog
    removed = run_json("sync")["catalogs"]["marketing/events"]
    assert (removed["status"], removed["deleted"]) == ("ok", SAMPLE_COUNTS["marketing/events"])
    final = run_json("verify")
    assert final["in_sync"] is True and "marketing/events" not in final["catalogs"]


def _with_description(csv_line: str, description: str) -> str:
    import csv
    import io

    row = next(csv.reader([csv_line]))
    row[4] = description
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(row)
    return out.getvalue()


def test_a_bad_catalog_is_refused_whole_and_others_still_sync(env: dict[str, str], catalog_dir: Path) -> None:
    bad = catalog_dir / "broken" / "assets.csv"
    bad.parent.mkdir()
    bad.write_text("table,column,description\nassets,id,Asset id\nassets,id,Again\n", encoding="utf-8")
    out = run_json("sync", expect=1)
    assert out["ok"] is False
    broken = out["catalogs"]["broken/assets"]
    assert broken["status"] == "failed" and broken["inserted"] == 0
    assert "broken/assets.csv" in broken["error"] and "line 3" in broken["error"] and "duplicate entry key 'assets.id'" in broken["error"]
    assert all(c["status"] == "ok" for cid, c in out["catalogs"].items() if cid != "broken/assets")
    assert "broken/assets" not in run_json("verify")["catalogs"]  # nothing written for it (I6)


def test_verify_detects_a_point_deleted_behind_the_back_and_repair_restores_it(env: dict[str, str]) -> None:
    run("sync", "--catalog", "crm/customers")
    from dq_pipeline.settings import Settings
    from dq_pipeline.sync import SyncedStore

    settings = Settings.from_env()
    with SyncedStore.open(settings.database_url, qdrant_path=settings.qdrant_path) as store:
        collection = store.index.collections()[0]
        victim = next(iter(store.index.points_of_catalog(collection, "crm/customers")))
        store.index.unguarded_delete(collection, [victim])

    broken = run_json("verify", expect=1)
    assert broken["in_sync"] is False
    assert broken["catalogs"]["crm/customers"] == {"pg": 72, "qdrant": 71, "missing": 1, "orphans": 0, "mismatched": 0, "pending_journal": 0}
    text = run("verify", expect=1)
    assert "OUT OF SYNC" in text and victim in text

    repaired = run_json("repair")
    assert repaired["catalogs"]["crm/customers"]["restored"] == 1 and repaired["in_sync"] is True
    assert run_json("verify")["in_sync"] is True
    resync = run_json("sync", "--catalog", "crm/customers")["catalogs"]["crm/customers"]
    assert resync["embedded"] == 0


def test_usage_and_configuration_errors_exit_2(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run("verify", "--catalog", "../etc/passwd", expect=2)
    monkeypatch.setenv("DQ_SYNC_CRON", "every night")
    run("sync", expect=2)
    monkeypatch.delenv("DQ_SYNC_CRON")
    run("sync", "--catalog-dir", str(tmp_path / "missing"), expect=2)
    run("sync", "--no-such-option", expect=2)


def test_status_masks_secrets(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    run("sync", "--catalog", "finance/ledger")
    report = run_json("status")
    assert report["catalogs"]["finance/ledger"]["entries"] == 75
    assert report["catalogs"]["finance/ledger"]["pending_journal"] == 0
    assert report["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert report["namespace"] == "dq" and all(c.startswith("dq_") for c in report["collections"])
    assert "namespace:   dq (collections dq_*)" in run("status")
    url = env["DQ_DATABASE_URL"]
    if url.startswith("postgresql"):
        from sqlalchemy.engine import make_url

        secret_url = make_url(url).set(password="s3cr3t-pa55").render_as_string(hide_password=False)
        monkeypatch.setenv("DQ_DATABASE_URL", secret_url)
        result = CliRunner().invoke(cli, ["status", "--json"])
        assert "s3cr3t-pa55" not in result.output


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_first_run_as_a_user_types_it(env: dict[str, str], tmp_path: Path) -> None:
    """The installed executable: sync the samples, then `verify --json` reports equal non-zero counts."""
    exe = Path(sys.executable).with_name("dq-pipeline")
    environment = {**os.environ, **env}
    sync = subprocess.run([str(exe), "sync"], env=environment, capture_output=True, text=True, timeout=600)
    assert sync.returncode == 0, sync.stderr
    assert "crm/customers: inserted 72" in sync.stdout
    assert "Traceback" not in sync.stderr
    verify = subprocess.run([str(exe), "verify", "--json"], env=environment, capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0, verify.stderr
    report = json.loads(verify.stdout)
    assert report["in_sync"] is True
    assert all(c["pg"] == c["qdrant"] > 0 for c in report["catalogs"].values())
    bad = subprocess.run([str(exe), "verify", "--catalog", "/abs"], env=environment, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


def test_an_unsupported_database_is_a_configuration_error(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 2 and one line naming what is supported, not a driver's ImportError (exit 1)."""
    for url, said in (("mysql://u:secret-pw@db/x", "database 'mysql' is not supported"), ("postgresql+pg8000://u:secret-pw@db/x", "driver 'postgresql+pg8000' cannot be loaded")):
        monkeypatch.setenv("DQ_DATABASE_URL", url)
        result = CliRunner().invoke(cli, ["status"], catch_exceptions=False)
        assert result.exit_code == 2, result.output
        assert said in result.stderr and "postgresql://" in result.stderr and "sqlite:///" in result.stderr
        assert "secret-pw" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_syncing_a_catalog_that_does_not_exist_is_refused(env: dict[str, str]) -> None:
    """A typo in --catalog is an error (exit 2) naming it, and nothing runs; a recorded catalog whose
    file is gone is not unknown: naming it removes it."""
    result = CliRunner().invoke(cli, ["sync", "--catalog", "sales/order", "--catalog", "sales/orders"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "no such catalog: sales/order " in result.stderr and "sales/orders," not in result.stderr
    assert run_json("status")["catalogs"] == {}  # nothing ran, not even the good one


def test_a_model_that_can_neither_load_nor_download_is_one_configuration_error(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 2 with one line, before any run: not the hub client's retries at every step attempt."""
    monkeypatch.setenv("DQ_EMBEDDING_MODEL", "not/a-model")
    result = CliRunner().invoke(cli, ["sync"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert result.stderr.lower().startswith("error: embedding model 'not/a-model'") and len(result.stderr.strip().splitlines()) == 1
    assert run_json("status")["catalogs"] == {}
