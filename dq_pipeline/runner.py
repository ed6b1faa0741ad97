"""Running the sync job from the command line: one in-process Dagster run per catalog partition.

With DAGSTER_HOME set, runs are recorded in that instance (visible in the UI); otherwise in an
ephemeral one. Catalogs that the system of record knows but whose file is gone are synced as
empty catalogs, which deletes their rows and points.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from dagster import DagsterInstance, ExecuteInProcessResult

from .catalog import discover
from .settings import Settings
from .sync import open_record
from .sync.schema import entries

SyncRow = dict[str, Any]
COUNTS = ("inserted", "updated", "deleted", "unchanged", "embedded")


def catalogs_to_sync(settings: Settings) -> list[str]:
    from sqlalchemy import select

    on_disk = set(discover(settings.catalog_dir))
    engine = open_record(settings.database_url)
    try:
        with engine.connect() as conn:
            recorded = set(conn.scalars(select(entries.c.catalog_id).distinct()))
    finally:
        engine.dispose()
    return sorted(on_disk | recorded)


def run_sync(
    settings: Settings,
    catalog_ids: list[str],
    *,
    force: bool = False,
    progress: Callable[[str, SyncRow], None] | None = None,
    instance: DagsterInstance | None = None,
) -> dict[str, SyncRow]:
    from .definitions import defs
    from .defs.jobs import SYNC_JOB
    from .defs.partitions import catalog_partitions

    ids = catalog_ids or catalogs_to_sync(settings)
    job = defs.resolve_job_def(SYNC_JOB)
    step_config = {"config": {"force": force}}
    run_config = {
        "ops": {"catalog_embeddings": step_config, "catalog_index": step_config},
        "loggers": {"console": {"config": {"log_level": "ERROR"}}},
    }
    results: dict[str, SyncRow] = {}
    with _instance(instance) as inst:
        known = set(inst.get_dynamic_partitions(catalog_partitions.name))
        inst.add_dynamic_partitions(catalog_partitions.name, [cid for cid in ids if cid not in known])
        for catalog_id in ids:
            run = job.execute_in_process(partition_key=catalog_id, instance=inst, run_config=run_config, raise_on_error=False)
            results[catalog_id] = _row(run)
            if progress is not None:
                progress(catalog_id, results[catalog_id])
    return results


class _instance:
    def __init__(self, given: DagsterInstance | None):
        self.given, self.owned = given, None

    def __enter__(self) -> DagsterInstance:
        if self.given is not None:
            return self.given
        self.owned = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
        return self.owned

    def __exit__(self, *exc: object) -> None:
        if self.owned is not None:
            self.owned.dispose()


def _row(run: ExecuteInProcessResult) -> SyncRow:
    row: SyncRow = {"status": "ok" if run.success else "failed", "error": None, **dict.fromkeys(COUNTS, 0)}
    for materialization in run.asset_materializations_for_node("catalog_index"):
        for name in COUNTS:
            row[name] = int(materialization.metadata[name].value)  # type: ignore[arg-type]
    if not run.success:
        row["error"] = _first_error(run)
    return row


def _first_error(run: ExecuteInProcessResult) -> str:
    for event in run.all_events:
        if event.is_step_failure and event.step_failure_data is not None:
            error = event.step_failure_data.user_failure_data
            if error is not None and error.description:
                return error.description
            if event.step_failure_data.error is not None:
                return event.step_failure_data.error.message.strip().splitlines()[0]
        if event.event_type_value == "ASSET_CHECK_EVALUATION" and not event.event_specific_data.passed:
            return f"check failed: {event.event_specific_data.description or 'stores disagree'}"
    return "run failed"
