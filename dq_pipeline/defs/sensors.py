"""Sensors: keep the record level with the catalog folder, and repair a catalog whose run failed.

Sensors run in the code server, so they never open Qdrant (embedded Qdrant admits one process):
the folder sensor reads the files, the instance and the system of record (where it keeps its
per-file state); the failure sensor only reads the instance. All writing happens in runs, whose
Qdrant steps queue on the pool.

The folder sensor is a reconciler, not an edge detector: every tick it compares what is on disk
with what the system of record holds (`committed_source_digests`) and requests what is missing,
so a sync that failed, a removal that failed or a request that was lost is driven again (with
backoff) until the record matches the folder. It removes a catalog only on positive evidence
(its folder was read and listed this tick), never on an unreadable or suddenly empty folder, and
holds back a bulk removal beyond a configurable share of the catalogs.
"""

import functools
import gc
import hashlib
import json
import math
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dagster import (
    DagsterEventType,
    DagsterRunStatus,
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

from ..catalog import ABSENT, CatalogError, CatalogFile, source_digest, source_files
from ..catalog.formats import OVERRIDES_FILE, choose, registry
from ..settings import DEFAULT_MAX_REMOVAL_SHARE, setting_value
from ..sync import committed_source_digests
from .batch import BATCH_JOB, batch_run_failures, sync_catalogs_batch_job
from .folder_scan import FileState, FolderScan, SensorState, discover_scanned, scan_folder
from .jobs import (
    CATALOG_TAG,
    REINDEX_JOB,
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
from .resources import CatalogFolder, SyncedStoreResource

PARTITION_TAG = "dagster/partition"
FINGERPRINT_TAG = "dq/fingerprint"
REQUEST_TAG = "dq/request"  # the folder sensor's run key of the request a run was made for
FOLDER_SENSOR = "catalog-sensor"
AUTO_REPAIR = "auto-repair"
# Dagster refuses these in partition keys (dagster._core.definitions.partitions.utils.base).
INVALID_PARTITION_SUBSTRINGS = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")
MAX_AUTO_REPAIRS = 3  # automatic repairs of one catalog ...
AUTO_REPAIR_WINDOW = timedelta(hours=24)  # ... within this window; then a person has to look

# Failure metadata the steps attach to their dagster.Failure (defs/assets.py, dq_pipeline/errors.py).
ERROR_KIND_KEY = "dq/error_kind"
TRANSIENT_KEY = "dq/transient"
REFUSED_KEY = "dq/refused"

# Bulk removal guard: one tick removes at most this share of the recorded catalogs (at least one).
# Both read at every tick through their declarations in dq_pipeline.settings (bounds and defaults there).
MAX_REMOVAL_SHARE_ENV = "DQ_SENSOR_MAX_REMOVAL_SHARE"
# Runs one tick may request; the rest follow on later ticks (the comparison is stateless).
MAX_RUNS_ENV = "DQ_SENSOR_MAX_RUNS_PER_TICK"
# A run that failed for a transient reason is requested again after 60 s, 120 s, ... at most 1 h.
RETRY_BASE_S = 60.0
RETRY_MAX_S = 3600.0

_WRITING_JOBS = {SYNC_JOB, REINDEX_JOB, REMOVE_JOB}
# A run created but never launched (NOT_STARTED: the daemon died between the two) is not counted:
# it launches only when its request is made again, so it neither holds its catalog back nor keeps
# a forgotten catalog's partition.
_LAUNCHED = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.MANAGED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]
_FINISHED = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]


# --- failures: transient or terminal, from the error the step attached ------------------------------


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


def classify_failure(step_failures: Iterable[Any]) -> tuple[bool, str]:
    """(transient, kind) of a failed run from its STEP_FAILURE events.

    Terminal when any step failure says so (`dq/transient` False, or `dq/refused` True); a failure
    without that metadata (a Dagster error, a crash, a run that failed before any step) counts as
    transient: repairing or retrying it is cheap and safe.
    """
    kinds = []
    for event in step_failures:
        data = getattr(event, "step_failure_data", None)
        metadata = _failure_metadata(event)
        kind = _plain(metadata.get(ERROR_KIND_KEY))
        if _plain(metadata.get(REFUSED_KEY)) is True:
            return False, str(kind or "RefusedInput")
        if _plain(metadata.get(TRANSIENT_KEY)) is False:
            return False, str(kind or "terminal")
        kinds.append(str(kind) if kind else (getattr(getattr(data, "error", None), "cls_name", None) or "unclassified"))
    return True, ", ".join(sorted(set(kinds))) or "run-level failure"


def _failure_metadata(event: Any) -> dict[str, Any]:
    """The metadata a step attached to its Failure (defs/assets.py step_failure), or {}."""
    data = getattr(event, "step_failure_data", None)
    user = getattr(data, "user_failure_data", None) if data is not None else None
    return dict(getattr(user, "metadata", None) or {})


def _refused(step_failures: Iterable[Any]) -> bool:
    """Whether a step failed on refused input (only a change of the file can cure that)."""
    return any(_plain(_failure_metadata(event).get(REFUSED_KEY)) is True for event in step_failures)


def run_step_failures(instance, run_id: str) -> list[Any]:
    return [
        entry.dagster_event
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
        if entry.dagster_event is not None
    ]


# --- the catalog folder -------------------------------------------------------------------------


def read_cursor(cursor: str | None) -> int:
    """The tick sequence number from the cursor; unreadable (e.g. set by hand in the UI): start over.

    The cursor holds nothing else: the per-file state lives in the system of record, and run
    outcomes are found by their request tag, so no cursor value can hide one."""
    try:
        state = json.loads(cursor) if cursor else {}
        return int(state.get("seq", 0))
    except (ValueError, TypeError, AttributeError, OverflowError):
        return 0


def write_cursor(seq: int) -> str:
    return json.dumps({"seq": seq}, separators=(",", ":"))


_INVALID_PARTITION_KEY = re.compile("|".join(re.escape(bad) for bad in INVALID_PARTITION_SUBSTRINGS))


def _valid_partition_key(catalog_id: str) -> bool:
    return _INVALID_PARTITION_KEY.search(catalog_id) is None  # none of INVALID_PARTITION_SUBSTRINGS in it


def fingerprint(digest: str, fmt: str | None, parents: Iterable[str]) -> str:
    """What a catalog is synced as: its source bytes, the format chosen for it (.dq-formats.yaml may
    change it) and the catalogs that read its file as a companion (a dbt catalog.json parses to
    nothing beside a manifest)."""
    text = f"{digest}|{fmt or ''}|{','.join(sorted(parents)) if parents else ''}"
    return hashlib.sha256(text.encode()).hexdigest()


ABSENT_FINGERPRINT = fingerprint(ABSENT, None, ())


@functools.cache
def _watchers() -> dict[str, Any]:
    """{format name: its `watches`} of the formats whose parse looks at other files."""
    return {fmt.name: fmt.watches for fmt in registry() if fmt.watches is not None}


def _formats_with_companions() -> set[str]:
    """Formats whose parse reads other files of the folder (companions, or a context such as a dbt
    manifest beside a catalog.json): their files are described again whenever their folder changes."""
    return {fmt.name for fmt in registry() if fmt.companions is not None or fmt.context is not None}


def _read_overrides(root: Path) -> str:
    try:
        return (root / OVERRIDES_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        return f"!unreadable {type(exc).__name__}"  # no mapping: every file's format is chosen again


@dataclass
class TickReport:
    """What one tick saw and decided: the tick's message."""

    watched: int = 0
    hashed: int = 0
    unreadable_files: list[str] = field(default_factory=list)
    invalid_keys: list[str] = field(default_factory=list)
    syncs: list[str] = field(default_factory=list)
    removals: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # in flight, or backing off
    held: list[str] = field(default_factory=list)  # terminal failure: fix the file
    removal_blocked: str | None = None
    deferred: int = 0

    def message(self) -> str:
        parts = [f"{self.watched} catalog files watched, {self.hashed} hashed"]
        if self.syncs:
            parts.append(f"sync requested: {_few(self.syncs)}")
        if self.removals:
            parts.append(f"removal requested: {_few(self.removals)}")
        if self.deferred:
            parts.append(f"{self.deferred} more deferred to the next tick")
        if self.waiting:
            parts.append(f"waiting (run in flight or retry backoff): {_few(self.waiting)}")
        if self.held:
            parts.append(f"not requested again, the last run failed terminally (fix the file): {_few(self.held)}")
        if self.unreadable_files:
            parts.append(f"cannot be read now, looking again next tick: {_few(self.unreadable_files)}")
        if self.invalid_keys:
            parts.append(f"catalog id cannot be a partition key, rename the file: {_few(self.invalid_keys)}")
        if self.removal_blocked:
            parts.append(self.removal_blocked)
        return "; ".join(parts)


def _few(items: list[str], limit: int = 10) -> str:
    items = sorted(items)
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def in_flight_catalogs(instance) -> set[str]:
    """Catalogs with a sync, reindex or removal run queued or running."""
    found: set[str] = set()
    for run in instance.get_runs(RunsFilter(statuses=_LAUNCHED)):
        if run.job_name in _WRITING_JOBS:
            catalog_id = run.tags.get(CATALOG_TAG) or run.tags.get(PARTITION_TAG)
            if catalog_id:
                found.add(catalog_id)
    return found


def _record_outcomes(context, state: SensorState, now: float) -> None:
    """Fold in the outcome of every request the sensor made whose run has finished.

    Each request is found by the tag its run carries (`REQUEST_TAG`, the request's run key), not
    by when the run storage says it changed: a run's outcome may be stored after a later run's (its
    timestamps come from its own process), and a cursor may be set by hand. An outcome is folded
    once: the row then forgets the request. A request whose run does not exist yet (the daemon
    creates runs after the tick) stays outstanding and is made again, under the same run key."""
    outstanding = state.outstanding()
    if not outstanding:
        return
    keys = sorted(outstanding)
    records = []
    for start in range(0, len(keys), 500):
        records.extend(
            context.instance.get_run_records(
                RunsFilter(tags={REQUEST_TAG: keys[start : start + 500]}, statuses=_FINISHED), ascending=True
            )
        )
    for record in records:
        run = record.dagster_run
        key = run.tags.get(REQUEST_TAG, "")
        row = state.get(outstanding.get(key, ""))
        if row is None or row.requested != key:
            continue  # folded already (two runs of one request: the first outcome counts)
        row.requested = None
        if run.tags.get(FINGERPRINT_TAG) != row.fingerprint:
            continue  # a run of an older version of the catalog: the record says what it left
        if run.status == DagsterRunStatus.SUCCESS:
            row.done, row.attempts, row.next_at, row.held, row.held_reason = row.fingerprint, 0, None, None, None
            continue
        transient, kind, refused = True, "canceled", False
        if run.status == DagsterRunStatus.FAILURE:
            failures = run_step_failures(context.instance, run.run_id)
            transient, kind = classify_failure(failures)
            refused = _refused(failures)
        if not transient and not refused:
            # Terminal for that run, not for the file: a stale parse (the file moved away and back)
            # is requested again at once; a lost lock or a configuration error with the usual
            # backoff (a person may fix the configuration meanwhile).
            transient = True
        if kind == "StaleSource":
            # The file is fine: ask again on this very tick, under a new run key (the daemon never
            # launches a key that already has a run).
            row.generation, row.attempts, row.next_at = row.generation + 1, 0, now
            context.log.info(f"{row.catalog_id}: run {run.run_id} parsed a version that was replaced; requesting it again")
        elif transient:
            row.attempts += 1
            # The backoff counts from the failure, not from the tick that noticed it (a clock ahead
            # of ours counts as now).
            ended = min(now, record.end_time or record.update_timestamp.timestamp())
            row.next_at = ended + min(RETRY_MAX_S, RETRY_BASE_S * 2 ** min(row.attempts - 1, 16))
            context.log.warning(
                f"{row.catalog_id}: run {run.run_id} failed ({kind}); requesting it again in "
                f"{max(0.0, row.next_at - now):.0f}s (attempt {row.attempts + 1})"
            )
        else:
            row.held, row.held_reason = row.fingerprint, f"run {run.run_id} failed: {kind}"
            context.log.error(
                f"{row.catalog_id}: run {run.run_id} failed terminally ({kind}); not requested again until its file changes"
            )


def _relative(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _full_stamp(
    file: CatalogFile,
    own: str | None,
    fmt: str | None,
    companions: list[str],
    scan: FolderScan,
    companion_formats: set[str],
    regime: str,
) -> str | None:
    """The cache key of a file's digest: its stamp, its companions' stamps, for formats that read
    companions the stamp of its folder (a companion appearing changes the folder), the files its
    format's context looks at, and the regime (`_regime`). A plain file's is `own|regime`."""
    if own is None or own.startswith("unstatable"):
        return None
    parts = [own]
    for relative in companions:
        parts.append(scan.stamp_of(scan.root / relative, relative) or "missing")
    watches = _watchers().get(fmt or "")
    if watches is not None:  # e.g. the manifest beside a dbt catalog.json, rewritten in place
        for path in watches(file.path):
            relative = _relative(scan.root, path)
            parts.append("watch:" + (scan.stamp_of(path, relative) or "missing"))
    parts.append(regime)
    if fmt in companion_formats:
        folder = _relative(scan.root, file.path.parent)
        parts.append("dir:" + scan.dir_stamps.get("" if folder == "." else folder, "?"))
    return "|".join(parts)


def _hash(file: CatalogFile, scan: FolderScan, companion_formats: set[str], regime: str) -> FileState:
    """Digest, format and companions of one file; raises OSError when it cannot be read now."""
    own = scan.stamp_of(file.path, file.display)  # taken before reading: a write after it shows next tick
    if file.error is not None:
        fmt = "refused"
    else:
        try:
            fmt = choose(file.root, file.path, file.display).name
        except CatalogError:
            fmt = "unresolved"
    try:
        companions = [_relative(scan.root, p) for p in source_files(file)[1:]]
    except CatalogError:
        companions = []
    digest = source_digest(file)  # OSError propagates: unreadable now
    stamp = _full_stamp(file, own, fmt, companions, scan, companion_formats, regime)
    return FileState(file.catalog_id, stamp, digest, fmt, companions, fingerprint="")


# Advanced whenever what `source_digest` covers changes (2: a parse's circumstances), so every file
# is described again once after an upgrade instead of keeping a digest computed the old way.
DIGEST_VERSION = "2"


def _regime(root: Path) -> str:
    """What every file's description depends on besides its own files: the digest version and the
    .dq-formats.yaml text. Part of each row's stamp, so a row is described again once it changes:
    per row, whenever that file is next readable (never a flag for the whole folder, which one
    unreadable file would hold up for every file)."""
    return "regime:" + hashlib.sha256(f"{DIGEST_VERSION}\0{_read_overrides(root)}".encode()).hexdigest()[:16]


def _merge(prev: FileState | None, now: FileState, first_generation: int) -> FileState:
    """This tick's state row: the new description, with the outcome bookkeeping kept while the
    catalog is the same version (fingerprint), and fresh bookkeeping (next generation) once not."""
    if prev is None:  # a catalog first seen (or seen again after it was forgotten): a generation of its own
        return FileState(now.catalog_id, now.stamp, now.digest, now.format, now.companions, now.fingerprint, first_generation)
    if prev.fingerprint == now.fingerprint:
        prev.stamp, prev.digest, prev.format, prev.companions = now.stamp, now.digest, now.format, now.companions
        return prev
    return FileState(
        now.catalog_id, now.stamp, now.digest, now.format, now.companions, now.fingerprint, generation=prev.generation + 1
    )


def _needs_sync(row: FileState, committed: dict[str, str | None], first_sight: bool) -> bool:
    """Whether the committed state of a catalog is behind its file."""
    recorded = committed.get(row.catalog_id)
    if recorded != row.digest:  # another version, or none at all (the record lost it: restored, wiped)
        if row.done == row.fingerprint:  # a run succeeded, yet the record holds another version
            row.generation, row.done = row.generation + 1, None
        return True
    if row.done == row.fingerprint:
        return False
    if recorded is not None and row.done is None and first_sight:
        row.done = row.fingerprint  # first sight of a catalog the record already holds at this version
        return False
    return True


def clock() -> float:
    """Now, in epoch seconds (the retry backoff's clock; tests move it)."""
    return time.time()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a tick builds and drops its few hundred thousand objects
    (it spent ~40% of a tick at 100,000 files in collections that find nothing); reference counting
    still frees everything, and the collector is enabled again after, if it was enabled before."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def evaluate_folder(context, folder: Path, engine) -> SensorResult | SkipReason:
    """One tick of the catalog folder sensor (see the module docstring)."""
    with _collector_paused():
        return _evaluate_folder(context, folder, engine)


def _evaluate_folder(context, folder: Path, engine) -> SensorResult | SkipReason:
    now = clock()
    try:
        scan = scan_folder(folder)
    except FileNotFoundError:
        # A missing (e.g. unmounted) folder is not "every catalog removed": do nothing.
        return SkipReason(f"catalog folder {folder} does not exist; removing nothing")
    files = discover_scanned(scan)  # discovery's files and refusals, from this one walk
    seq = read_cursor(context.cursor)
    state = SensorState(engine)
    committed = committed_source_digests(engine)
    _record_outcomes(context, state, now)
    launched = in_flight_catalogs(context.instance)
    partitions = set(context.instance.get_dynamic_partitions(catalog_partitions.name))
    report = TickReport(watched=len(files))
    companion_formats = _formats_with_companions()
    regime = _regime(scan.root)
    plain_suffix = "|" + regime

    # 1. What each present file is now; hash only files whose stamp (or a companion's) changed. At
    # 100,000 files nearly all are unchanged: a stored row with no companions (and of a format that
    # reads none) whose stamp still holds is `plain`, left as the stored tuple; an unchanged file
    # with companions is `same`: `current` holds its state row.
    stamps = scan.stamps
    stored_rows = state.untouched()
    current: dict[str, FileState] = {}
    same: set[str] = set()
    plain: dict[str, tuple] = {}  # catalog id -> its stored row (`_COLUMNS`), unchanged so far
    for catalog_id, entry in files.entries():
        display = entry if type(entry) is str else entry.display
        stored = stored_rows.get(catalog_id)
        if (
            stored is not None
            and stored[4] is None  # no companions
            and stored[1] is not None
            and stored[3] not in companion_formats
        ):
            own = stamps.get(display) or scan.stamp_of(files[catalog_id].path, display)
            if own is not None and own + plain_suffix == stored[1] and not own.startswith("unstatable"):  # = _full_stamp(...) == prev.stamp
                plain[catalog_id] = stored
                continue
        file = files[catalog_id]
        prev = state.get(catalog_id)
        if prev is not None and prev.stamp is not None:
            own = stamps.get(display) or scan.stamp_of(file.path, display)
            stamp = _full_stamp(file, own, prev.format, prev.companions, scan, companion_formats, regime)
            if stamp == prev.stamp:
                current[catalog_id] = prev
                same.add(catalog_id)
                continue
        try:
            current[catalog_id] = _hash(file, scan, companion_formats, regime)
            report.hashed += 1
        except OSError as exc:
            # Present but unreadable now: neither synced nor removed; its state row stays as it was.
            report.unreadable_files.append(f"{display} ({type(exc).__name__})")

    # 2. Fingerprints: digest, format, and the catalogs that read this file as a companion.
    parents: dict[str, set[str]] = {}
    with_companions = [(cid, described.companions) for cid, described in current.items() if described.companions]
    if with_companions:
        by_path = {display: cid for cid, display in files.displays()}  # display: the path relative to the folder
        for catalog_id, companions in with_companions:
            for relative in companions:
                other = by_path.get(relative)
                if other is not None and other != catalog_id:
                    parents.setdefault(other, set()).add(catalog_id)
    for catalog_id, described in current.items():
        value = fingerprint(described.digest, described.format, parents.get(catalog_id, ()))
        if catalog_id in same:
            if value == described.fingerprint:
                continue  # the row is this tick's description as it stands (merging it would change nothing)
            same.discard(catalog_id)  # the catalogs reading it as a companion changed: a new version
            described = current[catalog_id] = FileState(
                catalog_id, described.stamp, described.digest, described.format, described.companions, ""
            )
        described.fingerprint = value

    # 3. Which present catalogs are behind their file (each list in catalog id order in the end). A
    # plain row whose fingerprint still holds is behind only when the record or the last run says so.
    to_add: list[str] = []
    wanted: list[str] = []
    invalid: list[str] = []
    moved: list[FileState] = []  # plain, but now read as a companion by another catalog (or no longer)
    for catalog_id, stored in plain.items():
        value = fingerprint(stored[2], stored[3], parents.get(catalog_id, ()))
        if value != stored[5]:
            moved.append(FileState(catalog_id, stored[1], stored[2], stored[3], [], value))
            continue
        if not _valid_partition_key(catalog_id):
            invalid.append(catalog_id)
            continue
        if catalog_id not in partitions:
            to_add.append(catalog_id)
        recorded = committed.get(catalog_id)
        if recorded == stored[2] and stored[7] == stored[5]:
            continue  # = not _needs_sync(row, ...), which then changes nothing
        if _needs_sync(state.get(catalog_id), committed, first_sight=False):
            wanted.append(catalog_id)
    for described in moved:
        del plain[described.catalog_id]
        current[described.catalog_id] = described
    for catalog_id, described in current.items():
        prev = state.get(catalog_id)
        if catalog_id in same:
            row = prev
        else:
            row = _merge(prev, described, int(now))
            state.put(row)
        if not _valid_partition_key(catalog_id):
            invalid.append(catalog_id)
            continue
        if catalog_id not in partitions:
            to_add.append(catalog_id)
        if _needs_sync(row, committed, first_sight=prev is None):
            wanted.append(catalog_id)
    to_add.sort()
    wanted.sort()
    report.invalid_keys.extend(files.display(catalog_id) for catalog_id in sorted(invalid))

    # 4. Recorded catalogs with no file: removal needs positive evidence, and not too many at once.
    gone = sorted(files.absent(committed))
    evident = [cid for cid in gone if scan.absent_for_sure(cid)]
    if not scan.root_readable():
        report.removal_blocked = f"catalog folder {folder} cannot be read ({scan.unreadable_summary()}): removing nothing"
        evident = []
    elif not files and committed:
        report.removal_blocked = (
            f"catalog folder {folder} is empty but {len(committed)} catalogs are recorded (an unmounted volume?): "
            "removing nothing; if intended, run remove_catalog for each"
        )
        evident = []
    elif len(evident) < len(gone):
        context.log.warning(
            f"{len(gone) - len(evident)} recorded catalogs have no file in a folder that could not be read "
            f"({scan.unreadable_summary()}): not removed"
        )
    share = setting_value(MAX_REMOVAL_SHARE_ENV)
    allowed = max(1, math.floor(share * len(committed)))
    if len(evident) > allowed:
        report.removal_blocked = (
            f"bulk removal held back: {len(evident)} of {len(committed)} recorded catalogs have no file "
            f"(at most {allowed} per tick, {MAX_REMOVAL_SHARE_ENV}={share}): {_few(evident)}. Nothing was removed; "
            f"if intended, raise {MAX_REMOVAL_SHARE_ENV} or run remove_catalog for each"
        )
        context.log.error(report.removal_blocked)
        evident = []
    for catalog_id in evident:
        row = _merge(state.get(catalog_id), FileState(catalog_id, None, ABSENT, None, [], ABSENT_FINGERPRINT), int(now))
        state.put(row)
        if row.done == row.fingerprint:  # a removal succeeded, yet the record holds the catalog again
            row.generation, row.done = row.generation + 1, None
        wanted.append(catalog_id)

    # 5. Requests, unless a run of the catalog is in flight, it is backing off, or it failed terminally.
    seq += 1
    max_runs = setting_value(MAX_RUNS_ENV)
    run_requests: list[RunRequest] = []
    for catalog_id in wanted:
        row = state.get(catalog_id)
        if catalog_id in launched or (row.next_at is not None and row.next_at > now):
            report.waiting.append(catalog_id)
            continue
        if row.held == row.fingerprint:
            report.held.append(catalog_id)
            continue
        if len(run_requests) >= max_runs:
            report.deferred += 1
            continue
        # The run key names the version and the attempt: a repeated tick requests nothing twice; a
        # retry after a failure, or content changed back to an earlier version, is a new run.
        key = f"{catalog_id}:{row.fingerprint[:16]}@{row.generation}.{row.attempts}"
        row.requested = key
        tags = {CATALOG_TAG: catalog_id, TRIGGER_TAG: FOLDER_SENSOR, FINGERPRINT_TAG: row.fingerprint, REQUEST_TAG: key}
        if row.fingerprint == ABSENT_FINGERPRINT:
            report.removals.append(catalog_id)
            run_requests.append(
                RunRequest(
                    job_name=REMOVE_JOB,
                    run_key="remove:" + key,
                    run_config={"ops": {"remove_catalog_data": {"config": {"catalog_id": catalog_id}}}},
                    tags=tags,
                )
            )
        else:
            if files[catalog_id].error is not None:
                context.log.warning(f"{files[catalog_id].display}: refused ({files[catalog_id].error}); its run will fail")
            report.syncs.append(catalog_id)
            run_requests.append(RunRequest(job_name=SYNC_JOB, partition_key=catalog_id, run_key=key, tags=tags))

    # 6. Forget catalogs gone from the folder and from the record: their state row, and their
    # partition once no run of it is in flight (a queued run never loses its partition).
    to_delete: list[str] = []
    if report.removal_blocked is None and scan.root_readable():
        stale = files.absent(partitions) | files.absent(state.ids())
        forgotten = {cid for cid in stale if cid not in committed and cid not in launched}
        for catalog_id in sorted(forgotten):
            if scan.absent_for_sure(catalog_id):
                if catalog_id in partitions:
                    to_delete.append(catalog_id)
                state.drop([catalog_id])

    state.save()
    for line in sorted(report.unreadable_files):
        context.log.warning(f"{line}: cannot be read now; looking again next tick")
    for display in report.invalid_keys:
        context.log.error(f"{display}: its catalog id cannot be a partition key; rename the file")
    partition_requests = []
    if to_add:
        partition_requests.append(catalog_partitions.build_add_request(to_add))
    if to_delete:
        partition_requests.append(catalog_partitions.build_delete_request(to_delete))
    message = report.message()
    cursor = write_cursor(seq)
    if not run_requests and not partition_requests:
        return SensorResult(skip_reason=SkipReason(message), cursor=cursor)
    context.log.info(message)
    return SensorResult(run_requests=run_requests, dynamic_partitions_requests=partition_requests, cursor=cursor)


@sensor(
    name="catalog_folder_sensor",
    jobs=[sync_catalog_job, remove_catalog_job],
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Keeps the system of record level with the catalog folder: a catalog whose file (sha256 of it "
    "and its companions, and its format) differs from what is committed gets a sync_catalog run; a recorded "
    "catalog whose file is gone gets a remove_catalog run; a failed run is requested again with backoff (a "
    "terminal failure waits for the file to change). Removal needs the folder read and listed: an unreadable "
    f"or empty folder removes nothing, and a bulk removal beyond {MAX_REMOVAL_SHARE_ENV} "
    f"(default {DEFAULT_MAX_REMOVAL_SHARE}) of the catalogs is held back.",
)
def catalog_folder_sensor(context: SensorEvaluationContext, catalog_folder: CatalogFolder, store: SyncedStoreResource):
    with store.record() as engine:
        return evaluate_folder(context, catalog_folder.path(), engine)


# --- failed runs --------------------------------------------------------------------------------


def recent_auto_repairs(instance, catalog_id: str, now: datetime | None = None) -> int:
    """Automatic repair runs of this catalog created within the window (any status)."""
    since = (now or datetime.now(UTC)) - AUTO_REPAIR_WINDOW
    runs_filter = RunsFilter(
        job_name=REPAIR_JOB, tags={CATALOG_TAG: catalog_id, TRIGGER_TAG: AUTO_REPAIR}, created_after=since
    )
    return instance.get_runs_count(runs_filter)


def repair_request(catalog_id: str, failed_run_id: str, batch: bool = False) -> RunRequest:
    return RunRequest(
        # One repair per failed run (per failed catalog of a batch run), however often the sensor sees it.
        run_key=f"{failed_run_id}:{catalog_id}" if batch else failed_run_id,
        run_config={"ops": {"repair_catalogs": {"config": {"catalog_ids": [catalog_id]}}}},
        tags={CATALOG_TAG: catalog_id, TRIGGER_TAG: AUTO_REPAIR, "dq/failed_run": failed_run_id},
    )


@run_failure_sensor(
    name="auto_repair_sensor",
    monitored_jobs=[sync_catalog_job, sync_catalogs_batch_job, reindex_catalog_job, remove_catalog_job],
    request_job=repair_catalog_job,
    default_status=DefaultSensorStatus.RUNNING,
    description=f"When a sync, reindex or removal run fails for a transient reason (a store unreachable, a "
    f"failed blocking ID-set check), launches repair_catalog for its catalog, at most {MAX_AUTO_REPAIRS} times "
    f"per catalog in {int(AUTO_REPAIR_WINDOW.total_seconds() // 3600)}h. A terminal failure (refused input, "
    "configuration, lost lock) is not repaired. The catalog sensor requests the failed sync itself again. A "
    "sync_catalogs_batch run is repaired catalog by catalog, for each catalog its failure names.",
)
def auto_repair_sensor(context: RunFailureSensorContext):
    run = context.dagster_run
    if run.job_name == BATCH_JOB:
        return _repair_batch(context, batch_run_failures(context.instance, run.run_id, context.get_step_failure_events()))
    catalog_id = run.tags.get(PARTITION_TAG) or run.tags.get(CATALOG_TAG)
    if not catalog_id:
        return SkipReason(f"run {run.run_id} of {run.job_name} names no catalog; nothing to repair")

    transient, kind = classify_failure(context.get_step_failure_events())
    if not transient:
        message = (
            f"{catalog_id}: run {run.run_id} failed terminally ({kind}); repair cannot fix that: "
            "fix the file or the configuration named in the run's error"
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

    context.log.info(f"{catalog_id}: run {run.run_id} failed ({kind}); requesting repair")
    return repair_request(catalog_id, run.run_id)


def _repair_batch(context: RunFailureSensorContext, failures: dict[str, dict[str, Any]]):
    """A batch run names each catalog that failed and how: the same rules as for a catalog's own
    run, applied to each (terminal: not repaired; at most MAX_AUTO_REPAIRS in the window)."""
    run = context.dagster_run
    if not failures:
        # The step failed before any catalog (the stores could not be opened): no catalog started
        # a write, so none has anything to repair.
        message = f"run {run.run_id} of {run.job_name} failed before syncing any catalog; nothing to repair"
        context.log.info(message)
        return SkipReason(message)
    requests: list[RunRequest] = []
    notes: list[str] = []
    for catalog_id, failure in sorted(failures.items()):
        if failure.get("refused") or not failure.get("transient", True):
            notes.append(f"{catalog_id}: terminal ({failure.get('error_kind')}), not repaired")
            continue
        attempts = recent_auto_repairs(context.instance, catalog_id)
        if attempts >= MAX_AUTO_REPAIRS:
            notes.append(f"{catalog_id}: auto-repair bound reached ({attempts} in the window), NOT repaired")
            context.log.error(f"auto-repair bound reached for catalog {catalog_id}; run {run.run_id} failed again and is NOT repaired automatically")
            continue
        requests.append(repair_request(catalog_id, run.run_id, batch=True))
    for note in notes:
        context.log.info(note)
    if not requests:
        return SkipReason(f"run {run.run_id}: " + "; ".join(notes))
    context.log.info(f"run {run.run_id} failed for {len(failures)} catalogs; requesting repair of {', '.join(r.tags[CATALOG_TAG] for r in requests)}")
    return requests
