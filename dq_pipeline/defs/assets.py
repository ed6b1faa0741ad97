"""Per-catalog assets: parse -> embed what changed -> write both stores through the protocol.

The ID-set check runs inside the writing step as a blocking check, so a catalog whose stores
disagree after its write fails the run (see DAGSTER_NOTES: a partitioned check cannot run alone).
"""


import time
from typing import Any

import numpy as np
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

from ..catalog import CatalogError, Entry, load_catalog, validate_catalog_id
from ..embedding import LazyEmbedder
from ..sync import CatalogVerification, SyncFailed, stored_dimension, stored_hashes
from .partitions import QDRANT_POOL, catalog_partitions
from .resources import CatalogFolder, EmbedderResource, SyncedStoreResource

GROUP = "catalog_index"
IDS_MATCH = "ids_match"
OWNERS = ["team:data-platform"]

# Transient errors (Qdrant or the database briefly unreachable, the embedded store busy, a model
# download hiccup) are retried with exponential backoff. A retry never double-applies: every sync,
# repair and removal is idempotent (content-addressed point ids, plans computed from what is
# committed) and first finishes whatever the journal holds for its catalog under the catalog lock.
# Refused input is not transient: those steps raise `Failure(allow_retries=False)`, which Dagster
# fails at once whatever the retry policy; a failed blocking check is not retried either.
TRANSIENT_RETRY = RetryPolicy(max_retries=3, delay=1, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)

# The step whose failure means "the catalog file was refused" (I6): repair cannot fix bad input.
PARSE_STEP = "catalog_entries"
REFUSED = "dq/refused"


class SyncConfig(Config):
    force: bool = Field(default=False, description="Re-embed and rewrite every entry (force reindex).")


@asset(
    partitions_def=catalog_partitions,
    group_name=GROUP,
    kinds={"python"},
    owners=OWNERS,
    tags={"stage": "parse"},
    description="The catalog file parsed and validated into entries. A file that fails validation is refused "
    "whole with file, record and reason (I6); a removed file yields no entries, which removes the catalog.",
)
def catalog_entries(context: AssetExecutionContext, catalog_folder: CatalogFolder) -> list[Entry]:
    catalog_id = context.partition_key
    started = time.perf_counter()
    # Bad input fails the same way every time: never retried, and never "repaired" (see sensors).
    try:
        validate_catalog_id(catalog_id)
    except ValueError as exc:
        raise Failure(description=str(exc), metadata={REFUSED: True}, allow_retries=False) from None
    try:
        entries = load_catalog(catalog_folder.path(), catalog_id)
    except CatalogError as exc:
        metadata = {"file": exc.path, "problems": len(exc.problems), REFUSED: True}
        raise Failure(description=str(exc), metadata=metadata, allow_retries=False) from None
    kinds: dict[str, int] = {}
    for entry in entries:
        kinds[entry.kind] = kinds.get(entry.kind, 0) + 1
    context.add_output_metadata(
        {
            "entries": len(entries),
            "by_kind": MetadataValue.json(kinds),
            "parse_seconds": round(time.perf_counter() - started, 3),
            "file_present": bool(entries) or (catalog_folder.path() / catalog_id).parent.exists(),
        }
    )
    return entries


@asset(
    partitions_def=catalog_partitions,
    group_name=GROUP,
    kinds={"python", "pytorch"},
    owners=OWNERS,
    tags={"stage": "embed"},
    retry_policy=TRANSIENT_RETRY,
    description="Vectors for the entries whose content (or model) is not yet in the system of record; "
    "unchanged entries are never re-embedded (I4).",
)
def catalog_embeddings(
    context: AssetExecutionContext,
    config: SyncConfig,
    catalog_entries: list[Entry],
    embedder: EmbedderResource,
    store: SyncedStoreResource,
) -> dict[str, Any]:
    model_id = embedder.model_id()
    with store.record() as engine:
        known = set() if config.force else stored_hashes(engine, context.partition_key, model_id)
        dimension = stored_dimension(engine, model_id)
    todo = {e.content_hash: e.text for e in catalog_entries if e.content_hash not in known}
    started = time.perf_counter()
    vectors: dict[str, np.ndarray] = {}
    if todo or dimension is None:
        model = embedder.load()
        dimension = model.dimension
        encoded = model.embed(list(todo.values()))
        vectors = dict(zip(todo, encoded, strict=True))
    context.add_output_metadata(
        {
            "embedded": len(vectors),
            "skipped_unchanged": len(catalog_entries) - len(todo),
            "embed_seconds": round(time.perf_counter() - started, 3),
            "model": model_id,
            "dimension": dimension,
        }
    )
    return {"model_id": model_id, "dimension": dimension, "vectors": vectors}


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
            "for this catalog, and no journal row is left.",
        )
    ],
    description="The catalog written to PostgreSQL (system of record) and Qdrant (search index) through the "
    "journaled two-phase protocol: all or nothing per catalog, nothing lost on failure.",
)
def catalog_index(
    context: AssetExecutionContext,
    config: SyncConfig,
    catalog_entries: list[Entry],
    catalog_embeddings: dict[str, Any],
    embedder: EmbedderResource,
    store: SyncedStoreResource,
) -> MaterializeResult:
    catalog_id = context.partition_key
    lazy = LazyEmbedder(
        embedder.model_name(), catalog_embeddings["model_id"], catalog_embeddings["dimension"], embedder.batch_size, embedder.backend_name()
    )
    with store.open() as synced:
        try:
            result = synced.sync(catalog_id, catalog_entries, lazy, force=config.force, vectors=catalog_embeddings["vectors"])
        except SyncFailed as exc:
            raise Failure(description=str(exc)) from exc
        verification = synced.verify(catalog_id)
    if result.retire_error:
        context.log.warning(result.retire_error)
    metadata: dict[str, Any] = {
        "inserted": result.inserted,
        "updated": result.updated,
        "deleted": result.deleted,
        "unchanged": result.unchanged,
        "embedded": len(catalog_embeddings["vectors"]) + result.embedded,
        "entries": verification.pg,
        "retired_points": result.retired_points,
        "recovered_journal_rows": result.recovered_journal_rows,
        "model": result.model,
        "collection": result.collection,
        "database": store.label(),
        **{f"{name}": seconds for name, seconds in result.durations.items()},
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
