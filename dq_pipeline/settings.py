"""Where things live, from DQ_* environment variables; with none set, everything is embedded under ./.dq_data.

Every setting is declared once, in `SETTINGS` (variable, `Settings` field, the resource field it
feeds, whether it can carry a secret, its doc line). `Settings.from_env`, the Dagster resources
(`dq_pipeline.definitions`) and the list of secret variables derive from that table.

Secrets (the database URL's password, the Qdrant API key, credentials in a Qdrant URL) never reach
what the Dagster instance stores: resources receive them as `EnvVar(name)` (the job snapshot holds
the variable's name, the value is read from the process environment when the resource is built),
never as a literal string (`resource_values`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .embedding.embedder import resolve_backend
from .errors import ConfigurationError
from .errors import ConfigurationError as ConfigError  # the old name of the one configuration error

__all__ = ["SETTINGS", "ConfigError", "ConfigurationError", "Setting", "Settings", "secret_env_names"]


@dataclass(frozen=True)
class Setting:
    env: str  # the environment variable
    field: str  # the `Settings` attribute
    resource: str  # the Dagster resource key it configures
    resource_field: str  # that resource's field
    default: str  # as documented
    doc: str
    secret: bool = False  # may carry a credential: bound by name (EnvVar), masked in messages


SETTINGS: tuple[Setting, ...] = (
    Setting("DQ_CATALOG_DIR", "catalog_dir", "catalog_folder", "catalog_dir", "./catalogs", "Folder of catalog files."),
    Setting("DQ_DATA_DIR", "data_dir", "store", "data_dir", "./.dq_data", "Folder of the embedded defaults (SQLite file, embedded Qdrant)."),
    Setting("DQ_DATABASE_URL", "database_url", "store", "database_url", "sqlite:///<DQ_DATA_DIR>/dq.sqlite3",
            "SQLAlchemy URL of the system of record (PostgreSQL or SQLite).", secret=True),
    Setting("DQ_QDRANT_URL", "qdrant_url", "store", "qdrant_url", "(unset: embedded Qdrant)", "Qdrant server URL.", secret=True),
    Setting("DQ_QDRANT_API_KEY", "qdrant_api_key", "store", "qdrant_api_key", "(unset)", "Qdrant server API key.", secret=True),
    Setting("DQ_QDRANT_PATH", "qdrant_path", "store", "qdrant_path", "<DQ_DATA_DIR>/qdrant", "Folder of the embedded Qdrant store."),
    Setting("DQ_QDRANT_ENGINE", "qdrant_engine", "store", "qdrant_engine", "local", "Embedded Qdrant engine: local or edge."),
    Setting("DQ_NAMESPACE", "namespace", "store", "namespace", "dq",
            "Deployment namespace: the prefix of its Qdrant collections (a-z, 0-9, '-'; at most 32)."),
    Setting("DQ_EMBEDDING_MODEL", "embedding_model", "embedder", "model", "(the bundled all-MiniLM-L6-v2)",
            "sentence-transformers model: a local folder or a hub name."),
    Setting("DQ_EMBEDDING_BACKEND", "embedding_backend", "embedder", "backend", "torch", "torch or onnx (ONNX Runtime fp32)."),
    Setting("DQ_ALERT_WEBHOOK_URL", "alert_webhook_url", "alerts", "webhook_url", "(unset: no alerts)",
            "Webhook (Slack-compatible JSON) that failed runs, failed checks and the auto-repair bound post to.", secret=True),
    Setting("DQ_PUSHGATEWAY_URL", "pushgateway_url", "pushgateway", "url", "(unset: no push)",
            "Prometheus Pushgateway that the metrics are pushed to after every run of a job that writes the stores.", secret=True),
)

DEFAULT_NAMESPACE = "dq"
# Qdrant accepts most characters in a collection name; the namespace is narrower on purpose. Collections
# are named `<namespace>_<model slug>_<digest>_<dimension>` and a deployment lists its own by the
# prefix `<namespace>_`: a namespace holding "_" could be a prefix of another ("dq" of "dq_staging"),
# so "_" is refused, which makes the first "_" of a collection name the end of its namespace.
_NAMESPACE_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


def secret_env_names() -> tuple[str, ...]:
    return tuple(s.env for s in SETTINGS if s.secret)


@dataclass(frozen=True)
class Settings:
    catalog_dir: Path
    data_dir: Path
    database_url: str
    qdrant_url: str | None
    qdrant_api_key: str | None
    qdrant_path: str | None
    embedding_model: str
    qdrant_engine: str = "local"  # the embedded store: "local" (qdrant-client local mode) or "edge"
    embedding_backend: str = "torch"  # "torch" or, opt-in, "onnx" (ONNX Runtime fp32: same vectors, faster)
    namespace: str = DEFAULT_NAMESPACE  # the prefix of this deployment's Qdrant collections
    alert_webhook_url: str | None = None  # where alerts are posted (a credential: its path is the token)
    pushgateway_url: str | None = None  # where metrics are pushed (may hold basic-auth credentials)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: str | None) -> Settings:
        env = os.environ if env is None else env
        unknown = set(overrides) - {s.field for s in SETTINGS}
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        raw = {s.field: overrides.get(s.field) or env.get(s.env) or None for s in SETTINGS}
        # Set but empty is refused, not taken as unset: `DQ_NAMESPACE=${TEAM}` with TEAM unset would
        # put two deployments in the default namespace, where each deletes the other's points.
        raw["namespace"] = overrides.get("namespace") or env.get("DQ_NAMESPACE")

        data_dir = Path(raw["data_dir"] or ".dq_data").expanduser()
        qdrant_url = raw["qdrant_url"]
        return cls(
            catalog_dir=Path(raw["catalog_dir"] or "catalogs").expanduser(),
            data_dir=data_dir,
            database_url=raw["database_url"] or f"sqlite:///{(data_dir / 'dq.sqlite3').resolve()}",
            qdrant_url=qdrant_url,
            qdrant_api_key=raw["qdrant_api_key"],
            qdrant_path=None if qdrant_url else raw["qdrant_path"] or str((data_dir / "qdrant").resolve()),
            embedding_model=raw["embedding_model"] or "",
            qdrant_engine=raw["qdrant_engine"] or "local",
            embedding_backend=embedding_backend(raw["embedding_backend"]),
            namespace=namespace(raw["namespace"]),
            alert_webhook_url=raw["alert_webhook_url"],
            pushgateway_url=raw["pushgateway_url"],
        )


def embedding_backend(value: str | None) -> str:
    """DQ_EMBEDDING_BACKEND: torch (default) or onnx."""
    try:
        return resolve_backend(value)
    except ValueError:
        raise ConfigurationError(f"DQ_EMBEDDING_BACKEND={value!r} is not a backend: use torch (the default) or onnx") from None


def namespace(value: str | None) -> str:
    """DQ_NAMESPACE: unset means "dq"; set (even to ""), it must be 1-32 of a-z, 0-9 and '-', not starting with '-'."""
    if value is None:
        return DEFAULT_NAMESPACE
    if not _NAMESPACE_RE.fullmatch(value):
        raise ConfigurationError(
            f"DQ_NAMESPACE={value!r} is not a namespace: use 1 to 32 characters of a-z, 0-9 and '-' "
            "(not starting with '-'; no '_', which separates the namespace in collection names)"
        )
    return value


# --------------------------------------------------------------------------- resources' values


def _carries_secret(setting: Setting, value: str) -> bool:
    """Whether a value holds a credential: the API key, the webhook and the Pushgateway always (a
    webhook's path is its token; a Pushgateway behind a proxy takes basic auth in its URL or a token
    in its path); another URL when it has a password or a query (`?password=...`, `?api_key=...`)."""
    if setting.field in ("qdrant_api_key", "alert_webhook_url", "pushgateway_url"):
        return True
    if not setting.secret:
        return False
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(value)
    except (ArgumentError, ValueError):
        return True  # unparseable: assume the worst
    return bool(parsed.password) or bool(parsed.query)


def resource_values(settings: Settings, env: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """{resource key: {field: value}} for resources bound to these settings.

    A value that carries a secret is bound as `EnvVar(name)` and must be what the process environment
    holds under that name (run under `exported(settings)` otherwise): the job snapshot, the run config
    and the UI then show the name, never the value, and the value is read when the resource is built.
    A literal would be stored, zlib-compressed, in the Dagster instance. Every other value is bound as
    it is, so resources keep the settings they were given whatever the environment does later.
    """
    from dagster import EnvVar

    env = os.environ if env is None else env
    values: dict[str, dict[str, Any]] = {}
    for setting in SETTINGS:
        raw = getattr(settings, setting.field)
        bound: Any = None if raw in (None, "") else str(raw)
        if bound is not None and _carries_secret(setting, bound):
            if env.get(setting.env) != bound:
                raise ConfigurationError(
                    f"{setting.env} carries a secret that is not in the process environment: it would be "
                    "stored in the Dagster instance (export it, or run under dq_pipeline.settings.exported)"
                )
            bound = EnvVar(setting.env)
        values.setdefault(setting.resource, {})[setting.resource_field] = bound
    return values


@contextmanager
def exported(settings: Settings) -> Iterator[None]:
    """Put the settings' secret-carrying values into the process environment for the duration (restored
    after), so that resources can take them by `EnvVar` name."""
    saved: dict[str, str | None] = {}
    try:
        for setting in SETTINGS:
            value = getattr(settings, setting.field)
            if setting.secret and value and os.environ.get(setting.env) != str(value) and _carries_secret(setting, str(value)):
                saved[setting.env] = os.environ.get(setting.env)
                os.environ[setting.env] = str(value)
        yield
    finally:
        for name, before in saved.items():
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before


def check_namespace(engine: Any, namespace: str) -> None:
    """Refuse a system of record whose rows name collections of another namespace.

    Verify and repair rewrite points into the collection each row records: after DQ_NAMESPACE was
    changed in place they would write into the old namespace, which another deployment may use now.
    A namespace is chosen when a deployment is created; moving one is a rebuild into a new record.
    """
    from sqlalchemy import select

    from .sync.stores.schema import entries

    with engine.connect() as conn:
        foreign = conn.scalar(select(entries.c.collection).where(~entries.c.collection.startswith(f"{namespace}_", autoescape=True)).limit(1))
    if foreign is not None:
        raise ConfigurationError(
            f"DQ_NAMESPACE={namespace!r}, but the system of record holds points of collection {foreign!r} "
            "(another namespace): set DQ_NAMESPACE back, or rebuild this deployment into a new database"
        )
