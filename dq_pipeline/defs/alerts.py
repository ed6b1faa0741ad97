"""Alerts to the configured webhook (DQ_ALERT_WEBHOOK_URL): a failed run of any job of this code
location, with whether auto-repair will act or its bound was reached; the global check failing
posts from the check itself (defs/checks.py). One message per failed run: the sensor sees each
failure once (Dagster keeps its cursor), and the message names catalog, job, run and the error."""

from dagster import DefaultSensorStatus, RunFailureSensorContext, SkipReason, run_failure_sensor

from ..errors import one_line
from .assets import failure_text
from .batch import BATCH_JOB, batch_run_failures, headline, sync_catalogs_batch_job
from .jobs import (
    reindex_catalog_job,
    remove_catalog_job,
    repair_catalog_job,
    sync_catalog_job,
    verify_all_catalogs_job,
)
from .resources import AlertWebhook
from .sensors import CATALOG_TAG, MAX_AUTO_REPAIRS, PARTITION_TAG, classify_failure, recent_auto_repairs

# What auto_repair_sensor watches.
REPAIRED_JOBS = {sync_catalog_job.name, sync_catalogs_batch_job.name, reindex_catalog_job.name, remove_catalog_job.name}
NAMED = 20  # failed catalogs of a batch run named in its alert


@run_failure_sensor(
    name="alert_on_failure_sensor",
    monitored_jobs=[
        sync_catalog_job,
        sync_catalogs_batch_job,
        reindex_catalog_job,
        remove_catalog_job,
        repair_catalog_job,
        verify_all_catalogs_job,
    ],
    default_status=DefaultSensorStatus.RUNNING,
    description="Posts one message to DQ_ALERT_WEBHOOK_URL (Slack-compatible JSON) per failed run: catalog, job, "
    "run id and the error (secrets redacted), and whether auto-repair acts or its bound was reached.",
)
def alert_on_failure_sensor(context: RunFailureSensorContext, alerts: AlertWebhook):
    if not alerts.configured():
        return SkipReason("DQ_ALERT_WEBHOOK_URL is not set: no alert posted")
    run = context.dagster_run
    catalog_id = run.tags.get(PARTITION_TAG) or run.tags.get(CATALOG_TAG)
    failures = context.get_step_failure_events()
    if run.job_name == BATCH_JOB and (per_catalog := batch_run_failures(context.instance, run.run_id, failures)):
        return _post(context, alerts, *_batch_alert(context, per_catalog))
    transient, kind = classify_failure(failures)
    if run.job_name not in REPAIRED_JOBS or not catalog_id:
        title, follow_up = f"{run.job_name} failed", None
    elif not transient:
        title, follow_up = f"{run.job_name} failed ({kind})", "not repaired automatically: fix the file or the configuration"
    elif recent_auto_repairs(context.instance, catalog_id) >= MAX_AUTO_REPAIRS:
        title, follow_up = "auto-repair bound reached", f"{MAX_AUTO_REPAIRS} automatic repairs within the window: not repaired again; investigate"
    else:
        title, follow_up = f"{run.job_name} failed ({kind})", "auto-repair requested"
    error = _first_error(failures) or one_line(context.failure_event.message or "run failed")
    return _post(context, alerts, title, catalog_id, error, follow_up)


def _batch_alert(context: RunFailureSensorContext, per_catalog: dict) -> tuple[str, str, str, str]:
    """One message for a batch run: the failed catalogs, each one's error, and for each whether
    auto-repair acts (the same rules as auto_repair_sensor applies to each)."""
    names = sorted(per_catalog)
    catalogs = ", ".join(names[:NAMED]) + (f" (+{len(names) - NAMED} more)" if len(names) > NAMED else "")
    errors = "; ".join(f"{cid}: {headline(per_catalog[cid])}" for cid in names[:5])
    terminal = [cid for cid in names if per_catalog[cid].get("refused") or not per_catalog[cid].get("transient", True)]
    bound = [cid for cid in names if cid not in terminal and recent_auto_repairs(context.instance, cid) >= MAX_AUTO_REPAIRS]
    repaired = [cid for cid in names if cid not in terminal and cid not in bound]
    steps = [
        *([f"auto-repair requested for {', '.join(repaired[:NAMED])}"] if repaired else []),
        *([f"not repaired automatically (fix the file or the configuration): {', '.join(terminal[:NAMED])}"] if terminal else []),
        *([f"auto-repair bound reached, not repaired again: {', '.join(bound[:NAMED])}"] if bound else []),
    ]
    title = f"{BATCH_JOB} failed for {len(names)} catalog{'s' if len(names) != 1 else ''}"
    return title, catalogs, errors, "; ".join(steps)


def _post(context: RunFailureSensorContext, alerts: AlertWebhook, title: str, catalog_id, error: str, follow_up):
    run = context.dagster_run
    delivered = alerts.send(title, catalog=catalog_id, error=error, run_id=run.run_id, job=run.job_name, next_step=follow_up)
    context.log.info(f"alert for run {run.run_id} {'posted' if delivered else 'NOT delivered (see the log)'}")
    return None if delivered else SkipReason(f"the alert for run {run.run_id} could not be delivered")


def _first_error(failures) -> str | None:
    for event in failures:
        if (text := failure_text(event)) is not None:
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            return "; ".join(lines[:6]) + ("; ..." if len(lines) > 6 else "")  # a refusal's first problems name file and line
    return None
