from dagster import AssetCheckKey, AssetKey, AssetSelection, define_asset_job, job

from .assets import IDS_MATCH
from .checks import all_catalogs_in_sync
from .ops import remove_catalog_data, repair_catalogs
from .source_check import index_matches_source

SYNC_JOB = "sync_catalog"
REINDEX_JOB = "reindex_catalog"
REPAIR_JOB = "repair_catalog"
REMOVE_JOB = "remove_catalog"
VERIFY_JOB = "verify_all_catalogs"

# Run tags shared by the sensors, the schedule and the deploy config: `dq/catalog` names the catalog
# a run works on (partitioned or not), so the instance can allow one run per catalog at a time and
# the failure sensor can count repair attempts.
CATALOG_TAG = "dq/catalog"
TRIGGER_TAG = "dq/trigger"

# The per-catalog runs carry their own blocking check (ids_match) and no other: the global checks
# over every catalog (those below, and the freshness check when DQ_FRESHNESS_HOURS defines it) run in
# their own jobs, not once per catalog run.
_INDEX_ASSETS = AssetSelection.assets("catalog_entries", "catalog_embeddings", "catalog_index").without_checks() | AssetSelection.checks(
    AssetCheckKey(AssetKey("catalog_index"), IDS_MATCH)
)
_FORCE = {"config": {"force": True}}

# Parse, embed and write one catalog (a partition), with its blocking ID-set check.
sync_catalog_job = define_asset_job(
    SYNC_JOB,
    selection=_INDEX_ASSETS,
    description="Sync one catalog (partition) into PostgreSQL and Qdrant. Config `force: true` on the "
    "embedding and index steps re-embeds everything.",
)

# The same assets, configured to re-embed and rewrite every entry (e.g. after a model fix).
reindex_catalog_job = define_asset_job(
    REINDEX_JOB,
    selection=_INDEX_ASSETS,
    config={"ops": {"catalog_embeddings": _FORCE, "catalog_index": _FORCE}},
    run_tags={"dq/force": "true"},
    description="Force reindex of one catalog (partition): re-embed every entry and rewrite its rows and "
    "points through the same journaled protocol; the blocking ID-set check still runs.",
)


@job(
    name=REPAIR_JOB,
    description="Repair catalogs (config `catalog_ids`, empty = all known) from the system of record: finish "
    "the journal, restore missing/mismatched points from stored vectors, delete orphans. No embedding. "
    "Launched automatically when a sync fails (bounded; see the auto-repair sensor).",
)
def repair_catalog_job():
    repair_catalogs()


@job(
    name=REMOVE_JOB,
    description="Remove one catalog (config `catalog_id`) from PostgreSQL and Qdrant. Unpartitioned because "
    "the catalog sensor deletes the partition of a removed file in the same tick.",
)
def remove_catalog_job():
    remove_catalog_data()


verify_all_catalogs_job = define_asset_job(
    VERIFY_JOB,
    selection=AssetSelection.checks(all_catalogs_in_sync, index_matches_source),
    description="Prove that PostgreSQL and Qdrant hold the same point ids for every catalog, and that the index "
    "is not behind the catalog folder (global checks).",
)
