"""Running the sync job from the command line: one in-process Dagster run per catalog partition.

With DAGSTER_HOME set, runs are recorded in that instance (visible in the UI); otherwise in an
ephemeral one. Secrets reach the job only by `EnvVar` name (`settings.resource_values`): the job
snapshot, run config and event log stored in that instance never hold a password or an API key.
Catalogs that the system of record knows (rows or journal rows) but whose file is
gone are synced as empty catalogs, which deletes their rows and points.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dagster import DagsterInstance, DagsterRunStatus, ExecuteInProcessResult, RunsFilter

from .catalog import discover
from .embedding.embedder import check_model_source
from .errors import ConfigurationError
from .results import SyncCatalog, SyncCounts
from .settings import Settings, check_namespace, exported
from .sync import open_record, recorded_catalog_ids

SyncRow = dict[str, Any]
COUNTS = SyncCounts.names()


def recorded_catalogs(settings: Settings) -> set[str]:
    """Every catalog the record knows of (sync.recorded_catalog_ids): each must be synced, if only to remove it."""
    engine = open_record(settings.database_url)
    try:
        return recorded_catalog_ids(engine)
    finally:
        engine.dispose()


def catalogs_to_sync(settings: Settings) -> list[str]:
    on_disk = set(discover(settings.catalog_dir))
    recorded = recorded_catalogs(settings)
    if recorded and not on_disk:
        # An empty catalog folder is what an unmounted volume looks like: never read it as "every
        # catalog removed". Removing them all stays possible, by naming them.
        raise ConfigurationError(
            f"catalog folder {settings.catalog_dir} holds no catalog file, but {len(recorded)} catalog(s) are recorded: "
            "refusing to remove them all (an unmounted folder?); name them with --catalog to remove them"
        )
    return sorted(on_disk | recorded)


def refuse_unknown(settings: Settings, catalog_ids: list[str]) -> None:
    """A catalog named on the command line must have a file or be recorded: a typo is an error,
    not an empty catalog synced with nothing to do."""
    known = set(discover(settings.catalog_dir)) | recorded_catalogs(settings)
    unknown = [cid for cid in catalog_ids if cid not in known]
    if unknown:
        raise ConfigurationError(
            f"no such catalog: {', '.join(unknown)} (no file for it in {settings.catalog_dir} and nothing recorded; "
            "a catalog id is the file's path in the folder without its extension, e.g. sales/orders)"
        )


def run_sync(
    settings: Settings,
    catalog_ids: list[str],
    *,
    force: bool = False,
    progress: Callable[[str, SyncRow], None] | None = None,
    instance: DagsterInstance | None = None,
    verbose: bool = False,
) -> dict[str, SyncRow]:
    engine = open_record(settings.database_url)
    try:
        check_namespace(engine, settings.namespace)  # a configuration error (exit 2) before any run starts
    finally:
        engine.dispose()
    if catalog_ids:
        refuse_unknown(settings, catalog_ids)
    check_model_source(settings.embedding_model)  # a model that cannot load is exit 2, before any run
    ids = catalog_ids or catalogs_to_sync(settings)
    with exported(settings):
        return _run(settings, ids, force=force, progress=progress, instance=instance, verbose=verbose)


def _run(
    settings: Settings,
    ids: list[str],
    *,
    force: bool,
    progress: Callable[[str, SyncRow], None] | None,
    instance: DagsterInstance | None,
    verbose: bool,
) -> dict[str, SyncRow]:
    from .definitions import build_definitions, resources_for
    from .defs.jobs import SYNC_JOB
    from .defs.partitions import catalog_partitions

    # Resources bound to these settings (--catalog-dir, the URLs), not to the environment at import;
    # secrets by EnvVar name only.
    job = build_definitions(resources_for(settings)).resolve_job_def(SYNC_JOB)
    step_config = {"config": {"force": force}}
    run_config = {
        "ops": {"catalog_embeddings": step_config, "catalog_index": step_config},
        # A failure is reported once, as the catalog's one-line error; Dagster's own log of it (with
        # its stack traces) goes to the run's event log, and to stderr only with --verbose.
        "loggers": {"console": {"config": {"log_level": "ERROR" if verbose else "CRITICAL"}}},
    }
    results: dict[str, SyncRow] = {}
    with _instance(instance) as inst:
        reap_dead_cli_runs(inst)
        known = set(inst.get_dynamic_partitions(catalog_partitions.name))
        inst.add_dynamic_partitions(catalog_partitions.name, [cid for cid in ids if cid not in known])
        for catalog_id in ids:
            run = job.execute_in_process(
                partition_key=catalog_id, instance=inst, run_config=run_config, raise_on_error=False, tags=_process_tags()
            )
            results[catalog_id] = _row(run)
            if progress is not None:
                progress(catalog_id, results[catalog_id])
    return results


# Runs this command executes in its own process carry where that process is, so a later command can
# tell a run whose process was killed (-9, OOM) from one still going: nothing else ever ends such a
# run (no daemon monitors in-process runs), and it would hold its `dq_qdrant` pool slot for ever,
# so every later sync would wait for that slot without end.
HOST_TAG, PID_TAG, STARTED_TAG = "dq/cli_host", "dq/cli_pid", "dq/cli_process_start"


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux; "" elsewhere): with the pid, it
    names one process, not whichever later process reuses the pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _process_tags() -> dict[str, str]:
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), STARTED_TAG: _process_start(pid)}


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, someone else's
    return not started or _process_start(pid) == started


def reap_dead_cli_runs(instance: DagsterInstance) -> list[str]:
    """Mark failed, and free the pool slots of, runs this host's `dq-pipeline` processes started and
    that died without ending them. Their journal rows are finished by the next sync as usual."""
    runs = instance.get_runs(
        RunsFilter(statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING], tags={HOST_TAG: socket.gethostname()})
    )
    reaped = []
    for run in runs:
        pid, started = run.tags.get(PID_TAG, ""), run.tags.get(STARTED_TAG, "")
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid), started):
            instance.report_run_failed(run, f"the dq-pipeline process {pid} that ran it died (killed or out of memory)")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            reaped.append(run.run_id)
    return reaped


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


WARNINGS_SHOWN = 20  # warnings listed per catalog in `sync` output; `warning_count` has them all


def _row(run: ExecuteInProcessResult) -> SyncRow:
    """The catalog's line of `sync --json` (results.SyncCatalog), from its run's events."""
    counts: dict[str, int] = {}
    standby_error = None
    for materialization in run.asset_materializations_for_node("catalog_index"):
        counts = SyncCatalog.counts_from_metadata(materialization.metadata)
        if "standby_error" in materialization.metadata:
            standby_error = str(materialization.metadata["standby_error"].value)
    warnings, warning_count = _warnings(run)
    return SyncCatalog(
        status="ok" if run.success else "failed",
        error=None if run.success else _first_error(run),
        warnings=warnings,
        warning_count=warning_count,
        standby_error=standby_error,
        **counts,
    ).to_dict()


def _warnings(run: ExecuteInProcessResult) -> tuple[list[str], int]:
    """What the parse step tolerated (its `warning_list` metadata, the first 50 as "file:line:
    reason"): the first `WARNINGS_SHOWN` and the count the step reported."""
    from .sync.services.refusals import warning_lines

    for materialization in run.asset_materializations_for_node("catalog_entries"):
        meta = materialization.metadata
        listed = meta["warning_list"].value if "warning_list" in meta else []
        lines, counted = warning_lines(listed if isinstance(listed, list) else [])
        reported = int(meta["warnings"].value) if "warnings" in meta else counted  # type: ignore[arg-type]
        # The step lists 50; the reader's own "... and N more" line (the 101st) is counted when listed.
        return lines[:WARNINGS_SHOWN], max(reported, counted)
    return [], 0


def _first_error(run: ExecuteInProcessResult) -> str:
    from .defs.assets import failure_text

    for event in run.all_events:
        if event.is_step_failure and (text := failure_text(event)) is not None:
            return text
        if event.event_type_value == "ASSET_CHECK_EVALUATION" and not event.event_specific_data.passed:
            return f"check failed: {event.event_specific_data.description or 'stores disagree'}"
    return "run failed"
