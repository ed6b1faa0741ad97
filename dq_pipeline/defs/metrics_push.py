"""After every run of a job that writes the stores (sync, reindex, repair, remove), success or
failure, push the metrics to DQ_PUSHGATEWAY_URL: the stores' gauges (one collection, as
`dq-pipeline metrics` prints it) and the run's own figures (`pushgateway.py`). Two run status
sensors, one per end state, because Dagster's run status sensor watches one status.

A push that fails is one redacted log line and a skipped tick; it cannot fail the run, which has
ended. The collection runs beside the sensor (`pushgateway.Coalescer`): runs ending together share
one collection, and a slow one (a verify of every catalog) never outlasts the sensor's evaluation.
"""

import time
from typing import Any

from dagster import (
    DagsterEventType,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunsFilter,
    RunStatusSensorContext,
    SkipReason,
    run_status_sensor,
)
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES

from .. import pushgateway
from ..metrics import collect, registry_of
from .batch import sync_catalogs_batch_job
from .jobs import CATALOG_TAG, reindex_catalog_job, remove_catalog_job, repair_catalog_job, sync_catalog_job
from .resources import Pushgateway, SyncedStoreResource
from .sensors import PARTITION_TAG

MONITORED = [sync_catalog_job, sync_catalogs_batch_job, reindex_catalog_job, repair_catalog_job, remove_catalog_job]
# An evaluation handles up to 5 ended runs (DAGSTER_RUN_STATUS_SENSOR_PROCESS_LIMIT) and must end
# within 60 s (DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS): 5 run pushes of at most TIMEOUT_S (5 s) each, and
# one wait of at most WAIT_S for a collection (only the run that starts or re-arms one waits).
WAIT_S = 20.0
_coalescers: dict[Any, pushgateway.Coalescer] = {}  # one per gateway and store, for this process


def push_after_run(context: RunStatusSensorContext, store: SyncedStoreResource, gateway: Pushgateway, success: bool) -> SkipReason | None:
    url = gateway.gateway_url()
    if not url:
        return SkipReason("DQ_PUSHGATEWAY_URL is not set: nothing pushed")
    run = context.dagster_run
    record = context.instance.get_run_record_by_id(run.run_id)
    started, ended = (record.start_time, record.end_time) if record is not None else (None, None)
    catalog_id = run.tags.get(PARTITION_TAG) or run.tags.get(CATALOG_TAG) or ""
    run_pushed = pushgateway.push(
        url,
        pushgateway.run_registry(
            success=success, started=started, ended=ended,
            embedded=embedded_by(context.instance, run.run_id, catalog_id),
        ),
        {"catalog": catalog_id, "dagster_job": run.job_name},
    )
    settings = store.settings()
    if settings.qdrant_url is None and _in_progress(context.instance):
        # The embedded Qdrant admits one process, and a run in progress may open it at any moment:
        # opening it here could fail that run's step. Each of those runs pushes when it ends, so the
        # last one to end pushes what they all did.
        stores = "deferred (a run is in progress and Qdrant is embedded)"
    else:
        coalescer = _coalescers.setdefault((url, settings), pushgateway.Coalescer())
        # A collection that started after this run ended includes what the run did: it answers the run.
        done, outcome = coalescer.request(ended or time.time(), lambda: _push_stores(store, url), WAIT_S)
        stores = outcome if done else "collection in progress (it pushes when done)"
    summary = f"run {run.run_id}: run metrics {'pushed' if run_pushed else 'NOT pushed (see the log)'}; store metrics {stores}"
    context.log.info(summary)
    return None if run_pushed and stores == "pushed" else SkipReason(summary)


def _in_progress(instance: Any) -> bool:
    return any(instance.get_runs_count(RunsFilter(job_name=j.name, statuses=IN_PROGRESS_RUN_STATUSES)) for j in MONITORED)


def _push_stores(store: SyncedStoreResource, url: str) -> str:
    """One collection, pushed; what happened, in words. It may run after the sensor's evaluation has
    returned, so it uses nothing of that evaluation (its instance is closed by then)."""
    snapshot = collect(store.open)
    if snapshot.busy:
        marked = pushgateway.push(url, pushgateway.busy_registry(), replace=False)
        return "busy (embedded Qdrant held by a sync): marked on the gateway" if marked else "busy; NOT pushed (see the log)"
    return "pushed" if pushgateway.push(url, registry_of(snapshot)) else "NOT pushed (see the log)"


def embedded_by(instance: Any, run_id: str, catalog_id: str) -> int | None:
    """Entries the run embedded for its catalog: the write step's `embedded` (it includes the
    embedding step's), else the embedding step's when the write did not materialize; None if neither.
    A run naming no catalog (a batch run, `catalog_id` "") counts every catalog it materialized."""
    found: dict[str, dict[str, int]] = {}
    for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION, limit=None).records:
        materialization = record.event_log_entry.asset_materialization
        if materialization is None or (catalog_id and (materialization.partition or "") != catalog_id):
            continue
        value = materialization.metadata.get("embedded")
        if value is not None:
            found.setdefault(materialization.partition or "", {})[materialization.asset_key.to_user_string()] = int(value.value)
    per_catalog = [steps.get("catalog_index", steps.get("catalog_embeddings")) for steps in found.values()]
    counted = [n for n in per_catalog if n is not None]
    return sum(counted) if counted else None


def _sensor(status: DagsterRunStatus, name: str):
    @run_status_sensor(
        name=name,
        run_status=status,
        monitored_jobs=MONITORED,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"With DQ_PUSHGATEWAY_URL set, pushes the stores' metrics and the run's own (duration, outcome, "
        f"entries embedded) to the Pushgateway when a run of {', '.join(j.name for j in MONITORED)} ends in "
        f"{status.value}. A push that fails is logged (redacted) and skipped.",
    )
    def push_metrics(context: RunStatusSensorContext, store: SyncedStoreResource, pushgateway: Pushgateway):
        return push_after_run(context, store, pushgateway, status == DagsterRunStatus.SUCCESS)

    return push_metrics


push_metrics_on_success_sensor = _sensor(DagsterRunStatus.SUCCESS, "push_metrics_on_success_sensor")
push_metrics_on_failure_sensor = _sensor(DagsterRunStatus.FAILURE, "push_metrics_on_failure_sensor")
