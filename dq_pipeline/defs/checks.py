"""The global invariant: every catalog either store knows of has equal ID sets in both."""


from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from .assets import catalog_index
from .partitions import QDRANT_POOL
from .resources import AlertWebhook, SyncedStoreResource


@asset_check(
    asset=catalog_index,
    pool=QDRANT_POOL,
    blocking=False,
    description="All catalogs: PostgreSQL and Qdrant hold the same point ids (orphans of forgotten catalogs "
    "included) with matching payloads, and the journal is empty.",
)
def all_catalogs_in_sync(context: AssetCheckExecutionContext, store: SyncedStoreResource, alerts: AlertWebhook) -> AssetCheckResult:
    with store.open() as synced:
        results = [synced.verify(catalog_id) for catalog_id in synced.known_catalogs()]
    failing = [v for v in results if not v.in_sync]
    if failing and alerts.configured():  # a failed check does not fail its run, so no run-failure alert would say it
        alerts.send(
            "check all_catalogs_in_sync failed",
            catalog=", ".join(v.catalog_id for v in failing[:20]) + (f" (+{len(failing) - 20} more)" if len(failing) > 20 else ""),
            error="; ".join(f"{v.catalog_id}: {v.counts()}" for v in failing[:5]),
            **_run_of(context),
        )
    return AssetCheckResult(
        passed=not failing,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "catalogs": len(results),
            "catalogs_out_of_sync": len(failing),
            "pg_rows": sum(v.pg for v in results),
            "qdrant_points": sum(v.qdrant for v in results),
            "missing": sum(v.missing for v in results),
            "orphans": sum(v.orphans for v in results),
            "mismatched": sum(v.mismatched for v in results),
            "pending_journal": sum(v.pending_journal for v in results),
            "out_of_sync": MetadataValue.json({v.catalog_id: v.counts() for v in failing}),
        },
    )


def _run_of(context: AssetCheckExecutionContext) -> dict[str, str | None]:
    """The run's id and job, or None each when the check is invoked directly (no run)."""
    try:
        return {"run_id": context.run.run_id, "job": context.run.job_name}
    except Exception:
        return {"run_id": None, "job": None}
