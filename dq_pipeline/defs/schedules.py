"""The periodic full sync: one sync_catalog run per catalog partition.

The sensor reacts to file changes; this schedule is the safety net (a change the sensor missed
while it was off, a catalog whose file went away before the sensor first saw it). Syncing an
unchanged catalog embeds and writes nothing (I4), so a nightly run of every catalog is cheap.
"""

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, SkipReason, schedule

from ..catalog import discover
from ..settings import DEFAULT_CRON, setting_value
from .jobs import CATALOG_TAG, TRIGGER_TAG, sync_catalog_job
from .partitions import catalog_partitions
from .resources import CatalogFolder

CRON_ENV = "DQ_SYNC_CRON"
__all__ = ["CRON_ENV", "DEFAULT_CRON", "build_sync_schedule", "sync_cron"]


def sync_cron(env: dict[str, str] | None = None) -> str:
    """The schedule's cron string from DQ_SYNC_CRON (read when the definitions load; parsed and
    checked by its declaration in dq_pipeline.settings); a bad value is a clear error."""
    return setting_value(CRON_ENV, env)


def build_sync_schedule(cron: str | None = None):
    cron = cron or sync_cron()

    @schedule(
        name="sync_all_catalogs_schedule",
        job=sync_catalog_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Sync every known catalog (one run per partition) on `{cron}` UTC (env {CRON_ENV}). "
        "Unchanged catalogs embed and write nothing.",
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
        keys = [key for key in keys if key in present]
        tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "manual"
        return [
            RunRequest(
                partition_key=key,
                run_key=f"{key}@{tick}",
                tags={CATALOG_TAG: key, TRIGGER_TAG: "schedule"},
            )
            for key in sorted(keys)
        ]

    return sync_all_catalogs_schedule
