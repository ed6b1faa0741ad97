"""The periodic full sync: every catalog partition whose file is there, in one batched run.

The sensor reacts to file changes; this schedule is the safety net (a change the sensor missed
while it was off, a catalog whose file went away before the sensor first saw it). Syncing an
unchanged catalog embeds and writes nothing (I4), so a nightly run of every catalog is cheap, as
long as each catalog does not cost a run of three step processes (9-22 s each): the schedule
requests `sync_catalogs_batch` runs of up to DQ_SYNC_BATCH_SIZE catalogs each (one step that
syncs them in turn and reports each catalog's partition, defs/batch.py). With a Qdrant server
and a `dq_qdrant` pool above 1, a smaller batch size spreads the catalogs over parallel runs.
"""

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, SkipReason, schedule

from ..catalog import discover
from ..settings import DEFAULT_CRON, DEFAULT_SYNC_BATCH_SIZE, setting_value
from .batch import BATCH_STEP, sync_catalogs_batch_job
from .jobs import TRIGGER_TAG
from .partitions import catalog_partitions
from .resources import CatalogFolder

CRON_ENV = "DQ_SYNC_CRON"
BATCH_SIZE_ENV = "DQ_SYNC_BATCH_SIZE"
DEFAULT_BATCH_SIZE = DEFAULT_SYNC_BATCH_SIZE
COUNT_TAG = "dq/catalog_count"
__all__ = ["BATCH_SIZE_ENV", "CRON_ENV", "DEFAULT_BATCH_SIZE", "DEFAULT_CRON", "batch_size", "build_sync_schedule", "sync_cron"]


def sync_cron(env: dict[str, str] | None = None) -> str:
    """The schedule's cron string from DQ_SYNC_CRON (read when the definitions load; parsed and
    checked by its declaration in dq_pipeline.settings); a bad value is a clear error."""
    return setting_value(CRON_ENV, env)


def batch_size(env: dict[str, str] | None = None) -> int:
    """Catalogs per run (DQ_SYNC_BATCH_SIZE, read at each tick; parsed by its declaration in
    dq_pipeline.settings); a bad value is a clear error."""
    return setting_value(BATCH_SIZE_ENV, env)


def build_sync_schedule(cron: str | None = None):
    cron = cron or sync_cron()

    @schedule(
        name="sync_all_catalogs_schedule",
        job=sync_catalogs_batch_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Sync every known catalog whose file is there on `{cron}` UTC (env {CRON_ENV}): one "
        f"sync_catalogs_batch run per {BATCH_SIZE_ENV} catalogs (default {DEFAULT_BATCH_SIZE}), each catalog reported "
        "as its own partition. Unchanged catalogs embed and write nothing.",
    )
    def sync_all_catalogs_schedule(context: ScheduleEvaluationContext, catalog_folder: CatalogFolder):
        keys = context.instance.get_dynamic_partitions(catalog_partitions.name)
        if not keys:
            return SkipReason("no catalog partitions yet (the catalog sensor or `dq-pipeline sync` adds them)")
        # Only catalogs whose file is there: a sync of a missing file removes the catalog, and
        # removals belong to the folder sensor, which requires evidence and holds bulk removals back.
        folder = catalog_folder.path()
        try:
            present = set(discover(folder))
        except FileNotFoundError:
            return SkipReason(f"catalog folder {folder} does not exist: nothing synced")
        if not present:
            return SkipReason(f"catalog folder {folder} holds no catalog file (unmounted?): nothing synced, nothing removed")
        keys = sorted(key for key in keys if key in present)
        if not keys:
            return SkipReason(f"no catalog partition has its file in {folder}: nothing synced, nothing removed")
        size = batch_size()
        tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "manual"
        # The catalogs are named in the run config (what the tick decided stays visible on the run),
        # and the run skips any whose file went away before its turn.
        return [
            RunRequest(
                run_key=f"nightly@{tick}#{start // size}",
                run_config={"ops": {BATCH_STEP: {"config": {"catalog_ids": keys[start : start + size]}}}},
                tags={TRIGGER_TAG: "schedule", COUNT_TAG: str(len(keys[start : start + size]))},
            )
            for start in range(0, len(keys), size)
        ]

    return sync_all_catalogs_schedule
