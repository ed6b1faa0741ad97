"""Freshness: with DQ_FRESHNESS_HOURS set, a catalog not synced within that many hours fails the
check `catalogs_fresh` on `catalog_index`, evaluated every hour by its own schedule.

Why a check of our own and not Dagster's freshness (1.13): `build_last_update_freshness_checks`
looks up the latest materialization with no partition for any asset that is not time-partitioned
(`retrieve_last_update_record(partition_key=None)`), and `FreshnessPolicy` is evaluated from the
asset's latest materialization (`TimeWindowFreshnessPolicyEvaluator`), so with one dynamic
partition per catalog either passes as soon as any one catalog synced and never names the stale
ones; `FreshnessPolicy` also needs the opt-in freshness daemon and shows a state, not a failed
check. Both read the Dagster instance's event log, which a `dq-pipeline sync` without DAGSTER_HOME
does not keep. This check reads each catalog's last successful sync from the record itself
(`sync/services/freshness.py`, whoever ran it) and fails with severity ERROR naming the stale catalogs and
their age, which the UI shows as a failed check on the asset. Unpartitioned like the other global
checks (a partitioned check cannot run alone), so its own job and schedule run it.

A catalog that never synced is not listed here: `index_matches_source` reports it.
"""

import datetime as dt

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetSelection,
    DefaultScheduleStatus,
    MetadataValue,
    ScheduleDefinition,
    asset_check,
    define_asset_job,
)

from ..settings import setting_value
from ..sync.services.freshness import last_synced, stale
from .assets import catalog_index
from .resources import SyncedStoreResource

FRESHNESS_ENV = "DQ_FRESHNESS_HOURS"
CHECK = "catalogs_fresh"
JOB = "check_freshness"
CRON = "0 * * * *"  # hourly: a catalog shows as stale at most an hour after its window ends
SAMPLE = 20


def freshness_hours(env: dict[str, str] | None = None) -> float | None:
    """DQ_FRESHNESS_HOURS (read when the definitions load; parsed by its declaration in
    dq_pipeline.settings): unset or empty = no freshness check."""
    return setting_value(FRESHNESS_ENV, env)


def _age(age: dt.timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


def build_freshness(hours: float):
    """The check, the job that runs it and the schedule that launches the job."""
    window = dt.timedelta(hours=hours)

    @asset_check(
        asset=catalog_index,
        name=CHECK,
        blocking=False,
        description=f"Every catalog the record holds synced successfully within the last {hours:g} h "
        f"({FRESHNESS_ENV}); a sync of an unchanged file counts. Fails naming the stale catalogs and their age.",
    )
    def catalogs_fresh(context: AssetCheckExecutionContext, store: SyncedStoreResource) -> AssetCheckResult:
        with store.record() as engine:
            last = last_synced(engine)
        behind = stale(last, window)
        named = [f"{catalog_id} ({_age(age)} ago)" for catalog_id, age in list(behind.items())[:SAMPLE]]
        more = f" (+{len(behind) - SAMPLE} more)" if len(behind) > SAMPLE else ""
        return AssetCheckResult(
            passed=not behind,
            severity=AssetCheckSeverity.ERROR,
            description=None if not behind else f"{len(behind)} catalogs not synced within {hours:g} h: {', '.join(named)}{more}",
            metadata={
                "window_hours": hours,
                "catalogs": len(last),
                "stale": len(behind),
                "oldest_sync_hours": round(max(behind.values()).total_seconds() / 3600, 2) if behind else 0.0,
                "stale_sample": MetadataValue.json({cid: round(age.total_seconds() / 3600, 2) for cid, age in list(behind.items())[:SAMPLE]}),
            },
        )

    job = define_asset_job(
        JOB,
        selection=AssetSelection.checks(catalogs_fresh),
        description=f"Check that every catalog synced within {hours:g} h ({FRESHNESS_ENV}).",
    )
    schedule = ScheduleDefinition(
        name="check_freshness_schedule",
        job=job,
        cron_schedule=CRON,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Runs the freshness check `{CHECK}` hourly.",
    )
    return catalogs_fresh, job, schedule
