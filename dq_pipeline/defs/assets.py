"""Per-catalog assets: parse -> embed what changed -> write both stores through the protocol.

The ID-set check runs inside the writing step as a blocking check, so a catalog whose stores
disagree after its write fails the run (docs/DESIGN.md, "Dagster facts": a partitioned check cannot run alone).
"""


import time
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

from ..catalog import ABSENT, ParsedCatalog, current_source_digest, read_catalog, validate_catalog_id
from ..embedding import LazyEmbedder
from ..errors import RefusedInput, error_kind, is_transient, one_line, redact
from ..results import SyncCounts
from ..sync import (
    CatalogVerification,
    Source,
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


def step_failure(exc: BaseException, **metadata: Any) -> Failure:
    """The one translation of an error into a step failure: one redacted line, retried only if
    transient, and its class recorded for the auto-repair sensor and alerts."""
    transient = is_transient(exc)
    refused = isinstance(exc, RefusedInput)
    return Failure(
        # A refusal keeps every line: each names a file, a record and a reason (bounded in CatalogError).
        description=redact(str(exc)) if refused else one_line(exc),
        metadata={ERROR_KIND: error_kind(exc), TRANSIENT: transient, REFUSED: refused, **metadata},
        allow_retries=transient,
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
    catalog_id = context.partition_key
    started = time.perf_counter()
    try:
        validate_catalog_id(catalog_id)
    except ValueError as exc:  # an impossible catalog id: refused like bad input
        raise step_failure(RefusedInput(str(exc))) from None
    try:
        parsed = read_catalog(catalog_folder.path(), catalog_id)
    except Exception as exc:
        refusals.record_refusal(store.record, catalog_id, catalog_folder.path(), exc)  # shown by status/verify until it syncs
        extra = {"file": exc.path, "problems": getattr(exc, "count", len(exc.problems))} if hasattr(exc, "problems") else {}
        raise step_failure(exc, **extra) from None
    kinds = parsed.entries.kinds()
    context.add_output_metadata(
        {
            "entries": len(parsed.entries),
            "by_kind": MetadataValue.json(kinds),
            "parse_seconds": round(time.perf_counter() - started, 3),
            "file_present": parsed.source_digest != ABSENT,
            "source_digest": parsed.source_digest,
            "warnings": len(parsed.warnings),
            **({"warning_list": MetadataValue.json([str(w) for w in parsed.warnings[:50]])} if parsed.warnings else {}),
        }
    )
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
    started = time.perf_counter()
    embedded = cached = todo = 0
    entries = len(catalog_entries.entries)
    try:
        model_id = embedder.model_id()
        model = None
        with store.record() as engine:
            dimension = stored_dimension(engine, model_id)
            known = () if config.force else stored_hashes(engine, context.partition_key, model_id)

            def not_cached():
                nonlocal todo, cached
                for part in new_contents(catalog_entries.entries, known):
                    todo += len(part)
                    left = vector_cache.cached_hashes(engine, model_id, [h for h, _ in part])  # by an earlier attempt
                    cached += len(left)
                    yield [(h, t) for h, t in part if h not in left]

            for texts in rebatched(not_cached(), CACHE_CHUNK):
                model = model or embedder.load()
                vector_cache.put(engine, model_id, [h for h, _ in texts], model.embed([t for _, t in texts]))
                embedded += len(texts)
            if dimension is None:
                dimension = (model or embedder.load()).dimension
    except Exception as exc:
        raise step_failure(exc) from exc
    finally:
        catalog_entries.entries.close()  # this step's handle only (see catalog_index)
    context.add_output_metadata(
        {
            "embedded": embedded,
            "already_cached": cached,
            "skipped_unchanged": entries - todo,
            "embed_seconds": round(time.perf_counter() - started, 3),
            "model": model_id,
            "dimension": dimension,
        }
    )
    return {"model_id": model_id, "dimension": dimension, "embedded": embedded}


CACHE_CHUNK = 4096  # texts embedded and cached per round: bounds the step's memory


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
    catalog_id = context.partition_key
    lazy = LazyEmbedder(
        embedder.model_name(), catalog_embeddings["model_id"], catalog_embeddings["dimension"], embedder.batch_size, embedder.backend_name()
    )
    folder = catalog_folder.path()
    source = Source(catalog_entries.source_digest, lambda: current_source_digest(folder, catalog_id))
    try:
        # The step's own handle on the entries is closed with it: its page caches are not held while
        # the run's other steps go on (an in-process run keeps every step's inputs alive).
        with catalog_entries.entries, store.open() as synced:
            result = synced.sync(catalog_id, catalog_entries.entries, lazy, force=config.force, source=source, use_vector_cache=True)
            verification = synced.verify(catalog_id)
            refusals.record_sync(synced.engine, catalog_id, folder, catalog_entries)  # clears its refusal, keeps its warnings
    except Exception as exc:
        raise step_failure(exc) from exc
    if result.retire_error:
        context.log.warning(result.retire_error)
    if result.standby_error:
        context.log.warning(result.standby_error)
    mirrored = result.standby
    counts = SyncCounts(  # the names `sync --json` reads back (results.py)
        inserted=result.inserted,
        updated=result.updated,
        deleted=result.deleted,
        unchanged=result.unchanged,
        embedded=catalog_embeddings["embedded"] + result.embedded + (mirrored.embedded if mirrored else 0),
    )
    metadata: dict[str, Any] = {
        **counts.to_dict(),
        "entries": result.inserted + result.updated + result.unchanged,
        "retired_points": result.retired_points,
        "recovered_journal_rows": result.recovered_journal_rows,
        "model": result.model,
        "collection": result.collection,
        "database": store.label(),
        "source_digest": catalog_entries.source_digest,
        "warnings": len(catalog_entries.warnings),
        **{f"{name}": seconds for name, seconds in result.durations.items()},
        # While a standby model is built (sync/write/model_roles.py): what this run did to its rows.
        **({"standby_model": mirrored.model, "standby_written": mirrored.written} if mirrored else {}),
        **({"standby_error": result.standby_error} if result.standby_error else {}),
    }
    return MaterializeResult(metadata=metadata, check_results=[ids_match_result(verification)])


def ids_match_result(v: CatalogVerification) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=IDS_MATCH,
        passed=v.in_sync,
        severity=AssetCheckSeverity.ERROR,
        metadata={**v.counts(), **({"samples": MetadataValue.json(v.samples)} if v.samples else {})},
        description=None if v.in_sync else f"{v.catalog_id}: stores disagree ({v.counts()})",
    )
