"""Maintenance ops: repair catalogs from the system of record, remove a catalog from both stores.

Both open the synced store, so both claim the Qdrant pool; neither embeds anything (repair
rewrites points from the vectors PostgreSQL keeps; removal only deletes).
"""

from typing import Any

from dagster import (
    AssetKey,
    AssetObservation,
    Config,
    Failure,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    op,
)
from pydantic import Field

from ..catalog import ABSENT, current_source_digest, validate_catalog_id
from ..embedding import LazyEmbedder
from ..embedding.embedder import known_dimension
from ..errors import RefusedInput, StaleSource
from ..sync import Source, stored_dimension
from .assets import TRANSIENT_RETRY, step_failure
from .partitions import QDRANT_POOL, catalog_partitions
from .resources import CatalogFolder, EmbedderResource, SyncedStoreResource

# The dimension recorded for a model whose rows are all gone; removal never writes a vector, so
# it only names the collection (all-MiniLM-L6-v2 has 384).
FALLBACK_DIMENSION = 384


class RepairConfig(Config):
    catalog_ids: list[str] = Field(
        default_factory=list, description="Catalogs to repair; empty = every catalog either store knows of."
    )


class RemoveCatalogConfig(Config):
    catalog_id: str = Field(description="The catalog to remove from PostgreSQL and Qdrant, e.g. 'finance/ledger'.")


def _observe(context: OpExecutionContext, catalog_id: str, metadata: dict[str, Any]) -> None:
    """Per-catalog numbers on the catalog_index asset's partition (if it still exists), for the UI."""
    if context.instance.has_dynamic_partition(catalog_partitions.name, catalog_id):
        context.log_event(AssetObservation(asset_key=AssetKey("catalog_index"), partition=catalog_id, metadata=metadata))


@op(
    pool=QDRANT_POOL,
    retry_policy=TRANSIENT_RETRY,
    out=Out(Nothing),
    tags={"stage": "repair"},
    description="Finish the journal, re-upsert missing or mismatched points from the vectors kept in "
    "PostgreSQL and delete orphan points; never embeds. Fails if a catalog is still out of sync.",
)
def repair_catalogs(context: OpExecutionContext, config: RepairConfig, store: SyncedStoreResource):
    per_catalog: dict[str, dict[str, int]] = {}
    failing: dict[str, dict[str, int]] = {}
    with store.open() as synced:
        catalog_ids = list(dict.fromkeys(config.catalog_ids)) or synced.known_catalogs()
        for catalog_id in catalog_ids:
            result = synced.repair(catalog_id)
            counts = {
                "journal_rows_finished": result.journal_rows_finished,
                "restored": result.restored,
                "rewritten": result.rewritten,
                "orphans_deleted": result.orphans_deleted,
                "pg": result.after.pg,
                "qdrant": result.after.qdrant,
                "in_sync": int(result.after.in_sync),
            }
            per_catalog[catalog_id] = counts
            _observe(context, catalog_id, {"repair_" + k: v for k, v in counts.items()})
            context.log.info(f"repaired {catalog_id}: {counts}")
            if not result.after.in_sync:
                failing[catalog_id] = result.after.counts()
    totals = {
        name: sum(c[name] for c in per_catalog.values())
        for name in ("journal_rows_finished", "restored", "rewritten", "orphans_deleted")
    }
    metadata: dict[str, Any] = {
        "catalogs": len(per_catalog),
        **totals,
        "embedded": 0,
        "catalogs_out_of_sync": len(failing),
        "per_catalog": MetadataValue.json(per_catalog),
    }
    if failing:
        raise Failure(
            description=f"still out of sync after repair: {', '.join(sorted(failing))} ({failing})",
            metadata={**metadata, "out_of_sync": MetadataValue.json(failing)},
        )
    yield Output(None, metadata=metadata)


@op(
    pool=QDRANT_POOL,
    retry_policy=TRANSIENT_RETRY,
    out=Out(Nothing),
    tags={"stage": "remove"},
    description="Delete a catalog's rows (PostgreSQL) and points (Qdrant) through the journaled protocol, "
    "then delete any point of it left in Qdrant; loads no model.",
)
def remove_catalog_data(
    context: OpExecutionContext,
    config: RemoveCatalogConfig,
    catalog_folder: CatalogFolder,
    embedder: EmbedderResource,
    store: SyncedStoreResource,
):
    catalog_id = config.catalog_id
    try:
        validate_catalog_id(catalog_id)
    except ValueError as exc:
        raise step_failure(RefusedInput(str(exc))) from None
    folder = catalog_folder.path()
    # A removal whose file has come back does nothing: the file is the truth, and its next sync
    # keeps (or updates) the catalog. Checked again inside the commit (the source check), so a
    # file restored while the removal runs also stops it.
    if current_source_digest(folder, catalog_id) != ABSENT:
        context.log.info(f"{catalog_id}: its file is in the catalog folder again; nothing removed")
        yield Output(None, metadata={"deleted": 0, "skipped": "the catalog's file is present"})
        return
    model_id = embedder.model_id()  # resolves the name only; nothing is loaded
    try:
        with store.open() as synced:
            dimension = stored_dimension(synced.engine, model_id) or known_dimension(embedder.model_name()) or FALLBACK_DIMENSION
            # Removal writes no vector: the lazy embedder only names the model; it would load it only to embed.
            lazy = LazyEmbedder(embedder.model_name(), model_id, dimension, embedder.batch_size, embedder.backend_name())
            source = Source(ABSENT, lambda: current_source_digest(folder, catalog_id))
            try:
                result = synced.remove_catalog(catalog_id, lazy, source=source)
            except StaleSource:
                context.log.info(f"{catalog_id}: its file came back during the removal; nothing removed")
                yield Output(None, metadata={"deleted": 0, "skipped": "the catalog's file came back"})
                return
            # Points of this catalog that no row ever recorded (e.g. a crash before the journal existed)
            # are orphans: delete them too, so the catalog is gone from the index, not just from the record.
            repaired = synced.repair(catalog_id)
            after = repaired.after
    except Exception as exc:
        raise step_failure(exc) from exc
    if result.retire_error:
        context.log.warning(result.retire_error)
    metadata: dict[str, Any] = {
        "deleted": result.deleted,
        "retired_points": result.retired_points,
        "recovered_journal_rows": result.recovered_journal_rows,
        "orphans_deleted": repaired.orphans_deleted,
        "pg": after.pg,
        "qdrant": after.qdrant,
        "embedded": result.embedded,
    }
    _observe(context, catalog_id, {"removed_entries": result.deleted, "entries": after.pg})
    if after.pg or after.qdrant or not after.in_sync:
        raise Failure(description=f"{catalog_id}: still present after removal ({after.counts()})", metadata=metadata)
    context.log.info(f"removed {catalog_id}: {result.deleted} entries, {result.retired_points} points")
    yield Output(None, metadata=metadata)
