"""The nightly schedule in batches (issue 13): one tick, one `sync_catalogs_batch` run, and still one
partition per catalog (its materializations, metadata and ids_match check); a refused or broken
catalog fails only itself, and the run's failure, the auto-repair sensor and the alert name it; the
folder sensor keeps its per-file runs.

Real instances (`instance_for_test`), real ticks (`build_schedule_context`, `evaluate_tick`), real
runs (`execute_in_process`), SQLite and embedded Qdrant, the deterministic hashing embedder.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    RunRequest,
    SkipReason,
    build_run_status_sensor_context,
    build_schedule_context,
)

from dq_pipeline.defs.alerts import alert_on_failure_sensor
from dq_pipeline.defs.batch import BATCH_JOB, BATCH_STEP, batch_failures
from dq_pipeline.defs.jobs import CATALOG_TAG, SYNC_JOB
from dq_pipeline.defs.metrics_push import embedded_by
from dq_pipeline.defs.resources import CatalogFolder
from dq_pipeline.defs.schedules import batch_size
from dq_pipeline.settings import Settings
from dq_pipeline.sync import SyncedStore

from .test_alerts import Receiver
from .test_sensors_folder import SAMPLES, Harness, instance, settings  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.dagster, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

INDEX = AssetKey("catalog_index")
IDS_MATCH = AssetCheckKey(INDEX, "ids_match")


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def synced(settings: Settings, instance: DagsterInstance) -> Harness:  # noqa: F811
    """The sample folder after the folder sensor's first tick and its per-file runs."""
    h = Harness(settings, instance)
    data = h.tick()
    # The sensor still requests one sync_catalog run per file, each tagged with its catalog.
    assert sorted((r.job_name, r.partition_key, r.tags[CATALOG_TAG]) for r in data.run_requests) == [
        (SYNC_JOB, cid, cid) for cid in sorted(SAMPLES)
    ]
    h.launch_all(data)
    return h


def nightly(h: Harness, folder: Path | None = None) -> list[RunRequest] | SkipReason:
    schedule = h.defs.resolve_schedule_def("sync_all_catalogs_schedule")
    context = build_schedule_context(
        instance=h.instance,
        scheduled_execution_time=datetime(2026, 1, 2, 2, tzinfo=UTC),
        resources={"catalog_folder": CatalogFolder(catalog_dir=str(folder or h.settings.catalog_dir))},
    )
    data = schedule.evaluate_tick(context)
    return SkipReason(data.skip_message) if data.skip_message else list(data.run_requests)


def launch(h: Harness, request: RunRequest):
    job = h.defs.resolve_job_def(request.job_name or BATCH_JOB)
    return job.execute_in_process(run_config=request.run_config, tags=request.tags, instance=h.instance, raise_on_error=False)


def materializations(result, asset: str) -> dict[str, dict]:
    found = {}
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION and event.asset_key == AssetKey(asset):
            m = event.step_materialization_data.materialization
            found[m.partition] = {k: v.value for k, v in m.metadata.items()}
    return found


def check_rows(dagster: DagsterInstance, run_id: str) -> dict[str, tuple[str, int | None]]:
    """The instance's ids_match executions of the run, by partition: (status, target materialization)."""
    rows = dagster.event_log_storage.get_asset_check_execution_history(IDS_MATCH, limit=1000)
    found = {}
    for r in rows:
        if r.run_id == run_id:
            target = r.event.dagster_event.asset_check_evaluation_data.target_materialization_data
            found[r.partition] = (r.status.value, target.storage_id if target else None)
    return found


def test_the_nightly_tick_is_one_run_and_every_catalog_keeps_its_partition(synced: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    h = synced
    (request,) = nightly(h)  # five catalogs: one run
    assert request.job_name in (None, BATCH_JOB) and request.partition_key is None
    assert request.run_config["ops"][BATCH_STEP]["config"]["catalog_ids"] == sorted(SAMPLES)
    assert request.tags["dq/trigger"] == "schedule" and CATALOG_TAG not in request.tags
    result = launch(h, request)
    assert result.success
    assert [s.step_key for s in result.get_step_success_events()] == [BATCH_STEP]  # one step, one process

    index = materializations(result, "catalog_index")
    assert set(index) == SAMPLES
    for cid, meta in index.items():
        assert meta["embedded"] == 0 and meta["inserted"] == 0 and meta["unchanged"] == meta["entries"] > 0, (cid, meta)
        assert meta["source_digest"] and meta["model"]
    assert set(materializations(result, "catalog_entries")) == set(materializations(result, "catalog_embeddings")) == SAMPLES
    assert set(h.instance.get_materialized_partitions(INDEX)) == SAMPLES

    checks = check_rows(h.instance, result.run_id)
    assert set(checks) == SAMPLES  # one execution per catalog, none replacing another
    assert all(status == "SUCCEEDED" and target is not None for status, target in checks.values())
    assert embedded_by(h.instance, result.run_id, "") == 0  # what the metrics push reports for the run: every catalog's sum

    # Bigger folders are split into runs of DQ_SYNC_BATCH_SIZE catalogs, each with its own run key.
    monkeypatch.setenv("DQ_SYNC_BATCH_SIZE", "2")
    requests = nightly(h)
    assert [len(r.run_config["ops"][BATCH_STEP]["config"]["catalog_ids"]) for r in requests] == [2, 2, 1]
    assert len({r.run_key for r in requests}) == 3
    with pytest.raises(ValueError, match="DQ_SYNC_BATCH_SIZE='0'"):
        batch_size({"DQ_SYNC_BATCH_SIZE": "0"})


def test_a_refused_and_a_broken_catalog_fail_only_themselves(
    synced: Harness, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = synced
    (h.settings.catalog_dir / "sales" / "orders.csv").write_text("table,column\norders,id\norders,id\n", encoding="utf-8")
    with SyncedStore.open(h.settings.database_url, qdrant_path=h.settings.qdrant_path) as store:  # a point vanishes
        collection = store.index.collections()[0]
        store.index.unguarded_delete(collection, list(store.index.points_of_catalog(collection, "crm/customers"))[:1])

    (request,) = nightly(h)
    result = launch(h, request)
    assert not result.success
    index = materializations(result, "catalog_index")
    assert set(index) == SAMPLES - {"sales/orders"}  # the refused one is not materialized; the others are
    checks = check_rows(h.instance, result.run_id)
    assert checks["crm/customers"][0] == "FAILED" and all(checks[c][0] == "SUCCEEDED" for c in SAMPLES - {"sales/orders", "crm/customers"})

    (failure,) = [e for e in result.all_events if e.is_step_failure]
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith("2 of 5 catalogs failed") and "sales/orders" in description and "crm/customers" in description
    per_catalog = batch_failures([failure])
    assert set(per_catalog) == {"sales/orders", "crm/customers"}
    assert per_catalog["sales/orders"]["refused"] and "duplicate entry key 'orders.id'" in per_catalog["sales/orders"]["error"]
    assert per_catalog["crm/customers"]["transient"] and not per_catalog["crm/customers"]["refused"]
    observed = [
        e.asset_observation_data.asset_observation
        for e in result.all_events
        if e.event_type == DagsterEventType.ASSET_OBSERVATION
    ]
    assert {o.partition for o in observed} == {"sales/orders", "crm/customers"}  # shown on the failed partitions

    # Auto-repair: the transient one only, under its own run key; the refused one waits for its file.
    context = build_run_status_sensor_context(
        sensor_name="auto_repair_sensor",
        dagster_event=result.get_run_failure_event(),
        dagster_instance=h.instance,
        dagster_run=result.dagster_run,
    ).for_run_failure()
    repairs = h.defs.resolve_sensor_def("auto_repair_sensor")(context)
    assert [(r.run_key, r.tags[CATALOG_TAG]) for r in repairs] == [(f"{result.run_id}:crm/customers", "crm/customers")]
    repaired = h.defs.resolve_job_def("repair_catalog").execute_in_process(
        run_config=repairs[0].run_config, tags=repairs[0].tags, instance=h.instance
    )
    assert repaired.success

    # The alert names both catalogs, each one's error, and what auto-repair does about each.
    monkeypatch.setenv("DQ_ALERT_WEBHOOK_URL", receiver.url)
    alert_context = build_run_status_sensor_context(
        sensor_name="alert_on_failure_sensor",
        dagster_event=result.get_run_failure_event(),
        dagster_instance=h.instance,
        dagster_run=result.dagster_run,
        resources={"alerts": h.defs.resources["alerts"]},
    ).for_run_failure()
    assert alert_on_failure_sensor(alert_context) is None
    (body,) = receiver.bodies
    assert body["dq"]["catalog"] == "crm/customers, sales/orders" and body["dq"]["job"] == BATCH_JOB
    assert "sales/orders: " in body["dq"]["error"] and "duplicate entry key" in body["dq"]["error"]
    assert "auto-repair requested for crm/customers" in body["dq"]["next_step"]
    assert "not repaired automatically (fix the file or the configuration): sales/orders" in body["dq"]["next_step"]
    assert "secret" not in json.dumps(body).lower()


def test_a_file_removed_before_its_turn_is_skipped_never_removed(synced: Harness) -> None:
    h = synced
    (request,) = nightly(h)
    (h.settings.catalog_dir / "finance" / "ledger.json").unlink()  # after the tick listed it
    result = launch(h, request)
    assert result.success
    assert set(materializations(result, "catalog_index")) == SAMPLES - {"finance/ledger"}
    with SyncedStore.open(h.settings.database_url, qdrant_path=h.settings.qdrant_path) as store:
        assert store.verify("finance/ledger").pg > 0  # the folder sensor decides removals, with its guards

    # A catalog named by hand that is no partition fails alone, terminally (nothing to repair).
    manual = h.defs.resolve_job_def(BATCH_JOB).execute_in_process(
        run_config={"ops": {BATCH_STEP: {"config": {"catalog_ids": ["sales/orders", "ghost/catalog"]}}}},
        instance=h.instance,
        raise_on_error=False,
    )
    assert not manual.success and set(materializations(manual, "catalog_index")) == {"sales/orders"}
    failures = batch_failures([e for e in manual.all_events if e.is_step_failure])
    assert list(failures) == ["ghost/catalog"] and failures["ghost/catalog"]["error_kind"] == "ConfigurationError"
    assert not failures["ghost/catalog"]["transient"]
