from dagster import AssetSelection, define_asset_job

SYNC_JOB = "sync_catalog"

# Parse, embed and write one catalog (a partition), with its blocking ID-set check.
sync_catalog_job = define_asset_job(
    SYNC_JOB,
    selection=AssetSelection.assets("catalog_entries", "catalog_embeddings", "catalog_index"),
    description="Sync one catalog (partition) into PostgreSQL and Qdrant. Config `force: true` on the "
    "embedding and index steps re-embeds everything.",
)
