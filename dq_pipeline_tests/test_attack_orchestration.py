"""Adversarial review of the orchestration layer after issue 11 (sensors, schedule, auto-repair, checks).

Each test is a failing reproduction of one defect found: real sensor ticks (`evaluate_tick` on
`instance_for_test`), real runs (`execute_in_process`), SQLite + embedded Qdrant, the hashing
embedder. Mocks only inject faults (a denied path, a file moved away and back during a parse, a
run-status event stored late).
"""

import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterRunStatus, build_schedule_context
from dagster._core.test_utils import create_run_for_test
from qdrant_client import QdrantClient
from sqlalchemy import create_engine, text

from dq_pipeline.catalog import read_catalog
from dq_pipeline.defs import sensors
from dq_pipeline.sync import SyncedStore
from dq_pipeline.sync.stores.schema import entries

from .conftest import FIXTURES
from .test_sensors_folder import (  # noqa: F401  (fixtures)
    SAMPLES,
    Harness,
    _run_check,
    denied,
    harness,
    instance,
    requested,
    settings,
)

pytestmark = [pytest.mark.dagster, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

NEW_ROW = "orders,coupon,column,varchar(16),Coupon code.,,,,false\n"


def _later(monkeypatch, seconds: float) -> None:
    monkeypatch.setattr(sensors, "clock", lambda: time.time() + seconds)


def _held_qdrant_launch(h: Harness, request):
    holder = QdrantClient(path=h.settings.qdrant_path)  # another process holds embedded Qdrant: transient
    try:
        return h.launch(request)
    finally:
        holder.close()


def _counts(h: Harness) -> dict[str, int]:
    with SyncedStore.open(h.settings.database_url, qdrant_path=h.settings.qdrant_path) as store:
        return {cid: store.verify(cid).pg for cid in sorted(SAMPLES)}


def _run_schedule(h: Harness) -> list:
    from dagster import SkipReason

    from dq_pipeline.defs.resources import CatalogFolder

    schedule = h.defs.resolve_schedule_def("sync_all_catalogs_schedule")
    context = build_schedule_context(
        instance=h.instance,
        scheduled_execution_time=datetime(2026, 1, 1, 2, tzinfo=UTC),
        resources={"catalog_folder": CatalogFolder(catalog_dir=str(h.settings.catalog_dir))},
    )
    run_requests = schedule(context)
    if isinstance(run_requests, SkipReason):
        return []
    job = h.defs.resolve_job_def("sync_catalogs_batch")
    for request in run_requests:
        job.execute_in_process(run_config=request.run_config, tags=request.tags, instance=h.instance, raise_on_error=False)
    return run_requests


# --- A. the nightly schedule bypasses the empty-folder and bulk-removal guards ----------------------


def test_schedule_on_an_empty_mount_point_empties_the_index(harness: Harness, tmp_path: Path) -> None:
    folder = harness.settings.catalog_dir
    before = _counts(harness)
    shutil.move(folder, tmp_path / "parked")
    folder.mkdir()  # the volume is not mounted: an existing, empty folder
    data = harness.tick()
    assert "is empty but 5 catalogs are recorded" in data.skip_message  # the sensor holds ...
    assert _run_schedule(harness) == []  # ... and so does the schedule at 02:00: nothing synced, nothing removed
    assert _counts(harness) == before, "the nightly schedule removed every catalog of an unmounted folder"


def test_schedule_executes_the_bulk_removal_the_sensor_held_back(harness: Harness) -> None:
    folder = harness.settings.catalog_dir
    (folder / "crm" / "customers.yaml").unlink()
    (folder / "finance" / "ledger.json").unlink()
    data = harness.tick()
    assert "bulk removal held back: 2 of 5" in data.skip_message
    _run_schedule(harness)
    after = _counts(harness)
    assert after["crm/customers"] > 0 and after["finance/ledger"] > 0, f"held-back removal executed by the schedule: {after}"


# --- B. a terminal failure holds the catalog's version, though the version is not at fault ----------


def test_file_moved_away_and_back_during_its_sync_is_never_synced_again(harness: Harness, monkeypatch, tmp_path: Path) -> None:
    orders = harness.settings.catalog_dir / "sales" / "orders.csv"
    orders.write_text(orders.read_text(encoding="utf-8") + NEW_ROW, encoding="utf-8")
    rows_before = harness.stored("sales/orders")[0]
    (request,) = harness.tick().run_requests

    from dq_pipeline.defs import assets

    def flapping(folder, catalog_id):  # a tool that removes and re-creates the file (rsync, deploy, editor)
        shutil.move(orders, tmp_path / "orders.csv")
        try:
            return read_catalog(folder, catalog_id)  # sees no file: an empty catalog
        finally:
            shutil.move(tmp_path / "orders.csv", orders)  # same bytes back

    monkeypatch.setattr(assets, "read_catalog", flapping)
    result = harness.launch(request)
    assert not result.success  # the commit refuses the stale empty parse: I8 held
    assert sensors.classify_failure(sensors.run_step_failures(harness.instance, result.run_id)) == (False, "StaleSource")
    monkeypatch.setattr(assets, "read_catalog", read_catalog)
    assert harness.stored("sales/orders")[0] == rows_before  # nothing lost, but the new row is not in

    _later(monkeypatch, sensors.RETRY_MAX_S + 1)
    data = harness.tick()
    assert not _run_check(harness).passed  # the check says "behind" ...
    # ... and the sensor never asks again: "failed terminally (fix the file)" -- but the file is fine.
    assert requested(data) == {"sales/orders": "sync_catalog"}, data.skip_message


# --- C. index_matches_source is green while the index is behind -------------------------------------


def test_check_is_green_while_a_changed_file_cannot_be_read(harness: Harness) -> None:
    orders = harness.settings.catalog_dir / "sales" / "orders.csv"
    orders.write_text(orders.read_text(encoding="utf-8") + NEW_ROW, encoding="utf-8")  # new content, new owner, mode 600
    with denied(orders):
        assert "cannot be read now" in harness.tick().skip_message  # the sensor cannot follow it
        check = _run_check(harness)
    assert check.metadata["unreadable_files"].value == 1
    assert not check.passed, "index_matches_source passed although a catalog file could not be compared"


def test_check_is_green_while_dbt_catalog_json_duplicates_its_manifest(harness: Harness) -> None:
    project = harness.settings.catalog_dir / "dbt"
    project.mkdir()
    shutil.copy(FIXTURES / "dbt" / "hubspot" / "catalog.json", project / "catalog.json")
    harness.launch_all(harness.tick())
    alone = harness.stored("dbt/catalog")[0]
    assert alone > 0
    shutil.copy(FIXTURES / "dbt" / "hubspot" / "manifest.json", project / "manifest.json")
    data = harness.tick()
    by_catalog = {r.tags["dq/catalog"]: r for r in data.run_requests}
    assert harness.launch(by_catalog["dbt/manifest"]).success
    assert not _held_qdrant_launch(harness, by_catalog["dbt/catalog"]).success  # transient failure of the re-sync
    assert harness.stored("dbt/catalog")[0] == alone  # duplicates of the manifest's entries are searchable
    assert not _run_check(harness).passed, "index_matches_source passed while dbt/catalog still holds its alone-parse"


# --- D. .dq-formats.yaml `columns` edits are not followed --------------------------------------------


def test_editing_columns_mapping_in_format_overrides_resyncs_nothing(harness: Harness) -> None:
    folder = harness.settings.catalog_dir
    (folder / ".dq-formats.yaml").write_text(
        '"sales/orders.csv":\n  format: csv\n  columns: {description: owner}\n', encoding="utf-8"
    )
    data = harness.tick()
    engine = create_engine(harness.settings.database_url)
    with engine.connect() as conn:
        hashes = {r.content_hash for r in conn.execute(entries.select().where(entries.c.catalog_id == "sales/orders"))}
    engine.dispose()
    assert hashes
    parsed = {e.content_hash for e in read_catalog(folder, "sales/orders").entries}
    assert parsed != hashes  # the override changes what the catalog parses to
    assert requested(data) == {"sales/orders": "sync_catalog"}, data.skip_message


# --- E. the cursor and the per-file state can stop the sensor ----------------------------------------


@pytest.mark.parametrize("runs_seen", ["1e300", "NaN", "Infinity"])
def test_a_cursor_with_an_out_of_range_time_stops_every_tick(harness: Harness, runs_seen: str) -> None:
    harness.cursor = '{"seq":3,"runs_seen":' + runs_seen + '}'  # e.g. set by hand in the UI ("set cursor")
    orders = harness.settings.catalog_dir / "sales" / "orders.csv"
    orders.write_text(orders.read_text(encoding="utf-8") + NEW_ROW, encoding="utf-8")
    data = harness.tick()  # read_cursor promises "unreadable: start over"; the tick raises instead, every tick
    assert requested(data) == {"sales/orders": "sync_catalog"}


def test_a_cursor_in_the_future_means_failed_runs_are_never_retried(harness: Harness, monkeypatch) -> None:
    harness.cursor = json.dumps({"seq": 3, "runs_seen": datetime(2100, 1, 1, tzinfo=UTC).timestamp()})  # the cursor of an older version
    orders = harness.settings.catalog_dir / "sales" / "orders.csv"
    orders.write_text(orders.read_text(encoding="utf-8") + NEW_ROW, encoding="utf-8")
    (request,) = harness.tick().run_requests
    assert not _held_qdrant_launch(harness, request).success
    _later(monkeypatch, sensors.RETRY_MAX_S + 1)
    (again,) = harness.tick().run_requests
    assert again.run_key != request.run_key, "same run key: the daemon skips it, the failed sync is never retried"


def test_run_outcome_stored_after_a_later_one_is_never_folded(harness: Harness, monkeypatch) -> None:
    """The run storage's update_timestamp is the event's own timestamp (taken in the run's process),
    written afterwards: a failure stamped before another run's success but stored after the tick
    that folded that success falls behind `runs_seen` and is never seen."""
    folder = harness.settings.catalog_dir
    orders, ledger = folder / "sales" / "orders.csv", folder / "finance" / "ledger.json"
    orders.write_text(orders.read_text(encoding="utf-8") + NEW_ROW, encoding="utf-8")
    ledger.write_text(ledger.read_text(encoding="utf-8").rstrip() + "\n\n", encoding="utf-8")
    data = harness.tick()
    by_catalog = {r.tags["dq/catalog"]: r for r in data.run_requests}
    ledger_request, orders_request = by_catalog["finance/ledger"], by_catalog["sales/orders"]
    orders_run = create_run_for_test(
        harness.instance, job_name="sync_catalog", status=DagsterRunStatus.STARTED, tags=orders_request.tags
    )
    stamped = time.time()  # the orders run's failure event is created now (its process is slow to store it)
    time.sleep(0.05)
    assert harness.launch(ledger_request).success
    assert "waiting" in harness.tick().skip_message  # folds the ledger success; orders still in flight
    harness.instance.report_run_failed(orders_run, "worker lost")
    (event,) = harness.instance.all_logs(orders_run.run_id, of_type=DagsterEventType.RUN_FAILURE)
    harness.instance.run_storage.handle_run_event(
        orders_run.run_id, event.dagster_event, datetime.fromtimestamp(stamped, UTC)
    )  # the row as that store leaves it: FAILURE, updated at the event's time
    _later(monkeypatch, sensors.RETRY_MAX_S + 1)
    data = harness.tick()
    (again,) = data.run_requests
    assert again.run_key != orders_request.run_key, "same run key: the daemon skips it, orders is never retried"


def test_many_transient_failures_overflow_the_backoff_and_stop_the_sensor(harness: Harness, monkeypatch) -> None:
    orders = harness.settings.catalog_dir / "sales" / "orders.csv"
    orders.write_text(orders.read_text(encoding="utf-8") + NEW_ROW, encoding="utf-8")
    (request,) = harness.tick().run_requests
    # 1024 transient failures already (about 43 days of a catalog failing every hour: its file
    # rewritten during every read, a run that always runs out of memory, ...).
    engine = create_engine(harness.settings.database_url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE dq_sensor_files SET attempts = 1024, next_at = NULL WHERE catalog_id = 'sales/orders'")
        )
    engine.dispose()
    (request,) = harness.tick().run_requests
    assert not _held_qdrant_launch(harness, request).success  # failure number 1025
    harness.tick()  # OverflowError: 60.0 * 2 ** 1024, every tick from now on, for every catalog


# --- F. the parse step's metadata says whether the file itself is there ------------------------------


def test_file_present_metadata_tells_the_file_not_its_folder(harness: Harness) -> None:
    """Issue 11.8: `file_present` tested the file's parent folder; a removed file whose folder stays
    (the usual case) read as present."""
    from dagster import DagsterEventType as Events

    def file_present(result) -> bool:
        (event,) = [
            e for e in result.all_events
            if e.event_type == Events.ASSET_MATERIALIZATION and e.asset_key.path[-1] == "catalog_entries"
        ]
        return event.materialization.metadata["file_present"].value

    orders = harness.settings.catalog_dir / "sales" / "orders.csv"
    orders.write_text(orders.read_text(encoding="utf-8") + NEW_ROW, encoding="utf-8")
    (request,) = harness.tick().run_requests
    synced = harness.launch(request)
    assert synced.success and file_present(synced) is True
    orders.unlink()
    assert orders.parent.is_dir()  # the folder stays: only the file went
    removed = harness.launch(request)  # the same partition synced again, its file now gone: an empty catalog
    assert removed.success and file_present(removed) is False
    assert harness.stored("sales/orders") == (0, 0)


def test_a_catalog_recorded_with_no_entries_is_removed_with_its_file(harness: Harness) -> None:
    """A dbt catalog.json beside its manifest is recorded with 0 entries; `dq-pipeline sync` must
    still see it as recorded, or its record outlives its file (the sensor would then ask to remove
    it on every tick)."""
    from dq_pipeline import runner

    project = harness.settings.catalog_dir / "dbt"
    project.mkdir()
    shutil.copy(FIXTURES / "dbt" / "hubspot" / "manifest.json", project / "manifest.json")
    shutil.copy(FIXTURES / "dbt" / "hubspot" / "catalog.json", project / "catalog.json")
    harness.launch_all(harness.tick())
    assert harness.stored("dbt/catalog") == (0, 0) and harness.stored("dbt/manifest")[0] > 0
    (project / "catalog.json").unlink()
    assert "dbt/catalog" in runner.catalogs_to_sync(harness.settings)


def test_a_catalog_the_record_lost_is_requested_again(harness: Harness) -> None:
    """The sensor compares with the record, not with its own memory: a catalog whose record row is
    gone (a backup restored, rows deleted by hand) is behind its file although its last run succeeded."""
    engine = create_engine(harness.settings.database_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM dq_catalogs WHERE catalog_id = 'sales/orders'"))
    engine.dispose()
    data = harness.tick()
    assert requested(data) == {"sales/orders": "sync_catalog"}, data.skip_message
    harness.launch_all(data)
    assert not harness.tick().run_requests
    assert _run_check(harness).passed
