"""Resources: the catalog folder, the embedder, the synced store, the alert webhook and the Pushgateway.

Every field may be left unset: the `DQ_*` environment variables, then the embedded defaults under
`./.dq_data`, fill it in. Which variable feeds which field is declared once, in
`dq_pipeline.settings.SETTINGS`. URLs and keys come through `EnvVar`, so the Dagster UI and
everything the instance stores (job snapshots, run config) show the variable's name, never its value.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field
from sqlalchemy import Engine

from ..embedding import Embedder, load_embedder, recorded_model_loader
from ..embedding.embedder import known_dimension, resolve_model
from ..settings import SETTINGS, Settings, check_namespace
from ..sync import SyncedStore, open_record
from ..sync.stores.database import redact_url


def _from_table(resource: str, field: str) -> Any:
    """A field fed by a DQ_* variable: unset by default, described by that variable's declaration
    (the README's table and the Dagster UI say the same thing)."""
    declared = next(s for s in SETTINGS if s.resource == resource and s.resource_field == field)
    return Field(default=None, description=f"{declared.doc.replace('`', '')} (unset: {declared.env}, default {declared.default.replace('`', '')}).")


def _settings(resource: ConfigurableResource, key: str) -> Settings:
    """Settings with this resource's set fields over the environment (the table says which is which)."""
    return Settings.from_env(**{s.field: getattr(resource, s.resource_field) for s in SETTINGS if s.resource == key})


class CatalogFolder(ConfigurableResource):
    """The folder of catalog files (DQ_CATALOG_DIR; default ./catalogs)."""

    catalog_dir: str | None = _from_table("catalog_folder", "catalog_dir")

    def path(self) -> Path:
        return _settings(self, "catalog_folder").catalog_dir


class EmbedderResource(ConfigurableResource):
    """sentence-transformers model (DQ_EMBEDDING_MODEL; default: the bundled all-MiniLM-L6-v2, offline)
    run by torch or ONNX Runtime (DQ_EMBEDDING_BACKEND; default torch)."""

    model: str | None = _from_table("embedder", "model")
    batch_size: int = Field(default=64, description="Texts per encode batch.")
    backend: str | None = _from_table("embedder", "backend")

    def model_name(self) -> str:
        return _settings(self, "embedder").embedding_model

    def backend_name(self) -> str:
        return _settings(self, "embedder").embedding_backend

    def model_id(self) -> str:
        """The model's id without loading it."""
        return resolve_model(self.model_name())[1]

    def dimension(self, loaded: Embedder | None = None) -> int:
        """The model's vector size: the loaded model's if given, else what its files declare, else by loading it."""
        if loaded is not None:
            return loaded.dimension
        declared = known_dimension(self.model_name())
        return declared if declared is not None else self.load().dimension

    def load(self) -> Embedder:
        return load_embedder(self.model_name(), self.batch_size, backend=self.backend_name())


class SyncedStoreResource(ConfigurableResource):
    """PostgreSQL/SQLite (DQ_DATABASE_URL) and Qdrant (DQ_QDRANT_URL + DQ_QDRANT_API_KEY, or DQ_QDRANT_PATH)."""

    database_url: str | None = _from_table("store", "database_url")
    qdrant_url: str | None = _from_table("store", "qdrant_url")
    qdrant_api_key: str | None = _from_table("store", "qdrant_api_key")
    qdrant_path: str | None = _from_table("store", "qdrant_path")
    data_dir: str | None = _from_table("store", "data_dir")
    qdrant_engine: str | None = _from_table("store", "qdrant_engine")
    namespace: str | None = _from_table("store", "namespace")
    upsert_batch_size: int = Field(default=256, description="Points per acknowledged Qdrant upsert.")
    lock_timeout_s: float = Field(default=600.0, description="How long a sync waits for another run of its catalog.")

    def settings(self) -> Settings:
        return _settings(self, "store")

    @contextmanager
    def open(self) -> Iterator[SyncedStore]:
        """Both stores. Embedded Qdrant is single-process: only steps in the `dq_qdrant` pool call this.

        Raises:
            ConfigurationError: an unsupported database URL, a bad namespace, a namespace other than
                the one the record was written with (terminal: not retried).
            EmbeddedQdrantBusy: another process holds the embedded Qdrant store (transient).
            StoreUnavailable: the database or the Qdrant server is unreachable (transient).
        """
        s = self.settings()
        store = SyncedStore.open(
            s.database_url,
            qdrant_url=s.qdrant_url,
            qdrant_api_key=s.qdrant_api_key,
            qdrant_path=s.qdrant_path,
            collection_prefix=s.namespace,
            upsert_batch_size=self.upsert_batch_size,
            lock_timeout_s=self.lock_timeout_s,
            embedded_engine=s.qdrant_engine,
        )
        try:
            check_namespace(store.engine, s.namespace)
            # A recorded model other than the configured one (the live model during a build, the
            # standby after a switch) is loaded from the source recorded with it, only to embed.
            store.load_model = recorded_model_loader(backend=s.embedding_backend)
            yield store
        finally:
            store.close()

    @contextmanager
    def record(self) -> Iterator[Engine]:
        """Only the system of record, for steps that must not take the embedded Qdrant."""
        engine = open_record(self.settings().database_url)
        try:
            yield engine
        finally:
            engine.dispose()

    def label(self) -> str:
        return redact_url(self.settings().database_url)


class AlertWebhook(ConfigurableResource):
    """Where alerts go (DQ_ALERT_WEBHOOK_URL, Slack-compatible JSON; unset: no alerts). The URL is a
    credential (a Slack webhook's path is its token): bound by EnvVar name, never in a message."""

    webhook_url: str | None = _from_table("alerts", "webhook_url")

    def configured(self) -> bool:
        return bool(_settings(self, "alerts").alert_webhook_url)

    def send(self, title: str, **facts: object) -> bool:
        """Post one alert; False if alerts are off or the receiver did not accept it (never raises)."""
        from .. import alerts

        url = _settings(self, "alerts").alert_webhook_url
        return bool(url) and alerts.post(url, alerts.message(title, **facts))  # type: ignore[arg-type]


class Pushgateway(ConfigurableResource):
    """A Prometheus Pushgateway the metrics are pushed to after every run that writes the stores
    (DQ_PUSHGATEWAY_URL; unset: nothing pushed). It may hold credentials (basic auth in the URL, a
    proxy's token in its path): bound by EnvVar name, never in a message or log line."""

    url: str | None = _from_table("pushgateway", "url")

    def gateway_url(self) -> str | None:
        return _settings(self, "pushgateway").pushgateway_url
