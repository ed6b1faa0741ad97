"""The dq_pipeline code location."""

from __future__ import annotations

import os
from typing import Any

from dagster import Definitions, EnvVar

from .defs.alerts import alert_on_failure_sensor
from .defs.assets import catalog_embeddings, catalog_entries, catalog_index
from .defs.batch import sync_catalogs_batch_job
from .defs.checks import all_catalogs_in_sync
from .defs.executors import executor_from_env
from .defs.freshness import build_freshness, freshness_hours
from .defs.io import ENTRIES_IO_MANAGER, CatalogEntriesIOManager
from .defs.jobs import (
    reindex_catalog_job,
    remove_catalog_job,
    repair_catalog_job,
    sync_catalog_job,
    verify_all_catalogs_job,
)
from .defs.metrics_push import push_metrics_on_failure_sensor, push_metrics_on_success_sensor
from .defs.model_change import MODEL_JOBS
from .defs.resources import AlertWebhook, CatalogFolder, EmbedderResource, Pushgateway, SyncedStoreResource
from .defs.schedules import build_sync_schedule
from .defs.sensors import auto_repair_sensor, catalog_folder_sensor
from .defs.source_check import index_matches_source
from .settings import SETTINGS, Settings, resource_values


def _resources(values: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "catalog_folder": CatalogFolder(**values["catalog_folder"]),
        "embedder": EmbedderResource(**values["embedder"]),
        "store": SyncedStoreResource(**values["store"]),
        "alerts": AlertWebhook(**values["alerts"]),
        "pushgateway": Pushgateway(**values["pushgateway"]),
        ENTRIES_IO_MANAGER: CatalogEntriesIOManager(),
    }


def resources_from_env() -> dict[str, Any]:
    """Every DQ_* variable set at load time as an `EnvVar` (the UI shows its name, never its value);
    unset ones are left to the embedded defaults."""
    return _resources(
        {
            resource: {s.resource_field: EnvVar(s.env) if os.environ.get(s.env) else None for s in SETTINGS if s.resource == resource}
            for resource in {s.resource for s in SETTINGS}
        }
    )


def resources_for(settings: Settings) -> dict[str, Any]:
    """Resources bound to resolved settings (the CLI and tests: no dependence on later env changes).

    Values the environment holds are bound by `EnvVar` name; a secret that is not in the environment
    is refused (`settings.resource_values`): nothing the Dagster instance stores may hold a secret.
    """
    return _resources(resource_values(settings))


UNSET: Any = object()


def build_definitions(resources: dict[str, Any] | None = None, freshness: float | None = UNSET) -> Definitions:
    """The code location. Read here (load time), as they shape the definitions: the sync schedule's
    cron (DQ_SYNC_CRON), the freshness window (DQ_FRESHNESS_HOURS, or `freshness` hours; None or
    unset: no freshness check) and the executor (DQ_EXECUTOR: multiprocess, the default, or celery)."""
    checks = [all_catalogs_in_sync, index_matches_source]
    jobs = [sync_catalog_job, sync_catalogs_batch_job, reindex_catalog_job, repair_catalog_job, remove_catalog_job, verify_all_catalogs_job, *MODEL_JOBS]
    schedules = [build_sync_schedule()]
    hours = freshness_hours() if freshness is UNSET else freshness
    if hours:
        check, job, schedule = build_freshness(hours)
        checks.append(check)
        jobs.append(job)
        schedules.append(schedule)
    return Definitions(
        assets=[catalog_entries, catalog_embeddings, catalog_index],
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        sensors=[catalog_folder_sensor, auto_repair_sensor, alert_on_failure_sensor,
                 push_metrics_on_success_sensor, push_metrics_on_failure_sensor],
        resources=resources if resources is not None else resources_from_env(),
        executor=executor_from_env(),
    )

defs = build_definitions()
