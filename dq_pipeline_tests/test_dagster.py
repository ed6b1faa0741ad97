"""The Dagster code location: definitions load, partitioned assets materialize with the real model,
the blocking ID-set check fails when a point vanishes behind the pipeline's back, repair makes it
pass again without embedding, and the global check sees every catalog."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance, build_asset_check_context, instance_for_test, materialize

from dq_pipeline.definitions import build_definitions, defs, resources_for
from dq_pipeline.defs.assets import catalog_embeddings, catalog_entries, catalog_index
from dq_pipeline.defs.checks import all_catalogs_in_sync
from dq_pipeline.defs.partitions import QDRANT_POOL, catalog_partitions
from dq_pipeline.settings import Settings
from dq_pipeline.sync import SyncedStore

pytestmark = [pytest.mark.dagster, pytest.mark.model]
ASSETS = [catalog_entries, catalog_embeddings, catalog_index]


def test_definitions_load_with_jobs_checks_and_pools() -> None:
    job = defs.resolve_job_def("sync_catalog")
    assert job.partitions_def == catalog_partitions
    index_spec = defs.resolve_assets_def("catalog_index")
    assert index_spec.op.pool == QDRANT_POOL
    assert {c.name for c in index_spec.check_specs} == {"ids_match"}
    assert all(c.blocking for c in index_spec.check_specs)
    assert all_catalogs_in_sync.op.pool == QDRANT_POOL


@pytest.fixture
def settings(database_url: str, tmp_path: Path, catalog_dir: Path) -> Settings:
    return Settings.from_env(
        env={},
        database_url=database_url,
        data_dir=str(tmp_path / "data"),
        catalog_dir=str(catalog_dir),
    )


@pytest.fixture
def instance() -> DagsterInstance:
    with instance_for_test() as inst:
        inst.add_dynamic_partitions(catalog_partitions.name, ["crm/customers", "sales/orders"])
        yield inst


def metadata_of(result, key: str) -> dict:
    (materialization,) = result.asset_materializations_for_node("catalog_index")
    return {k: v.value for k, v in materialization.metadata.items()}


def check_of(result):
    (evaluation,) = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    return evaluation


def test_materialize_check_fails_on_a_missing_point_and_repair_restores(settings: Settings, instance: DagsterInstance) -> None:
    resources = resources_for(settings)
    first = materialize(ASSETS, partition_key="crm/customers", instance=instance, resources=resources)
    assert first.success
    meta = metadata_of(first, "crm/customers")
    assert (meta["inserted"], meta["embedded"], meta["entries"]) == (72, 72, 72)
    assert meta["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert check_of(first).passed

    unchanged = materialize(ASSETS, partition_key="crm/customers", instance=instance, resources=resources)
    assert (metadata_of(unchanged, "")["embedded"], metadata_of(unchanged, "")["unchanged"]) == (0, 72)

    with SyncedStore.open(settings.database_url, qdrant_path=settings.qdrant_path) as store:
        collection = store.index.collections()[0]
        victim = next(iter(store.index.points_of_catalog(collection, "crm/customers")))
        store.index.unguarded_delete(collection, [victim])

    broken = materialize(ASSETS, partition_key="crm/customers", instance=instance, resources=resources, raise_on_error=False)
    assert not broken.success  # the blocking check fails the run
    evaluation = check_of(broken)
    assert not evaluation.passed
    assert evaluation.metadata["missing"].value == 1 and evaluation.metadata["qdrant"].value == 71

    with SyncedStore.open(settings.database_url, qdrant_path=settings.qdrant_path) as store:
        assert store.repair("crm/customers").restored == 1

    healed = materialize(ASSETS, partition_key="crm/customers", instance=instance, resources=resources)
    assert healed.success and check_of(healed).passed
    assert metadata_of(healed, "")["embedded"] == 0  # repair never re-embeds


def test_refused_catalog_fails_its_run_with_file_record_and_reason(settings: Settings, instance: DagsterInstance) -> None:
    (settings.catalog_dir / "sales" / "orders.csv").write_text("table,column\norders,id\norders,id\n", encoding="utf-8")
    result = materialize(ASSETS, partition_key="sales/orders", instance=instance, resources=resources_for(settings), raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    description = failure.step_failure_data.user_failure_data.description
    assert "sales/orders.csv" in description and "line 3" in description and "duplicate entry key 'orders.id'" in description
    with SyncedStore.open(settings.database_url, qdrant_path=settings.qdrant_path) as store:
        assert store.known_catalogs() == []  # nothing written (I6)


def test_global_check_reports_every_catalog(settings: Settings, instance: DagsterInstance) -> None:
    resources = resources_for(settings)
    for key in ("crm/customers", "sales/orders"):
        assert materialize(ASSETS, partition_key=key, instance=instance, resources=resources).success
    result = all_catalogs_in_sync(build_asset_check_context(resources={"store": resources["store"], "alerts": resources["alerts"]}))
    assert result.passed
    verify_job = build_definitions(resources).resolve_job_def("verify_all_catalogs")
    assert verify_job.execute_in_process(instance=instance).success  # runs alone, unpartitioned
    assert (result.metadata["catalogs"].value, result.metadata["pg_rows"].value) == (2, 132)

    with SyncedStore.open(settings.database_url, qdrant_path=settings.qdrant_path) as store:
        collection = store.index.collections()[0]
        store.index.unguarded_delete(collection, list(store.index.points_of_catalog(collection, "sales/orders"))[:3])
    failed = all_catalogs_in_sync(build_asset_check_context(resources={"store": resources["store"], "alerts": resources["alerts"]}))
    assert not failed.passed
    assert failed.metadata["missing"].value == 3
    assert set(failed.metadata["out_of_sync"].value) == {"sales/orders"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_dagster_cli_materializes_a_partition(settings: Settings, tmp_path: Path) -> None:
    """`dagster asset materialize` on the code location, in an instance where the CLI added the partitions."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DQ_DATABASE_URL": settings.database_url,
        "DQ_DATA_DIR": str(settings.data_dir),
        "DQ_CATALOG_DIR": str(settings.catalog_dir),
    }
    bin_dir = Path(sys.executable).parent
    sync = subprocess.run([str(bin_dir / "dq-pipeline"), "sync", "--catalog", "sales/orders"], env=env, capture_output=True, text=True, timeout=600)
    assert sync.returncode == 0, sync.stderr
    materialized = subprocess.run(
        [str(bin_dir / "dagster"), "asset", "materialize", "-m", "dq_pipeline.definitions",
         "--select", "catalog_entries,catalog_embeddings,catalog_index", "--partition", "sales/orders"],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert materialized.returncode == 0, materialized.stderr[-3000:]
    assert "RUN_SUCCESS" in materialized.stderr
    with DagsterInstance.from_config(str(home)) as inst:
        runs = inst.get_runs()
        assert len(runs) == 2 and all(r.is_success for r in runs)  # the CLI's run and dagster's


def test_code_location_validates() -> None:
    repo = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=repo, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert build_definitions().resolve_job_def("sync_catalog") is not None
