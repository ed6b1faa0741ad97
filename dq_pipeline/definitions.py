"""The dq_pipeline code location."""

from __future__ import annotations

import os

from dagster import Definitions, EnvVar

from .defs.assets import catalog_embeddings, catalog_entries, catalog_index
from .defs.checks import all_catalogs_in_sync
from .defs.jobs import sync_catalog_job
from .defs.resources import CatalogFolder, EmbedderResource, SyncedStoreResource


def _env(name: str) -> EnvVar | None:
    """An EnvVar when set (the UI then shows its name, never its value); else the embedded default."""
    return EnvVar(name) if os.environ.get(name) else None


def build_definitions() -> Definitions:
    return Definitions(
        assets=[catalog_entries, catalog_embeddings, catalog_index],
        asset_checks=[all_catalogs_in_sync],
        jobs=[sync_catalog_job],
        resources={
            "catalog_folder": CatalogFolder(catalog_dir=_env("DQ_CATALOG_DIR")),
            "embedder": EmbedderResource(model=_env("DQ_EMBEDDING_MODEL")),
            "store": SyncedStoreResource(
                database_url=_env("DQ_DATABASE_URL"),
                qdrant_url=_env("DQ_QDRANT_URL"),
                qdrant_api_key=_env("DQ_QDRANT_API_KEY"),
                qdrant_path=_env("DQ_QDRANT_PATH"),
                data_dir=_env("DQ_DATA_DIR"),
            ),
        },
    )


defs = build_definitions()
