"""Freshness (DQ_FRESHNESS_HOURS): with real syncs into a SQLite record, the check `catalogs_fresh`
run by its own job fails naming a catalog whose last sync is older than the window and its age,
and passes once a sync of the unchanged file has run; without the setting there is no check."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import AssetCheckSeverity, DagsterInstance, instance_for_test
from sqlalchemy import update

from dq_pipeline.definitions import build_definitions, resources_for
from dq_pipeline.defs.freshness import freshness_hours
from dq_pipeline.defs.partitions import catalog_partitions
from dq_pipeline.settings import ConfigError, Settings
from dq_pipeline.sync import open_record
from dq_pipeline.sync.services.refusals import reads
from dq_pipeline.sync.stores.schema import catalogs

pytestmark = [pytest.mark.dagster]
HASHING = "hashing:32"


@pytest.fixture
def settings(tmp_path: Path, catalog_dir: Path) -> Settings:
    return Settings.from_env(
        env={}, database_url=f"sqlite:///{tmp_path / 'dq.sqlite3'}", data_dir=str(tmp_path / "data"),
        catalog_dir=str(catalog_dir), embedding_model=HASHING,
    )


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as inst:
        inst.add_dynamic_partitions(catalog_partitions.name, ["sales/orders", "crm/customers"])
        yield inst


def _evaluations(result) -> list:
    return [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]


def _age(settings: Settings, catalog_id: str, days: float) -> None:
    """Make the catalog's last sync `days` old in the record (both the change and the read)."""
    then = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    engine = open_record(settings.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(update(catalogs).where(catalogs.c.catalog_id == catalog_id).values(last_synced_at=then))
            conn.execute(update(reads).where(reads.c.catalog_id == catalog_id).values(synced_at=then))
    finally:
        engine.dispose()


def test_a_catalog_not_synced_within_the_window_fails_the_check_until_it_syncs(settings: Settings, instance: DagsterInstance) -> None:
    defs = build_definitions(resources_for(settings), freshness=26)
    sync = defs.resolve_job_def("sync_catalog")
    for catalog_id in ("sales/orders", "crm/customers"):
        synced = sync.execute_in_process(partition_key=catalog_id, instance=instance)
        assert [e.asset_check_key.name for e in _evaluations(synced)] == ["ids_match"]  # not run once per catalog
    check = defs.resolve_job_def("check_freshness")

    (fresh,) = _evaluations(check.execute_in_process(instance=instance))
    assert fresh.passed and fresh.asset_check_key.name == "catalogs_fresh"
    assert fresh.metadata["catalogs"].value == 2 and fresh.metadata["stale"].value == 0

    _age(settings, "crm/customers", days=3)
    (stale,) = _evaluations(check.execute_in_process(instance=instance))
    assert not stale.passed and stale.severity == AssetCheckSeverity.ERROR
    assert stale.description == "1 catalogs not synced within 26 h: crm/customers (3.0 d ago)"
    assert stale.metadata["stale"].value == 1 and stale.metadata["stale_sample"].value == {"crm/customers": 72.0}
    assert stale.metadata["oldest_sync_hours"].value == pytest.approx(72.0, abs=0.01)

    # The file is unchanged: the sync writes no entry (I4), and still counts as a sync.
    resynced = sync.execute_in_process(partition_key="crm/customers", instance=instance)
    assert resynced.asset_materializations_for_node("catalog_index")[0].metadata["inserted"].value == 0
    (again,) = _evaluations(check.execute_in_process(instance=instance))
    assert again.passed, again.description


def test_without_the_setting_there_is_no_freshness_check(settings: Settings) -> None:
    defs = build_definitions(resources_for(settings), freshness=None)
    assert "check_freshness" not in {job.name for job in defs.resolve_all_job_defs()}
    assert {s.name for s in defs.schedules} == {"sync_all_catalogs_schedule"}
    assert "catalogs_fresh" not in {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    with_it = build_definitions(resources_for(settings), freshness=26)
    assert {s.name for s in with_it.schedules} == {"sync_all_catalogs_schedule", "check_freshness_schedule"}
    assert with_it.resolve_schedule_def("check_freshness_schedule").job_name == "check_freshness"


@pytest.mark.parametrize("value", ["0", "-2", "nan", "inf", "a day"])
def test_a_bad_window_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigError, match="DQ_FRESHNESS_HOURS"):
        freshness_hours({"DQ_FRESHNESS_HOURS": value})


def test_the_window_is_read_in_hours() -> None:
    assert freshness_hours({}) is None and freshness_hours({"DQ_FRESHNESS_HOURS": " "}) is None
    assert freshness_hours({"DQ_FRESHNESS_HOURS": "26"}) == 26.0 and freshness_hours({"DQ_FRESHNESS_HOURS": "0.5"}) == 0.5
