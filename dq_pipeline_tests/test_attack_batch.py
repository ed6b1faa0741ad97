"""Adversarial review of the batched nightly sync (defs/batch.py, schedules.py, and how the sensors,
alerts and metrics push treat batch runs). Tests that FAIL on the reviewed code show a break; the
passing ones are attacks that held. Real instances, SQLite, embedded Qdrant, hashing embedder; mocks
only to inject faults."""

import json
from pathlib import Path

import pytest
from dagster import DagsterEventType, build_run_status_sensor_context
from sqlalchemy import create_engine

from dq_pipeline.definitions import build_definitions
from dq_pipeline.defs import batch as batch_module
from dq_pipeline.defs.alerts import alert_on_failure_sensor
from dq_pipeline.defs.batch import BATCH_JOB, BATCH_STEP, batch_failures
from dq_pipeline.defs.partitions import catalog_partitions
from dq_pipeline.sync import SimulatedCrash, SyncedStore
from dq_pipeline.sync.write import hooks as hooks_module
from dq_pipeline.sync.write.locks import catalog_lock

from .test_alerts import Receiver
from .test_schedule_batch import IDS_MATCH, INDEX, check_rows, launch, materializations, nightly, synced  # noqa: F401
from .test_sensors_folder import SAMPLES, Harness, instance, settings  # noqa: F401

pytestmark = [pytest.mark.dagster, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def run_batch(h: Harness, ids: list[str], **config):
    job = h.defs.resolve_job_def(BATCH_JOB)
    return job.execute_in_process(
        run_config={"ops": {BATCH_STEP: {"config": {"catalog_ids": ids, **config}}}}, instance=h.instance, raise_on_error=False
    )


def verify_all(h: Harness) -> dict[str, tuple[bool, int, int]]:
    with SyncedStore.open(h.settings.database_url, qdrant_path=h.settings.qdrant_path) as store:
        return {cid: (v.in_sync, v.pg, v.qdrant) for cid in sorted(SAMPLES) for v in [store.verify(cid)]}


def add_row(h: Harness, rel: str = "sales/orders.csv", table: str = "extra") -> None:
    """Change one entry of the catalog file (a new CSV row; a YAML description reworded)."""
    path = h.settings.catalog_dir / rel
    text = path.read_text(encoding="utf-8")
    if rel.endswith(".csv"):
        header = text.splitlines()[0].split(",")
        row = [""] * len(header)
        row[header.index("table")] = table
        row[header.index("column")] = "c1"
        path.write_text(text.rstrip("\n") + "\n" + ",".join(row) + "\n", encoding="utf-8")
    else:
        path.write_text(text.replace("description: ", f"description: {table} ", 1), encoding="utf-8")


def fault_for(monkeypatch: pytest.MonkeyPatch, catalog_id: str, hook) -> None:
    """Install `hook` as the process hook only while `catalog_id` is being synced."""
    original = SyncedStore.sync

    def sync(self, cid, *args, **kwargs):
        previous = hooks_module.install_process_hook(hook if cid == catalog_id else None)
        try:
            return original(self, cid, *args, **kwargs)
        finally:
            hooks_module.install_process_hook(previous)

    monkeypatch.setattr(SyncedStore, "sync", sync)


def failure_context(h: Harness, result, sensor: str, **extra):
    return build_run_status_sensor_context(
        sensor_name=sensor,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=h.instance,
        dagster_run=result.dagster_run,
        **extra,
    ).for_run_failure()


# --- held ----------------------------------------------------------------------------------------


def test_qdrant_failing_mid_write_fails_only_that_catalog(synced: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    h = synced
    before = verify_all(h)
    add_row(h, "sales/orders.csv")
    add_row(h, "crm/customers.yaml")

    def hook(point, n, info):
        if point == "qdrant_batch":
            raise ConnectionError("qdrant went away")

    fault_for(monkeypatch, "crm/customers", hook)
    result = run_batch(h, sorted(SAMPLES))
    assert not result.success
    assert set(materializations(result, "catalog_index")) == SAMPLES - {"crm/customers"}
    checks = check_rows(h.instance, result.run_id)
    assert set(checks) == SAMPLES - {"crm/customers"} and all(s == "SUCCEEDED" for s, _ in checks.values())
    failures = batch_failures([e for e in result.all_events if e.is_step_failure])
    assert list(failures) == ["crm/customers"] and failures["crm/customers"]["transient"]
    after = verify_all(h)
    assert all(ok for ok, _, _ in after.values()), after
    assert after["crm/customers"] == before["crm/customers"]  # I5: the old version whole
    assert after["sales/orders"][1] == before["sales/orders"][1] + 1


def test_a_lock_held_by_another_run_fails_only_that_catalog(synced: Harness) -> None:
    h = synced
    from dq_pipeline.definitions import _resources
    from dq_pipeline.settings import resource_values

    values = resource_values(h.settings)
    values["store"] = {**values["store"], "lock_timeout_s": 0.5}
    h.defs = build_definitions(_resources(values))
    assert h.defs.resources["store"].lock_timeout_s == 0.5
    add_row(h, "sales/orders.csv")
    engine = create_engine(h.settings.database_url)  # another run's lock: the record only
    try:
        with catalog_lock(engine, "sales/orders", timeout_s=1):
            result = run_batch(h, sorted(SAMPLES))
    finally:
        engine.dispose()
    assert not result.success
    assert set(materializations(result, "catalog_index")) == SAMPLES - {"sales/orders"}
    failures = batch_failures([e for e in result.all_events if e.is_step_failure])
    assert list(failures) == ["sales/orders"] and failures["sales/orders"]["error_kind"] == "LockTimeout"
    assert failures["sales/orders"]["transient"]
    assert all(ok for ok, _, _ in verify_all(h).values())
    # The folder sensor requests the sync of the changed file again (the record holds the old digest).
    data = h.tick()
    assert "sales/orders" in {r.tags["dq/catalog"] for r in data.run_requests}


def test_a_file_changed_during_the_batch_is_stale_and_fails_alone(synced: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    h = synced
    add_row(h, "sales/orders.csv")

    def hook(point, n, info):
        if point == "qdrant_written" and n == 1:
            add_row(h, "sales/orders.csv", table="later")

    fault_for(monkeypatch, "sales/orders", hook)
    result = run_batch(h, sorted(SAMPLES))
    assert not result.success
    assert set(materializations(result, "catalog_index")) == SAMPLES - {"sales/orders"}
    assert "sales/orders" not in check_rows(h.instance, result.run_id)
    failures = batch_failures([e for e in result.all_events if e.is_step_failure])
    assert list(failures) == ["sales/orders"] and not failures["sales/orders"]["transient"]
    assert failures["sales/orders"]["error_kind"] == "StaleSource", failures
    assert all(ok for ok, _, _ in verify_all(h).values())
    repairs = h.defs.resolve_sensor_def("auto_repair_sensor")(failure_context(h, result, "auto_repair_sensor"))
    assert not isinstance(repairs, list) or not repairs  # terminal: not repaired


def test_duplicate_ids_sync_once_and_batch_size_boundaries(synced: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    h = synced
    result = run_batch(h, ["sales/orders", "sales/orders", "crm/customers", "sales/orders"])
    assert result.success
    index = [e for e in result.all_events if e.event_type == DagsterEventType.ASSET_MATERIALIZATION and e.asset_key == INDEX]
    assert sorted(e.step_materialization_data.materialization.partition for e in index) == ["crm/customers", "sales/orders"]
    monkeypatch.setenv("DQ_SYNC_BATCH_SIZE", "1")
    requests = nightly(h)
    assert [r.run_config["ops"][BATCH_STEP]["config"]["catalog_ids"] for r in requests] == [[c] for c in sorted(SAMPLES)]
    assert len({r.run_key for r in requests}) == len(SAMPLES)
    monkeypatch.setenv("DQ_SYNC_BATCH_SIZE", "1000000")
    (request,) = nightly(h)
    assert request.run_config["ops"][BATCH_STEP]["config"]["catalog_ids"] == sorted(SAMPLES)
    monkeypatch.setenv("DQ_SYNC_BATCH_SIZE", "0")
    with pytest.raises(Exception) as raised:
        nightly(h)
    chain, exc = [], raised.value
    while exc is not None:
        chain.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    assert any("DQ_SYNC_BATCH_SIZE" in text for text in chain), chain


def test_auto_repair_respects_its_bound_per_catalog_in_a_batch(synced: Harness) -> None:
    from dq_pipeline.defs.sensors import MAX_AUTO_REPAIRS

    h = synced
    with SyncedStore.open(h.settings.database_url, qdrant_path=h.settings.qdrant_path) as store:
        collection = store.index.collections()[0]
        for cid in ("crm/customers", "finance/ledger"):
            store.index.unguarded_delete(collection, list(store.index.points_of_catalog(collection, cid))[:1])
    repair_job = h.defs.resolve_job_def("repair_catalog")
    for _ in range(MAX_AUTO_REPAIRS):
        h.instance.create_run_for_job(
            repair_job,
            run_config={"ops": {"repair_catalogs": {"config": {"catalog_ids": ["crm/customers"]}}}},
            tags={"dq/catalog": "crm/customers", "dq/trigger": "auto-repair"},
        )
    result = run_batch(h, sorted(SAMPLES))
    assert not result.success
    repairs = h.defs.resolve_sensor_def("auto_repair_sensor")(failure_context(h, result, "auto_repair_sensor"))
    assert [r.tags["dq/catalog"] for r in repairs] == ["finance/ledger"]


# --- breaks --------------------------------------------------------------------------------------


def test_a_crash_mid_batch_is_recoverable_and_named(synced: Harness, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """The process 'dies' in the middle of the second catalog's write (SimulatedCrash after its points
    are written, before the commit)."""
    h = synced
    for rel in ("crm/customers.yaml", "data_quality/rules.yaml", "sales/orders.csv"):
        add_row(h, rel)

    def hook(point, n, info):
        if point == "qdrant_written":
            raise SimulatedCrash("killed")

    fault_for(monkeypatch, "data_quality/rules", hook)
    try:
        result = run_batch(h, sorted(SAMPLES), force=True)
    except SimulatedCrash:
        pytest.fail("a crash escaped execute_in_process")
    assert not result.success
    index = set(materializations(result, "catalog_index"))
    assert index == {"crm/customers"}  # the first one committed; the crashed and unprocessed ones are not materialized
    assert set(h.instance.get_materialized_partitions(INDEX)) == SAMPLES  # from the first per-file runs only
    # The crashed catalog left its pending journal row: the platform must hear which catalog, and repair it.
    # What the sensors read of the run (the step failure, and what the run materialized).
    step_failures = [e for e in result.all_events if e.is_step_failure]
    reader = getattr(batch_module, "batch_run_failures", None)  # added by the fix
    failures = reader(h.instance, result.run_id, step_failures) if reader else batch_failures(step_failures)
    repairs = h.defs.resolve_sensor_def("auto_repair_sensor")(failure_context(h, result, "auto_repair_sensor"))
    monkeypatch.setenv("DQ_ALERT_WEBHOOK_URL", receiver.url)
    alert_on_failure_sensor(failure_context(h, result, "alert_on_failure_sensor", resources={"alerts": h.defs.resources["alerts"]}))
    (body,) = receiver.bodies
    # The next run recovers every catalog.
    monkeypatch.undo()
    again = run_batch(h, sorted(SAMPLES))
    assert again.success and all(ok for ok, _, _ in verify_all(h).values())
    problems = []
    if "data_quality/rules" not in failures:
        problems.append(f"the failed run's report does not name the crashed catalog: {failures}")
    if not (isinstance(repairs, list) and "data_quality/rules" in [r.tags["dq/catalog"] for r in repairs]):
        problems.append(f"auto-repair does not repair the crashed catalog (its pending journal row waits for the next night): {repairs}")
    if "data_quality/rules" not in json.dumps(body):
        problems.append(f"the alert does not name the crashed catalog: {body['dq']}")
    assert not problems, problems


@pytest.mark.postgres
def test_no_secret_reaches_what_the_instance_stores_for_a_failed_batch(
    database_url, tmp_path: Path, catalog_dir: Path, instance, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A password in DQ_DATABASE_URL (PostgreSQL) and a token in the webhook URL: a batch with a refused
    catalog and a catalog whose Qdrant write fails with an error quoting the URL."""
    from dq_pipeline.settings import Settings

    from .conftest import reset_postgres
    from .test_sensors_folder import HASHING

    plain = __import__("os").environ.get("DQ_TEST_DATABASE_URL") or pytest.skip("no PostgreSQL")
    reset_postgres(plain)
    secret = "S3cretPw0rd"
    url = plain.replace("postgres@", f"postgres:{secret}@", 1)
    assert secret in url
    monkeypatch.setenv("DQ_DATABASE_URL", url)
    s = Settings.from_env(env={}, database_url=url, data_dir=str(tmp_path / "data"), catalog_dir=str(catalog_dir), embedding_model=HASHING)
    h = Harness(s, instance)
    h.launch_all(h.tick())
    (catalog_dir / "sales" / "orders.csv").write_text("table,column\norders,id\norders,id\n", encoding="utf-8")
    add_row(h, "crm/customers.yaml")

    def hook(point, n, info):
        if point == "qdrant_batch":
            raise ConnectionError(f"cannot reach the record at {url} nor qdrant")

    fault_for(monkeypatch, "crm/customers", hook)
    result = run_batch(h, sorted(SAMPLES))
    assert not result.success
    token = "xoxb-T0KEN-abcdef"
    monkeypatch.setenv("DQ_ALERT_WEBHOOK_URL", receiver.url.rstrip("/") + f"/{token}")
    alert_on_failure_sensor(failure_context(h, result, "alert_on_failure_sensor", resources={"alerts": h.defs.resources["alerts"]}))
    stored = []
    for run in instance.get_runs():
        stored += [json.dumps(run.run_config, default=str), json.dumps(run.tags, default=str)]
        stored += [str(entry) for entry in instance.all_logs(run.run_id)]
    stored += [json.dumps(b) for b in receiver.bodies]
    leaks = [text[:300] for text in stored if secret in text or token in text]
    assert receiver.bodies and not leaks, leaks


def test_a_catalog_removed_by_the_folder_sensor_between_tick_and_run_is_skipped(synced: Harness) -> None:
    """The tick lists finance/ledger; before the run starts its file goes and the folder sensor removes
    the catalog (its partition deleted). The nightly run must skip it, not fail and alert on it."""
    h = synced
    (request,) = nightly(h)
    (h.settings.catalog_dir / "finance" / "ledger.json").unlink()
    h.instance.delete_dynamic_partition(catalog_partitions.name, "finance/ledger")
    assert "finance/ledger" not in h.partitions()
    result = launch(h, request)
    failures = batch_failures([e for e in result.all_events if e.is_step_failure])
    assert result.success, failures
    assert set(materializations(result, "catalog_index")) == SAMPLES - {"finance/ledger"}
