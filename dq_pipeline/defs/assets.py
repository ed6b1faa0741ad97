"""Per-catalog assets: parse -> embed what changed -> write both stores through the protocol.

The ID-set check runs inside the writing step as a blocking check, so a catalog whose stores
disagree after its write fails the run (docs/DESIGN.md, "Dagster facts": a partitioned check cannot run alone).
"""


import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Backoff,
    Config,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
)
from pydantic import Field
from sqlalchemy import Engine

from ..catalog import ABSENT, ParsedCatalog, current_source_digest, read_catalog, validate_catalog_id
from ..embedding import LazyEmbedder
from ..errors import RefusedInput, error_kind, is_transient, one_line, redact
from ..results import SyncCounts
from ..sync import (
    CatalogVerification,
    Source,
    SyncedStore,
    SyncResult,
    new_contents,
    rebatched,
    refusals,
    stored_dimension,
    stored_hashes,
    vector_cache,
)
from .io import ENTRIES_IO_MANAGER
from .partitions import QDRANT_POOL, catalog_partitions
from .resources import CatalogFolder, EmbedderResource, SyncedStoreResource

GROUP = "catalog_index"
IDS_MATCH = "ids_match"
OWNERS = ["team:data-platform"]

# Transient errors (a store briefly unreachable, the embedded store busy, a lock held too long) are
# retried with exponential backoff. A retry never double-applies: every sync, repair and removal is
# idempotent (content-addressed point ids, plans computed from what is committed) and first
# finishes whatever the journal holds for its catalog under the catalog lock. Terminal errors
# (refused input, configuration, a lost lock, a stale parse) fail at once: `step_failure` turns
# each error into a Failure whose `allow_retries` and metadata come from its class (errors.py).
TRANSIENT_RETRY = RetryPolicy(max_retries=3, delay=1, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)

PARSE_STEP = "catalog_entries"
REFUSED = "dq/refused"
ERROR_KIND = "dq/error_kind"
TRANSIENT = "dq/transient"


def failure_facts(exc: BaseException) -> dict[str, Any]:
    """What the sensors and alerts read of an error: its kind, transient or not, refused input or
    not, and its message (a refusal keeps every line: each names a file, a record and a reason,
    bounded in CatalogError; anything else one redacted line)."""
    refused = isinstance(exc, RefusedInput)
    return {
        "error_kind": error_kind(exc),
        "transient": is_transient(exc),
        "refused": refused,
        "error": redact(str(exc)) if refused else one_line(exc),
    }


def step_failure(exc: BaseException, **metadata: Any) -> Failure:
    """The one translation of an error into a step failure: retried only if transient, its class
    recorded for the auto-repair sensor and alerts."""
    facts = failure_facts(exc)
    return Failure(
        description=facts["error"],
        metadata={ERROR_KIND: facts["error_kind"], TRANSIENT: facts["transient"], REFUSED: facts["refused"], **metadata},
        allow_retries=facts["transient"],
    )


def failure_text(event: Any) -> str | None:
    """What a STEP_FAILURE event says went wrong: the description `step_failure` gave it (a refusal
    keeps every line), else the first line of the error past Dagster's retry wrapper ("Exceeded
    max_retries"), its class without the module path; None for an event with neither."""
    data = event.step_failure_data
    if data is None:
        return None
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    error = data.error
    if error is None:
        return None
    while error.cause is not None and (error.cls_name == "RetryRequestedFromPolicy" or error.message.startswith("Exceeded max_retries")):
        error = error.cause
    lines = error.message.strip().splitlines()
    line = lines[0] if lines else error.cls_name or "step failed"
    head, sep, rest = line.partition(": ")
    if sep and "." in head and " " not in head:  # "package.module.SomeError: text" -> "SomeError: text"
        line = f"{head.rsplit('.', 1)[1]}: {rest}"
    return line


class SyncConfig(Config):
    force: bool = Field(default=False, description="Re-embed and rewrite every entry (force reindex).")


# --- the work of each step, shared with the batched nightly job (defs/batch.py) ----------------------
# Each function raises the error itself, not a Failure: a step turns it into its step failure, the
# batch into that catalog's line of its report.


def parse_catalog(folder: Path, catalog_id: str, open_record: Callable[[], Any]) -> tuple[ParsedCatalog, dict[str, Any]]:
    """The catalog file parsed into its entry spool, and the parse step's metadata. A refusal is
    recorded (shown by status/verify until the catalog syncs) before it is raised."""
    started = time.perf_counter()
    try:
        validate_catalog_id(catalog_id)
    except ValueError as exc:  # an impossible catalog id: refused like bad input
        raise RefusedInput(str(exc)) from None
    try:
        parsed = read_catalog(folder, catalog_id)
    except Exception as exc:
        refusals.record_refusal(open_record, catalog_id, folder, exc)
        raise
    metadata = {
        "entries": len(parsed.entries),
        "by_kind": MetadataValue.json(parsed.entries.kinds()),
        "parse_seconds": round(time.perf_counter() - started, 3),
        "file_present": parsed.source_digest != ABSENT,
        "source_digest": parsed.source_digest,
        "warnings": len(parsed.warnings),
        **({"warning_list": MetadataValue.json([str(w) for w in parsed.warnings[:50]])} if parsed.warnings else {}),
    }
    return parsed, metadata


def parse_failure(exc: BaseException) -> Failure:
    """A parse error as a step failure; a refusal also names its file and how many problems it has."""
    extra = {"file": exc.path, "problems": getattr(exc, "count", len(exc.problems))} if hasattr(exc, "problems") else {}  # type: ignore[attr-defined]
    return step_failure(exc, **extra)


def embed_new(
    engine: Engine, catalog_id: str, parsed: ParsedCatalog, embedder: EmbedderResource, force: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Embed the entries whose content (or model) the record does not hold yet into the vector cache;
    returns what the write needs (`model_id`, `dimension`, `embedded`) and the embedding step's metadata."""
    started = time.perf_counter()
    embedded = cached = todo = 0
    model_id = embedder.model_id()
    model = None
    dimension = stored_dimension(engine, model_id)
    known = () if force else stored_hashes(engine, catalog_id, model_id)

    def not_cached():
        nonlocal todo, cached
        for part in new_contents(parsed.entries, known):
            todo += len(part)
            left = vector_cache.cached_hashes(engine, model_id, [h for h, _ in part])  # by an earlier attempt
            cached += len(left)
            yield [(h, t) for h, t in part if h not in left]

    for texts in rebatched(not_cached(), CACHE_CHUNK):
        model = model or embedder.load()
        vector_cache.put(engine, model_id, [h for h, _ in texts], model.embed([t for _, t in texts]))
        embedded += len(texts)
    if dimension is None:
        dimension = embedder.dimension(model)  # an empty or wholly cached catalog need not load the model
    metadata = {
        "embedded": embedded,
        "already_cached": cached,
        "skipped_unchanged": len(parsed.entries) - todo,
        "embed_seconds": round(time.perf_counter() - started, 3),
        "model": model_id,
        "dimension": dimension,
    }
    return {"model_id": model_id, "dimension": dimension, "embedded": embedded}, metadata


CACHE_CHUNK = 4096  # texts embedded and cached per round: bounds the step's memory


def write_catalog(
    synced: SyncedStore,
    catalog_id: str,
    parsed: ParsedCatalog,
    embeddings: dict[str, Any],
    folder: Path,
    embedder: EmbedderResource,
    force: bool,
) -> tuple[SyncResult, CatalogVerification]:
    """The catalog written to both stores through the protocol and verified; clears its refusal."""
    lazy = LazyEmbedder(embedder.model_name(), embeddings["model_id"], embeddings["dimension"], embedder.batch_size, embedder.backend_name())
    source = Source(parsed.source_digest, lambda: current_source_digest(folder, catalog_id))
    result = synced.sync(catalog_id, parsed.entries, lazy, force=force, source=source, use_vector_cache=True)
    verification = synced.verify(catalog_id)
    refusals.record_sync(synced.engine, catalog_id, folder, parsed)  # clears its refusal, keeps its warnings
    return result, verification


def index_metadata(result: SyncResult, parsed: ParsedCatalog, embeddings: dict[str, Any], database: str) -> dict[str, Any]:
    """The write step's metadata; the sync counts under the names `sync --json` reads back (results.py)."""
    mirrored = result.standby
    counts = SyncCounts(
        inserted=result.inserted,
        updated=result.updated,
        deleted=result.deleted,
        unchanged=result.unchanged,
        embedded=embeddings["embedded"] + result.embedded + (mirrored.embedded if mirrored else 0),
    )
    return {
        **counts.to_dict(),
        "entries": result.inserted + result.updated + result.unchanged,
        "retired_points": result.retired_points,
        "recovered_journal_rows": result.recovered_journal_rows,
        "model": result.model,
        "collection": result.collection,
        "database": database,
        "source_digest": parsed.source_digest,
        "warnings": len(parsed.warnings),
        **{f"{name}": seconds for name, seconds in result.durations.items()},
        # While a standby model is built (sync/write/model_roles.py): what this run did to its rows.
        **({"standby_model": mirrored.model, "standby_written": mirrored.written} if mirrored else {}),
        **({"standby_error": result.standby_error} if result.standby_error else {}),
    }


# --- the assets ---------------------------------------------------------------------------------


@asset(
    partitions_def=catalog_partitions,
    group_name=GROUP,
    kinds={"python"},
    owners=OWNERS,
    tags={"stage": "parse"},
    retry_policy=TRANSIENT_RETRY,
    io_manager_key=ENTRIES_IO_MANAGER,  # the entries stay on disk between steps (defs/io.py)
    description="The catalog file parsed and validated into entries, with the digest of the bytes they came from. "
    "A file that fails validation is refused whole with file, record and reason (I6); a removed file yields no "
    "entries, which removes the catalog.",
)
def catalog_entries(context: AssetExecutionContext, catalog_folder: CatalogFolder, store: SyncedStoreResource) -> ParsedCatalog:
    try:
        parsed, metadata = parse_catalog(catalog_folder.path(), context.partition_key, store.record)
    except Exception as exc:
        raise parse_failure(exc) from None
    context.add_output_metadata(metadata)
    return parsed


@asset(
    partitions_def=catalog_partitions,
    group_name=GROUP,
    kinds={"python", "pytorch"},
    owners=OWNERS,
    tags={"stage": "embed"},
    retry_policy=TRANSIENT_RETRY,
    description="Vectors for the entries whose content (or model) is not yet in the system of record, left in the "
    "record's vector cache a chunk at a time for the write step; unchanged entries are never re-embedded (I4).",
)
def catalog_embeddings(
    context: AssetExecutionContext,
    config: SyncConfig,
    catalog_entries: ParsedCatalog,
    embedder: EmbedderResource,
    store: SyncedStoreResource,
) -> dict[str, Any]:
    try:
        with store.record() as engine:
            embeddings, metadata = embed_new(engine, context.partition_key, catalog_entries, embedder, config.force)
    except Exception as exc:
        raise step_failure(exc) from exc
    finally:
        catalog_entries.entries.close()  # this step's handle only (see catalog_index)
    context.add_output_metadata(metadata)
    return embeddings


@asset(
    partitions_def=catalog_partitions,
    group_name=GROUP,
    kinds={"postgres", "qdrant"},
    owners=OWNERS,
    tags={"stage": "index"},
    pool=QDRANT_POOL,
    retry_policy=TRANSIENT_RETRY,
    check_specs=[
        AssetCheckSpec(
            IDS_MATCH,
            asset="catalog_index",
            blocking=True,
            description="After the write, PostgreSQL and Qdrant hold the same point ids with matching payloads "
            "and vector digests for this catalog, and no journal row is left.",
        )
    ],
    description="The catalog written to PostgreSQL (system of record) and Qdrant (search index) through the "
    "journaled protocol: all or nothing per catalog, nothing lost on failure, never an older parse over a newer one.",
)
def catalog_index(
    context: AssetExecutionContext,
    config: SyncConfig,
    catalog_entries: ParsedCatalog,
    catalog_embeddings: dict[str, Any],
    catalog_folder: CatalogFolder,
    embedder: EmbedderResource,
    store: SyncedStoreResource,
) -> MaterializeResult:
    try:
        # The step's own handle on the entries is closed with it: its page caches are not held while
        # the run's other steps go on (an in-process run keeps every step's inputs alive).
        with catalog_entries.entries, store.open() as synced:
            result, verification = write_catalog(
                synced, context.partition_key, catalog_entries, catalog_embeddings, catalog_folder.path(), embedder, config.force
            )
    except Exception as exc:
        raise step_failure(exc) from exc
    if result.retire_error:
        context.log.warning(result.retire_error)
    if result.standby_error:
        context.log.warning(result.standby_error)
    metadata = index_metadata(result, catalog_entries, catalog_embeddings, store.label())
    return MaterializeResult(metadata=metadata, check_results=[ids_match_result(verification)])


def ids_match_result(v: CatalogVerification) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=IDS_MATCH,
        passed=v.in_sync,
        severity=AssetCheckSeverity.ERROR,
        metadata={**v.counts(), **({"samples": MetadataValue.json(v.samples)} if v.samples else {})},
        description=None if v.in_sync else f"{v.catalog_id}: stores disagree ({v.counts()})",
    )
