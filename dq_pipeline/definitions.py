"""The dq_pipeline code location."""

from __future__ import annotations

import os
from typing import Any

from dagster import Definitions, EnvVar

from .defs.assets import catalog_embeddings, catalog_entries, catalog_index
from .defs.checks import all_catalogs_in_sync
from .defs.jobs import (
    reindex_catalog_job,
    remove_catalog_job,
    repair_catalog_job,
    sync_catalog_job,
    verify_all_catalogs_job,
)
from .defs.resources import CatalogFolder, EmbedderResource, SyncedStoreResource
from .defs.schedules import build_sync_schedule
from .defs.sensors import auto_repair_sensor, catalog_folder_sensor
from .settings import Settings


def _env(name: str) -> EnvVar | None:
    """An EnvVar when set (the UI then shows its name, never its value); else the embedded default."""
    return EnvVar(name) if os.environ.get(name) else None


def resources_from_env() -> dict[str, Any]:
    return {
        "catalog_folder": CatalogFolder(catalog_dir=_env("DQ_CATALOG_DIR")),
        "embedder": EmbedderResource(model=_env("DQ_EMBEDDING_MODEL"), backend=_env("DQ_EMBEDDING_BACKEND")),
        "store": SyncedStoreResource(
            database_url=_env("DQ_DATABASE_URL"),
            qdrant_url=_env("DQ_QDRANT_URL"),
            qdrant_api_key=_env("DQ_QDRANT_API_KEY"),
            qdrant_path=_env("DQ_QDRANT_PATH"),
            data_dir=_env("DQ_DATA_DIR"),
            qdrant_engine=_env("DQ_QDRANT_ENGINE"),
        ),
    }


def resources_for(settings: Settings) -> dict[str, Any]:
    """Resources bound to resolved settings (the CLI and tests: no dependence on later env changes)."""
    return {
        "catalog_folder": CatalogFolder(catalog_dir=str(settings.catalog_dir)),
        "embedder": EmbedderResource(model=settings.embedding_model or None, backend=settings.embedding_backend),
        "store": SyncedStoreResource(
            database_url=settings.database_url,
            qdrant_url=settings.qdrant_url,
            qdrant_api_key=settings.qdrant_api_key,
            qdrant_path=settings.qdrant_path,
            qdrant_engine=settings.qdrant_engine,
        ),
    }


def build_definitions(resources: dict[str, Any] | None = None) -> Definitions:
    """The code location; the sync schedule's cron comes from DQ_SYNC_CRON, read here (load time)."""
    return Definitions(
        assets=[catalog_entries, catalog_embeddings, catalog_index],
        asset_checks=[all_catalogs_in_sync],
        jobs=[sync_catalog_job, reindex_catalog_job, repair_catalog_job, remove_catalog_job, verify_all_catalogs_job],
        schedules=[build_sync_schedule()],
        sensors=[catalog_folder_sensor, auto_repair_sensor],
        resources=resources if resources is not None else resources_from_env(),
    )


defs = build_definitions()
