"""Dagster operations: the catalog folder sensor, the nightly schedule, auto-repair on failure,
the repair / reindex / remove jobs, retries, and the production instance config (deploy/dagster.yaml).

Most tests embed with the deterministic `hashing:32` model through the real EmbedderResource (same
Dagster wiring, no model load); the reindex test uses the bundled sentence-transformers model.
"""

import hashlib
import os
import shutil
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    Definitions,
    RunRequest,
    SkipReason,
    build_run_status_sensor_context,
    build_schedule_context,
    build_sensor_context,
    define_asset_job,
    instance_for_test,
    materialize,
)
from dagster._utils.tags import TagConcurrencyLimitsCounter
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from dq_pipeline.definitions import build_definitions, resources_for
from dq_pipeline.defs.assets import TRANSIENT_RETRY, catalog_embeddings, catalog_entries, catalog_index
from dq_pipeline.defs.partitions import QDRANT_POOL, catalog_partitions
from dq_pipeline.defs.resources import CatalogFolder, EmbedderResource
from dq_pipeline.defs.schedules import DEFAULT_CRON, sync_cron
from dq_pipeline.defs.sensors import MAX_AUTO_REPAIRS
from dq_pipeline.settings import Settings
from dq_pipeline.sync import SyncedStore

from .conftest import FIXTURES, SAMPLE_CATALOGS

pytestmark = [pytest.mark.dagster]

REPO = Path(__file__).resolve().parent.parent
ASSETS = [catalog_entries, catalog_embeddings, catalog_index]
HASHING = "hashing:32"
SAMPLES = {"crm/customers", "data_quality/rules", "finance/ledger", "marketing/events", "sales/orders"}
RUNBOOK = (
    "table,column,kind,type,description\n"
    "incidents,,table,,One row per data incident.\n"
    "incidents,incident_id,column,bigint,Primary key of the incident.\n"
    "incidents,severity,column,varchar(8),Severity from sev1 to sev4.\n"
)


@pytest.fixture
def settings(database_url: str, tmp_path: Path, catalog_dir: Path) -> Settings:
    return Settings.from_env(
        env={}, database_url=database_url, data_dir=str(tmp_path / "data"), catalog_dir=str(catalog_dir), embedding_model=HASHING
    )


@pytest.fixture
def instance():
    with instance_for_test() as inst:
        yield inst


def open_store(settings: Settings) -> SyncedStore:
    return SyncedStore.open(settings.database_url, qdrant_path=settings.qdrant_path)


def stored(settings: Settings, catalog_id: str) -> tuple[int, int, bool]:
    """(PostgreSQL rows, Qdrant points, in sync) of one catalog."""
    with open_store(settings) as store:
        v = store.verify(catalog_id)
    return v.pg, v.qdrant, v.in_sync


def tick(defs, instance: DagsterInstance, cursor: str | None):
    sensor = defs.resolve_sensor_def("catalog_folder_sensor")
    # As a context manager: the context opens its own instance from the ref and must close it.
    with build_sensor_context(instance_ref=instance.get_ref(), cursor=cursor, resources=defs.resources, definitions=defs) as context:
        return sensor.evaluate_tick(context)


def apply_partition_requests(instance: DagsterInstance, data) -> None:
    """What the daemon does with a tick's partition requests before launching its runs."""
    for request in data.dynamic_partitions_requests or []:
        for key in request.partition_keys:
            if type(request).__name__.startswith("Add"):
                instance.add_dynamic_partitions(request.partitions_def_name, [key])
            else:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


def partition_requests(data) -> list[tuple[str, list[str]]]:
    return [
        ("add" if type(r).__name__.startswith("Add") else "delete", sorted(r.partition_keys))
        for r in data.dynamic_partitions_requests or []
    ]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- 1. the catalog folder sensor -------------------------------------------------------------------


def launch(defs, instance: DagsterInstance, request):
    """What the daemon does with a run request (tags included: the sensor folds its outcome in)."""
    return defs.resolve_job_def(request.job_name).execute_in_process(
        run_config=request.run_config or None, partition_key=request.partition_key, tags=request.tags, instance=instance
    )


def test_folder_sensor_follows_files_and_remove_job_clears_both_stores(settings: Settings, instance: DagsterInstance) -> None:
    defs = build_definitions(resources_for(settings))
    folder = settings.catalog_dir

    first = tick(defs, instance, None)  # the samples, seen for the first time
    assert sorted(r.partition_key for r in first.run_requests) == sorted(SAMPLES)
    assert partition_requests(first) == [("add", sorted(SAMPLES))]
    apply_partition_requests(instance, first)
    for request in first.run_requests:
        assert launch(defs, instance, request).success

    again = tick(defs, instance, first.cursor)
    assert not again.run_requests and not again.dynamic_partitions_requests and again.skip_message
    assert len(again.cursor) < 100  # per-file state lives in the system of record

    runbook = folder / "ops" / "runbook.csv"
    runbook.parent.mkdir()
    runbook.write_text(RUNBOOK, encoding="utf-8")
    added = tick(defs, instance, again.cursor)
    assert partition_requests(added) == [("add", ["ops/runbook"])]
    (request,) = added.run_requests
    assert (request.job_name, request.partition_key) == ("sync_catalog", "ops/runbook")
    assert request.run_key.startswith("ops/runbook:")
    assert request.tags["dq/catalog"] == "ops/runbook"
    apply_partition_requests(instance, added)

    repeated = tick(defs, instance, added.cursor)  # not yet run: the same request, which the daemon dedupes by key
    assert [r.run_key for r in repeated.run_requests] == [request.run_key]
    stat = runbook.stat()
    os.utime(runbook, ns=(stat.st_atime_ns + 5_000_000_000, stat.st_mtime_ns + 5_000_000_000))
    assert [r.run_key for r in tick(defs, instance, added.cursor).run_requests] == [request.run_key]  # touched: same

    assert launch(defs, instance, request).success
    assert stored(settings, "ops/runbook") == (3, 3, True)
    assert not tick(defs, instance, added.cursor).run_requests

    runbook.write_text(RUNBOOK + "incidents,owner,column,varchar(64),Who handles it.\n", encoding="utf-8")
    changed = tick(defs, instance, added.cursor)
    (request,) = changed.run_requests
    assert request.partition_key == "ops/runbook" and request.run_key != added.run_requests[0].run_key
    assert not changed.dynamic_partitions_requests  # the partition exists already
    assert launch(defs, instance, request).success

    runbook.unlink()
    removed = tick(defs, instance, changed.cursor)
    (request,) = removed.run_requests
    assert request.job_name == "remove_catalog" and request.partition_key is None
    assert request.run_config == {"ops": {"remove_catalog_data": {"config": {"catalog_id": "ops/runbook"}}}}
    assert not removed.dynamic_partitions_requests  # the partition stays until the record no longer holds it

    removal = launch(defs, instance, request)
    assert removal.success
    (output,) = [e for e in removal.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in output.step_output_data.metadata.items()}
    assert (metadata["deleted"], metadata["retired_points"], metadata["pg"], metadata["qdrant"]) == (4, 4, 0, 0)
    assert stored(settings, "ops/runbook") == (0, 0, True)  # gone from both stores
    forgotten = tick(defs, instance, removed.cursor)
    assert partition_requests(forgotten) == [("delete", ["ops/runbook"])]
    apply_partition_requests(instance, forgotten)

    # Restored with its first content: a new run, although this content was synced before (unique run keys).
    runbook.write_text(RUNBOOK, encoding="utf-8")
    restored = tick(defs, instance, forgotten.cursor)
    (request,) = restored.run_requests
    assert request.partition_key == "ops/runbook"
    assert request.run_key != added.run_requests[0].run_key
    assert partition_requests(restored) == [("add", ["ops/runbook"])]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_dbt_manifest_is_resynced_when_its_catalog_json_changes(settings: Settings, instance: DagsterInstance) -> None:
    """The manifest's entries take column types from the catalog.json beside it: a change there is a change."""
    defs = build_definitions(resources_for(settings))
    project = settings.catalog_dir / "dbt"
    shutil.copytree(FIXTURES / "dbt" / "hubspot", project)
    first = tick(defs, instance, None)
    apply_partition_requests(instance, first)
    for request in first.run_requests:
        assert launch(defs, instance, request).success
    assert not tick(defs, instance, first.cursor).run_requests

    catalog = project / "catalog.json"
    catalog.write_text(catalog.read_text(encoding="utf-8").replace('"type": "', '"type": "X', 1), encoding="utf-8")
    changed = tick(defs, instance, first.cursor)
    assert {r.partition_key for r in changed.run_requests} == {"dbt/manifest", "dbt/catalog"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_folder_sensor_survives_refused_files_and_a_missing_folder(settings: Settings, instance: DagsterInstance, tmp_path: Path) -> None:
    defs = build_definitions(resources_for(settings))
    first = tick(defs, instance, None)
    apply_partition_requests(instance, first)
    for request in first.run_requests:
        assert launch(defs, instance, request).success
    folder = settings.catalog_dir
    (folder / "dup.csv").write_text(RUNBOOK, encoding="utf-8")
    (folder / "dup.json").write_text("[]", encoding="utf-8")  # two files, one catalog id: refused by discovery
    (folder / "bad...name.csv").write_text(RUNBOOK, encoding="utf-8")  # no partition key may contain "..."

    data = tick(defs, instance, first.cursor)
    (request,) = data.run_requests  # the refused catalog still gets its run; the bad name is logged
    assert request.partition_key == "dup"
    apply_partition_requests(instance, data)
    run = defs.resolve_job_def("sync_catalog").execute_in_process(
        partition_key="dup", tags=request.tags, instance=instance, raise_on_error=False
    )
    assert not run.success
    (failure,) = [e for e in run.all_events if e.is_step_failure]
    assert failure.step_key == "catalog_entries"
    assert "used by both dup.csv and dup.json" in failure.step_failure_data.user_failure_data.description
    held = tick(defs, instance, data.cursor)  # refused (terminal): not requested again until the file changes
    assert not held.run_requests and "failed terminally" in held.skip_message

    shutil.move(folder, tmp_path / "moved")  # an unmounted folder is not "every catalog removed"
    gone = tick(defs, instance, held.cursor)
    assert not gone.run_requests and "does not exist" in gone.skip_message
    assert not gone.dynamic_partitions_requests


# --- 2. the schedule --------------------------------------------------------------------------------


def test_schedule_requests_a_batched_run_and_reads_its_cron(monkeypatch: pytest.MonkeyPatch, instance: DagsterInstance) -> None:
    monkeypatch.delenv("DQ_SYNC_CRON", raising=False)
    defs = build_definitions()
    schedule = defs.resolve_schedule_def("sync_all_catalogs_schedule")
    assert schedule.cron_schedule == DEFAULT_CRON == "0 2 * * *"
    monkeypatch.setenv("DQ_SYNC_CRON", "*/15 * * * *")  # read when the definitions load
    assert build_definitions().resolve_schedule_def("sync_all_catalogs_schedule").cron_schedule == "*/15 * * * *"
    with pytest.raises(ValueError, match="DQ_SYNC_CRON='every night' is not a valid cron"):
        sync_cron({"DQ_SYNC_CRON": "every night"})

    def evaluate():
        context = build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2026, 1, 2, 2, 0, tzinfo=UTC),
            repository_def=defs.get_repository_def(),
            resources={"catalog_folder": CatalogFolder(catalog_dir=str(SAMPLE_CATALOGS))},  # the three files exist there
        )
        return schedule.evaluate_tick(context)

    assert evaluate().skip_message  # no partitions yet
    instance.add_dynamic_partitions(catalog_partitions.name, ["crm/customers", "finance/ledger", "sales/orders"])
    data = evaluate()
    # One batched run names the catalogs (tests/test_schedule_batch.py runs it).
    (request,) = data.run_requests
    assert request.run_config["ops"]["sync_catalogs"]["config"]["catalog_ids"] == ["crm/customers", "finance/ledger", "sales/orders"]
    assert request.tags["dq/trigger"] == "schedule" and request.job_name in (None, "sync_catalogs_batch")


# --- 3. auto-repair on failure ------------------------------------------------------------------------


def failure_context(defs, instance: DagsterInstance, result):
    return build_run_status_sensor_context(
        sensor_name="auto_repair_sensor",
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
    ).for_run_failure()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_failed_sync_triggers_bounded_repair_but_refused_input_does_not(settings: Settings, instance: DagsterInstance) -> None:
    defs = build_definitions(resources_for(settings))
    sensor = defs.resolve_sensor_def("auto_repair_sensor")
    sync = defs.resolve_job_def("sync_catalog")
    instance.add_dynamic_partitions(catalog_partitions.name, ["sales/orders"])
    assert sync.execute_in_process(partition_key="sales/orders", instance=instance).success

    with open_store(settings) as store:  # a point vanishes behind the pipeline's back
        collection = store.index.collections()[0]
        store.index.unguarded_delete(collection, list(store.index.points_of_catalog(collection, "sales/orders"))[:1])
    broken = sync.execute_in_process(partition_key="sales/orders", instance=instance, raise_on_error=False)
    assert not broken.success  # the blocking ids_match check failed the run

    request = sensor(failure_context(defs, instance, broken))
    assert isinstance(request, RunRequest)
    assert request.run_key == broken.run_id
    assert request.run_config == {"ops": {"repair_catalogs": {"config": {"catalog_ids": ["sales/orders"]}}}}
    assert request.tags["dq/catalog"] == "sales/orders" and request.tags["dq/trigger"] == "auto-repair"

    # Refused input is never "repaired".
    (settings.catalog_dir / "sales" / "orders.csv").write_text("table,column\norders,id\norders,id\n", encoding="utf-8")
    refused = sync.execute_in_process(partition_key="sales/orders", instance=instance, raise_on_error=False)
    assert not refused.success
    skipped = sensor(failure_context(defs, instance, refused))
    assert isinstance(skipped, SkipReason) and "fix the file" in skipped.skip_message

    repair = defs.resolve_job_def("repair_catalog")
    for _ in range(MAX_AUTO_REPAIRS):  # what the daemon would launch, tags included
        assert repair.execute_in_process(run_config=request.run_config, tags=request.tags, instance=instance).success
    assert stored(settings, "sales/orders")[2]
    # Another catalog's repairs do not count against this one.
    assert repair.execute_in_process(
        run_config={"ops": {"repair_catalogs": {"config": {"catalog_ids": ["crm/customers"]}}}},
        tags={**request.tags, "dq/catalog": "crm/customers"},
        instance=instance,
    ).success

    bounded = sensor(failure_context(defs, instance, broken))
    assert isinstance(bounded, SkipReason)
    assert "auto-repair bound reached for catalog sales/orders" in bounded.skip_message
    assert f"limit {MAX_AUTO_REPAIRS}" in bounded.skip_message


# --- 4. repair ----------------------------------------------------------------------------------------


def test_repair_job_restores_sync_without_the_model(settings: Settings, instance: DagsterInstance) -> None:
    resources = resources_for(settings)
    instance.add_dynamic_partitions(catalog_partitions.name, ["sales/orders", "marketing/events"])
    for key in ("sales/orders", "marketing/events"):
        assert materialize(ASSETS, partition_key=key, instance=instance, resources=resources).success
    with open_store(settings) as store:
        collection = store.index.collections()[0]
        store.index.unguarded_delete(collection, list(store.index.points_of_catalog(collection, "sales/orders"))[:4])
        assert store.verify("sales/orders").missing == 4

    # A model that does not exist: repair must neither need nor load it.
    broken_model = {**resources, "embedder": EmbedderResource(model="no-such-org/no-such-model")}
    result = build_definitions(broken_model).resolve_job_def("repair_catalog").execute_in_process(instance=instance)
    assert result.success
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in output.step_output_data.metadata.items()}
    assert (metadata["catalogs"], metadata["restored"], metadata["orphans_deleted"], metadata["embedded"]) == (2, 4, 0, 0)
    assert metadata["per_catalog"]["sales/orders"]["restored"] == 4
    observed = {o.partition: o.metadata for o in result.asset_observations_for_node("repair_catalogs")}
    assert observed["sales/orders"]["repair_restored"].value == 4
    assert observed["marketing/events"]["repair_restored"].value == 0
    assert stored(settings, "sales/orders")[2] and stored(settings, "marketing/events")[2]

    healed = materialize(ASSETS, partition_key="sales/orders", instance=instance, resources=resources)
    (materialization,) = healed.asset_materializations_for_node("catalog_index")
    assert materialization.metadata["embedded"].value == 0


# --- 5. reindex ---------------------------------------------------------------------------------------


@pytest.mark.model
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_reindex_job_reembeds_every_entry_and_stays_in_sync(database_url: str, tmp_path: Path, catalog_dir: Path, instance: DagsterInstance) -> None:
    settings = Settings.from_env(env={}, database_url=database_url, data_dir=str(tmp_path / "data"), catalog_dir=str(catalog_dir))
    defs = build_definitions(resources_for(settings))  # the bundled sentence-transformers model
    instance.add_dynamic_partitions(catalog_partitions.name, ["marketing/events"])
    first = defs.resolve_job_def("sync_catalog").execute_in_process(partition_key="marketing/events", instance=instance)
    assert first.success
    entries = first.asset_materializations_for_node("catalog_index")[0].metadata["entries"].value

    reindex = defs.resolve_job_def("reindex_catalog")
    assert reindex.partitions_def == catalog_partitions
    result = reindex.execute_in_process(partition_key="marketing/events", instance=instance)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("catalog_index")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["embedded"] == metadata["entries"] == metadata["updated"] == entries > 0
    checks = {e.event_specific_data.check_name: e.event_specific_data.passed for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert checks == {"ids_match": True}  # the global check has a job of its own (verify_all_catalogs)
    assert stored(settings, "marketing/events") == (entries, entries, True)
    assert result.dagster_run.tags["dq/force"] == "true"


# --- retries ------------------------------------------------------------------------------------------


def test_retry_policies_and_pools_on_the_steps() -> None:
    defs = build_definitions()
    for name in ("catalog_embeddings", "catalog_index"):
        assert defs.resolve_assets_def(name).op.retry_policy == TRANSIENT_RETRY
    # Parsing retries transient read errors only (a file changing mid-read); refused input fails at once.
    assert defs.resolve_assets_def("catalog_entries").op.retry_policy == TRANSIENT_RETRY
    for job, op in (("repair_catalog", "repair_catalogs"), ("remove_catalog", "remove_catalog_data")):
        node = defs.resolve_job_def(job).graph.node_named(op).definition
        assert node.retry_policy == TRANSIENT_RETRY and node.pool == QDRANT_POOL
    assert defs.resolve_job_def("remove_catalog").partitions_def is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_transient_store_error_is_retried_and_refused_input_is_not(settings: Settings, instance: DagsterInstance) -> None:
    resources = resources_for(settings)
    instance.add_dynamic_partitions(catalog_partitions.name, ["sales/orders"])
    holder = open_store(settings)  # another "process" holds the embedded Qdrant store ...

    def release_after_first_failure() -> None:  # ... until the write step has failed once on it
        def failed_once() -> bool:
            return any(
                instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY).records
                for run in instance.get_runs()
            )

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not failed_once():
            time.sleep(0.05)
        holder.close()

    releaser = threading.Thread(target=release_after_first_failure)
    releaser.start()
    try:
        result = materialize(ASSETS, partition_key="sales/orders", instance=instance, resources=resources)
    finally:
        releaser.join()
    assert result.success
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retried and {e.step_key for e in retried} == {"catalog_index"}
    assert stored(settings, "sales/orders")[2]

    # A job-wide retry policy still never retries a refused catalog (Failure(allow_retries=False)).
    (settings.catalog_dir / "sales" / "orders.csv").write_text("table,column\norders,id\norders,id\n", encoding="utf-8")
    job = define_asset_job("sync_with_retries", selection=["catalog_entries", "catalog_embeddings", "catalog_index"], op_retry_policy=TRANSIENT_RETRY)
    defs = Definitions(assets=ASSETS, jobs=[job], resources=resources)
    refused = defs.resolve_job_def("sync_with_retries").execute_in_process(partition_key="sales/orders", instance=instance, raise_on_error=False)
    assert not refused.success
    assert not [e for e in refused.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert stored(settings, "sales/orders")[2]  # the previous committed state is intact (I5)


# --- 6. the production instance config ---------------------------------------------------------------


@pytest.mark.postgres
def test_deploy_dagster_yaml_stores_runs_in_postgres(postgres_url: str, tmp_path: Path, catalog_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = make_url(postgres_url)
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    db_name = f"dq_dagster_{uuid.uuid4().hex[:12]}"  # Dagster's tables in their own database
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db_name}"'))
    storage_url = url.set(database=db_name)
    try:
        for name, value in {
            "DAGSTER_PG_HOST": url.host or "localhost",
            "DAGSTER_PG_PORT": str(url.port or 5432),
            "DAGSTER_PG_USER": url.username or "postgres",
            "DAGSTER_PG_PASSWORD": url.password or "unused-with-trust-auth",
            "DAGSTER_PG_DB": db_name,
        }.items():
            monkeypatch.setenv(name, value)
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")

        settings = Settings.from_env(
            env={}, database_url=f"sqlite:///{tmp_path / 'dq.sqlite3'}", data_dir=str(tmp_path / "data"),
            catalog_dir=str(catalog_dir), embedding_model=HASHING,
        )
        with DagsterInstance.from_config(str(home)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            concurrency = instance.get_concurrency_config()
            assert concurrency.pool_config.default_pool_limit > 1  # a Qdrant server takes parallel writers

            instance.add_dynamic_partitions(catalog_partitions.name, ["sales/orders"])
            job = build_definitions(resources_for(settings)).resolve_job_def("sync_catalog")
            result = job.execute_in_process(partition_key="sales/orders", instance=instance)
            assert result.success

            # One run per catalog: the run queue's own counter, fed with the limits as loaded.
            limits = concurrency.run_queue_config.tag_concurrency_limits
            in_progress = TagConcurrencyLimitsCounter(limits, [result.dagster_run])  # a run of sales/orders
            assert in_progress.is_blocked(SimpleNamespace(tags={"dagster/partition": "sales/orders"}))
            assert not in_progress.is_blocked(SimpleNamespace(tags={"dagster/partition": "crm/customers"}))
            repairing = TagConcurrencyLimitsCounter(limits, [SimpleNamespace(tags={"dq/catalog": "sales/orders"})])
            assert repairing.is_blocked(SimpleNamespace(tags={"dq/catalog": "sales/orders"}))  # e.g. its removal waits
            assert not repairing.is_blocked(SimpleNamespace(tags={"dq/catalog": "crm/customers"}))

        storage = create_engine(storage_url)
        try:
            with storage.connect() as conn:
                row = conn.execute(text("SELECT status, pipeline_name FROM runs WHERE run_id = :id"), {"id": result.run_id}).one()
                events = conn.scalar(text("SELECT count(*) FROM event_logs WHERE run_id = :id"), {"id": result.run_id})
        finally:
            storage.dispose()
        assert (row.status, row.pipeline_name) == ("SUCCESS", "sync_catalog")
        assert events > 10
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        admin.dispose()


def test_root_dagster_yaml_allows_one_run_per_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded default queues a catalog's removal behind its sync, as the production config does."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as instance:
        concurrency = instance.get_concurrency_config()
        assert concurrency.pool_config.default_pool_limit == 1  # embedded Qdrant: one process
        limits = concurrency.run_queue_config.tag_concurrency_limits
    syncing = TagConcurrencyLimitsCounter(limits, [SimpleNamespace(tags={"dq/catalog": "sales/orders", "dagster/partition": "sales/orders"})])
    assert syncing.is_blocked(SimpleNamespace(tags={"dq/catalog": "sales/orders"}))  # its removal waits
    assert not syncing.is_blocked(SimpleNamespace(tags={"dq/catalog": "crm/customers"}))
