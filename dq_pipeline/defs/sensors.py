"""Sensors: follow the catalog folder, and repair a catalog whose sync failed.

Sensors run in the code server, so they never open Qdrant (embedded Qdrant admits one process):
the folder sensor only reads files and the instance; the failure sensor only reads the instance.
All writing happens in runs, whose Qdrant steps queue on the pool.
"""

import hashlib
import json
from datetime import UTC, datetime, timedelta

from dagster import (
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from ..catalog import CatalogError, CatalogFile, discover, source_files
from .assets import PARSE_STEP
from .jobs import (
    CATALOG_TAG,
    REMOVE_JOB,
    REPAIR_JOB,
    SYNC_JOB,
    TRIGGER_TAG,
    reindex_catalog_job,
    remove_catalog_job,
    repair_catalog_job,
    sync_catalog_job,
)
from .partitions import catalog_partitions
from .resources import CatalogFolder

PARTITION_TAG = "dagster/partition"
AUTO_REPAIR = "auto-repair"
# Dagster refuses these in partition keys (dagster._core.definitions.partitions.utils.base).
INVALID_PARTITION_SUBSTRINGS = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")
MAX_AUTO_REPAIRS = 3  # automatic repairs of one catalog ...
AUTO_REPAIR_WINDOW = timedelta(hours=24)  # ... within this window; then a person has to look


# --- the catalog folder -------------------------------------------------------------------------


def file_hash(file: CatalogFile) -> str | None:
    """sha256 of the bytes the catalog is built from (a touch changes nothing). A file discovery refused that cannot
    be read (a broken symlink) is fingerprinted by its refusal, so its run still reports the error.
    None: unreadable for now (e.g. permissions mid-copy); the sensor looks again next tick."""
    try:
        paths = source_files(file)  # a dbt manifest changes when its catalog.json does
    except CatalogError:
        paths = [file.path]  # e.g. a bad format override: the run reports it
    try:
        digests = []
        for path in paths:
            with open(path, "rb") as handle:
                digests.append(hashlib.file_digest(handle, "sha256"))
        if len(digests) == 1:
            return digests[0].hexdigest()
        return hashlib.sha256(b"".join(d.digest() for d in digests)).hexdigest()
    except OSError:
        if file.error is not None:
            return "refused-" + hashlib.sha256(str(file.error).encode()).hexdigest()
        return None


def read_cursor(cursor: str | None) -> tuple[int, dict[str, str]]:
    """(tick sequence, {catalog id: content hash}) from the cursor; an unreadable cursor starts over."""
    try:
        state = json.loads(cursor) if cursor else {}
        return int(state.get("seq", 0)), {str(k): str(v) for k, v in dict(state.get("hashes", {})).items()}
    except (ValueError, TypeError, AttributeError):
        return 0, {}


def write_cursor(seq: int, hashes: dict[str, str]) -> str:
    return json.dumps({"seq": seq, "hashes": dict(sorted(hashes.items()))}, separators=(",", ":"))


def _valid_partition_key(catalog_id: str) -> bool:
    return not any(bad in catalog_id for bad in INVALID_PARTITION_SUBSTRINGS)


@sensor(
    name="catalog_folder_sensor",
    jobs=[sync_catalog_job, remove_catalog_job],
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Watches the catalog folder by content hash (sha256). A new or changed file adds its partition "
    "and requests a sync_catalog run; a removed file requests a remove_catalog run and deletes the partition. "
    "Touching a file without changing it does nothing.",
)
def catalog_folder_sensor(context: SensorEvaluationContext, catalog_folder: CatalogFolder):
    folder = catalog_folder.path()
    try:
        files = discover(folder)
    except FileNotFoundError:
        # A missing (e.g. unmounted) folder is not "every catalog removed": keep the cursor, do nothing.
        return SkipReason(f"catalog folder {folder} does not exist")
    seq, before = read_cursor(context.cursor)

    now: dict[str, str] = {}
    for catalog_id, file in files.items():
        digest = file_hash(file)
        if digest is None:
            context.log.warning(f"{file.display}: cannot be read now; looking again next tick")
            if catalog_id in before:
                now[catalog_id] = before[catalog_id]  # unknown is not removed
            continue
        now[catalog_id] = digest

    changed = sorted(cid for cid, digest in now.items() if before.get(cid) != digest)
    removed = sorted(set(before) - set(now))
    if not changed and not removed:
        return SkipReason(f"no catalog file added, changed or removed ({len(now)} watched)")

    # The sequence makes run keys unique per change: without it, a file changed back to earlier
    # content (or removed and restored) would reuse an old run key, and Dagster would skip the run.
    # It comes from the cursor, so a tick evaluated again after a crash requests the same keys.
    seq += 1
    existing = set(context.instance.get_dynamic_partitions(catalog_partitions.name))
    run_requests: list[RunRequest] = []
    to_add: list[str] = []
    for catalog_id in changed:
        if not _valid_partition_key(catalog_id):
            context.log.error(f"{files[catalog_id].display}: catalog id {catalog_id!r} cannot be a partition key; rename the file")
            continue
        if files[catalog_id].error is not None:
            # Still requested: the run fails at catalog_entries with the reason, visible in the UI.
            context.log.warning(f"{files[catalog_id].display}: refused ({files[catalog_id].error}); its run will fail")
        if catalog_id not in existing:
            to_add.append(catalog_id)
        run_requests.append(
            RunRequest(
                job_name=SYNC_JOB,
                partition_key=catalog_id,
                run_key=f"{catalog_id}:{now[catalog_id]}@{seq}",
                tags={CATALOG_TAG: catalog_id, TRIGGER_TAG: "catalog-sensor"},
            )
        )
    for catalog_id in removed:
        # A deleted partition can no longer be targeted: removal is an unpartitioned job.
        run_requests.append(
            RunRequest(
                job_name=REMOVE_JOB,
                run_key=f"remove:{catalog_id}@{seq}",
                run_config={"ops": {"remove_catalog_data": {"config": {"catalog_id": catalog_id}}}},
                tags={CATALOG_TAG: catalog_id, TRIGGER_TAG: "catalog-sensor"},
            )
        )
    partition_requests = []
    if to_add:
        partition_requests.append(catalog_partitions.build_add_request(to_add))
    if removed:
        partition_requests.append(catalog_partitions.build_delete_request(removed))
    context.log.info(f"changed: {changed or '-'}; removed: {removed or '-'}")
    return SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=partition_requests,
        cursor=write_cursor(seq, now),
    )


# --- failed syncs -------------------------------------------------------------------------------


def recent_auto_repairs(instance, catalog_id: str, now: datetime | None = None) -> int:
    """Automatic repair runs of this catalog created within the window (any status)."""
    since = (now or datetime.now(UTC)) - AUTO_REPAIR_WINDOW
    runs_filter = RunsFilter(
        job_name=REPAIR_JOB, tags={CATALOG_TAG: catalog_id, TRIGGER_TAG: AUTO_REPAIR}, created_after=since
    )
    return instance.get_runs_count(runs_filter)


def repair_request(catalog_id: str, failed_run_id: str) -> RunRequest:
    return RunRequest(
        run_key=failed_run_id,  # one repair per failed run, however often the sensor sees it
        run_config={"ops": {"repair_catalogs": {"config": {"catalog_ids": [catalog_id]}}}},
        tags={CATALOG_TAG: catalog_id, TRIGGER_TAG: AUTO_REPAIR, "dq/failed_run": failed_run_id},
    )


@run_failure_sensor(
    name="auto_repair_sensor",
    monitored_jobs=[sync_catalog_job, reindex_catalog_job],
    request_job=repair_catalog_job,
    default_status=DefaultSensorStatus.RUNNING,
    description=f"When a sync or reindex run fails (a failed blocking ID-set check included), launches "
    f"repair_catalog for its catalog, at most {MAX_AUTO_REPAIRS} times per catalog in "
    f"{int(AUTO_REPAIR_WINDOW.total_seconds() // 3600)}h. A refused catalog file is not repaired: fix the file.",
)
def auto_repair_sensor(context: RunFailureSensorContext):
    run = context.dagster_run
    catalog_id = run.tags.get(PARTITION_TAG)
    if not catalog_id:
        return SkipReason(f"run {run.run_id} of {run.job_name} has no catalog partition; nothing to repair")

    failures = context.get_step_failure_events()
    failed_steps = {event.step_key for event in failures}
    if failed_steps and failed_steps <= {PARSE_STEP}:
        message = (
            f"{catalog_id}: run {run.run_id} failed parsing/validating the catalog file, so nothing was written; "
            "repair cannot fix bad input: fix the file"
        )
        context.log.info(message)
        return SkipReason(message)

    attempts = recent_auto_repairs(context.instance, catalog_id)
    if attempts >= MAX_AUTO_REPAIRS:
        message = (
            f"auto-repair bound reached for catalog {catalog_id}: {attempts} automatic repairs in the last "
            f"{int(AUTO_REPAIR_WINDOW.total_seconds() // 3600)}h (limit {MAX_AUTO_REPAIRS}); run {run.run_id} "
            "failed again and is NOT repaired automatically. Investigate, then launch repair_catalog by hand."
        )
        context.log.error(message)
        return SkipReason(message)

    context.log.info(f"{catalog_id}: run {run.run_id} failed at {sorted(failed_steps) or 'run level'}; requesting repair")
    return repair_request(catalog_id, run.run_id)
