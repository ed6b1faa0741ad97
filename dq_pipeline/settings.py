"""Every DQ_* environment variable the package reads, declared once; with none set, everything is
embedded under ./.dq_data.

Each setting is declared once, in `SETTINGS` (those that configure a Dagster resource: its
`Settings` field and the resource field it feeds) or `PROCESS_SETTINGS` (read where they are used:
when the code location loads, at a sensor tick, when the ONNX export is cached), with its default
as documented, its parser, whether it can carry a secret and its doc line. `Settings.from_env`, the
Dagster resources (`dq_pipeline.definitions`), the list of masked variables (`errors.redact`) and the
README's configuration table (`python -m dq_pipeline.settings --markdown`; a test keeps them equal)
derive from these tables, and a setting that is not a resource field is read only through
`setting_value(name, env)`, its parser.

Secrets (the database URL's password, the Qdrant API key, credentials in a Qdrant URL) never reach
what the Dagster instance stores: resources receive them as `EnvVar(name)` (the job snapshot holds
the variable's name, the value is read from the process environment when the resource is built),
never as a literal string (`resource_values`).

This module imports no Dagster and nothing of the package but `errors` at import time, so that
catalog/, embedding/ and sync/ may read a setting here without a cycle.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigurationError
from .errors import ConfigurationError as ConfigError  # the old name of the one configuration error

__all__ = [
    "ALL_SETTINGS",
    "PROCESS_SETTINGS",
    "SETTINGS",
    "ConfigError",
    "ConfigurationError",
    "Setting",
    "Settings",
    "markdown_table",
    "masked_env_names",
    "secret_env_names",
    "setting",
    "setting_value",
]

DEFAULT_NAMESPACE = "dq"
DEFAULT_CRON = "0 2 * * *"  # nightly, 02:00 UTC
MULTIPROCESS, CELERY = "multiprocess", "celery"
DEFAULT_MAX_REMOVAL_SHARE = 0.25
DEFAULT_MAX_RUNS = 1000
# Qdrant accepts most characters in a collection name; the namespace is narrower on purpose. Collections
# are named `<namespace>_<model slug>_<digest>_<dimension>` and a deployment lists its own by the
# prefix `<namespace>_`: a namespace holding "_" could be a prefix of another ("dq" of "dq_staging"),
# so "_" is refused, which makes the first "_" of a collection name the end of its namespace.
_NAMESPACE_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


# --------------------------------------------------------------------------- parsers
# Each takes the raw value (None when the variable is unset) and returns the value the code uses,
# or raises ConfigurationError naming the variable.


def _text(raw: str | None) -> str | None:
    """As given; unset or empty is None (the caller's default applies)."""
    return raw or None


def _path(raw: str | None) -> Path | None:
    return Path(raw).expanduser() if raw else None


def sync_cron(raw: str | None) -> str:
    """DQ_SYNC_CRON: a cron expression Dagster accepts (default nightly at 02:00 UTC)."""
    value = (raw or DEFAULT_CRON).strip()
    # Dagster's own check (imported here, not at the top: this module stays free of Dagster).
    from dagster._utils.schedules import is_valid_cron_string

    if not is_valid_cron_string(value):
        raise ConfigurationError(f"DQ_SYNC_CRON={value!r} is not a valid cron expression (e.g. {DEFAULT_CRON!r})")
    return value


def executor(raw: str | None) -> str:
    """DQ_EXECUTOR: `multiprocess` (the default) or `celery`; anything else is a configuration error."""
    value = (raw or MULTIPROCESS).strip().lower()
    if value not in (MULTIPROCESS, CELERY):
        raise ConfigurationError(f"DQ_EXECUTOR={value!r} is not an executor: use {MULTIPROCESS} (the default) or {CELERY}")
    return value


def freshness_hours(raw: str | None) -> float | None:
    """DQ_FRESHNESS_HOURS: unset or blank = no freshness check; else hours above 0."""
    value = (raw or "").strip()
    if not value:
        return None
    try:
        hours = float(value)
    except ValueError:
        hours = math.nan
    if not math.isfinite(hours) or hours <= 0:
        raise ConfigurationError(f"DQ_FRESHNESS_HOURS={value!r} is not a number of hours above 0 (e.g. 26 for a nightly sync)")
    return hours


def _bounded(default: float, low: float, high: float) -> Callable[[str | None], float]:
    """A number clamped to [low, high]; unset or unreadable is the default. Lenient on purpose: a
    sensor reads it at every tick, and a typo must not stop the sensor that guards removals."""

    def parse(raw: str | None) -> float:
        try:
            value = float(raw) if raw else default
        except ValueError:
            return default
        if math.isnan(value):
            return default
        return min(max(value, low), high)

    return parse


DEFAULT_SYNC_BATCH_SIZE = 1000


def sync_batch_size(raw: str | None) -> int:
    """DQ_SYNC_BATCH_SIZE: catalogs per scheduled `sync_catalogs_batch` run, a whole number above 0."""
    value = (raw or "").strip()
    if not value:
        return DEFAULT_SYNC_BATCH_SIZE
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError(
            f"DQ_SYNC_BATCH_SIZE={value!r} is not a number of catalogs per run above 0 (e.g. {DEFAULT_SYNC_BATCH_SIZE})"
        )
    return int(value)


def _max_runs(raw: str | None) -> int:
    return int(_bounded(DEFAULT_MAX_RUNS, 1, 1_000_000)(raw))


def _queue(raw: str | None) -> str | None:
    return (raw or "").strip() or None


def onnx_cache_dir(raw: str | None) -> Path:
    """DQ_ONNX_CACHE_DIR, else `$XDG_CACHE_HOME/dq_pipeline/onnx` (`~/.cache/dq_pipeline/onnx`)."""
    if raw:
        return Path(raw).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dq_pipeline" / "onnx"


def embedding_backend(value: str | None) -> str:
    """DQ_EMBEDDING_BACKEND: torch (default) or onnx."""
    from .embedding.embedder import resolve_backend  # embedding owns its backends; imported late, no cycle

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


# --------------------------------------------------------------------------- the tables


@dataclass(frozen=True)
class Setting:
    env: str  # the environment variable
    default: str  # as documented (README's default column, markdown)
    doc: str  # README's meaning column (markdown)
    parse: Callable[[str | None], Any] = _text  # raw value (None: unset) -> the value used
    secret: bool = False  # may carry a credential: bound by name (EnvVar), masked in messages
    field: str = ""  # the `Settings` attribute (SETTINGS only)
    resource: str = ""  # the Dagster resource key it configures (SETTINGS only)
    resource_field: str = ""  # that resource's field (SETTINGS only)


def _resource(env: str, field: str, resource: str, resource_field: str, default: str, doc: str, **kw: Any) -> Setting:
    return Setting(env, default, doc, field=field, resource=resource, resource_field=resource_field, **kw)


SETTINGS: tuple[Setting, ...] = (
    _resource("DQ_CATALOG_DIR", "catalog_dir", "catalog_folder", "catalog_dir", "`./catalogs`", "folder of catalog files", parse=_path),
    _resource("DQ_DATA_DIR", "data_dir", "store", "data_dir", "`./.dq_data`", "where the embedded stores live", parse=_path),
    _resource("DQ_DATABASE_URL", "database_url", "store", "database_url", "`sqlite:///<data dir>/dq.sqlite3`",
              "SQLAlchemy URL of the system of record, e.g. `postgresql+psycopg://user:pass@host/db` "
              "(`postgresql://` also means psycopg 3)", secret=True),
    _resource("DQ_QDRANT_URL", "qdrant_url", "store", "qdrant_url", "unset (embedded)", "a Qdrant server, e.g. `http://qdrant:6333`", secret=True),
    _resource("DQ_QDRANT_API_KEY", "qdrant_api_key", "store", "qdrant_api_key", "unset", "its API key", secret=True),
    _resource("DQ_QDRANT_PATH", "qdrant_path", "store", "qdrant_path", "`<data dir>/qdrant`", "the embedded Qdrant folder (when no URL)"),
    _resource("DQ_QDRANT_ENGINE", "qdrant_engine", "store", "qdrant_engine", "`local`",
              "the embedded Qdrant: `local` (qdrant-client local mode) or `edge` (Qdrant Edge in-process, ~35× faster writes; "
              '`pip install -e ".[edge]"`)', parse=lambda raw: raw or "local"),
    _resource("DQ_NAMESPACE", "namespace", "store", "namespace", "`dq`",
              "the deployment's namespace: the prefix of its Qdrant collections, so deployments sharing one Qdrant never "
              "touch each other's points (shown by `status`; changing it in place is refused)", parse=namespace),
    _resource("DQ_EMBEDDING_MODEL", "embedding_model", "embedder", "model", "bundled all-MiniLM-L6-v2 (offline)",
              "a local model folder (its id includes a digest of its files: new weights are a new model) or a hub name "
              "(`hashing:<dim>` is a fast stand-in for tests and benchmarks)", parse=lambda raw: raw or ""),
    _resource("DQ_EMBEDDING_BACKEND", "embedding_backend", "embedder", "backend", "`torch`",
              "`onnx` runs the same model in ONNX Runtime fp32 on the CPU: identical vectors and model id, 1.1–1.2× faster "
              'encoding here (`benchmarks/bench_onnx.py`, RESULTS.md); `pip install -e ".[onnx]"`; the export is made once '
              "under `DQ_ONNX_CACHE_DIR`", parse=embedding_backend),
    _resource("DQ_ALERT_WEBHOOK_URL", "alert_webhook_url", "alerts", "webhook_url", "unset (no alerts)",
              'an incoming webhook (Slack-compatible JSON `{"text": ...}` plus a `dq` object of fields): '
              "`alert_on_failure_sensor` posts one message per failed run (catalog, job, run id, error, and whether "
              "auto-repair acts or its bound was reached), and the global check posts when it fails; a credential, bound "
              "by name and never in a message", secret=True),
    _resource("DQ_PUSHGATEWAY_URL", "pushgateway_url", "pushgateway", "url", "unset (no push)",
              "a Prometheus Pushgateway, e.g. `http://pushgateway:9091` (credentials as `https://user:password@host`): the "
              "metrics are pushed to it after every sync, reindex, repair or removal run (Metrics above); a credential, "
              "bound by name and never logged", secret=True),
)

# Not resource fields: read through `setting_value` where they are used.
PROCESS_SETTINGS: tuple[Setting, ...] = (
    Setting("DQ_ONNX_CACHE_DIR", "`~/.cache/dq_pipeline/onnx` (under `$XDG_CACHE_HOME` when set)",
            "with `DQ_EMBEDDING_BACKEND=onnx`: the folder the exported graphs are kept in, one per model, weights and "
            "toolchain", parse=onnx_cache_dir),
    Setting("DQ_FRESHNESS_HOURS", "unset (no freshness check)",
            "hours within which every catalog must have synced successfully; read when the code location loads, it adds "
            "the check `catalogs_fresh`, its job and its hourly schedule", parse=freshness_hours),
    Setting("DQ_SYNC_CRON", f"`{DEFAULT_CRON}`", "when the schedule syncs every catalog (UTC); read when the code location loads",
            parse=sync_cron),
    Setting("DQ_SYNC_BATCH_SIZE", f"`{DEFAULT_SYNC_BATCH_SIZE}`",
            "catalogs per run of the schedule's `sync_catalogs_batch` job (one step syncs them in turn); read at each "
            "tick. With a Qdrant server and a `dq_qdrant` pool above 1, a smaller value spreads them over parallel runs",
            parse=sync_batch_size),
    Setting("DQ_SENSOR_MAX_REMOVAL_SHARE", f"`{DEFAULT_MAX_REMOVAL_SHARE}`",
            "the largest share of catalogs the folder sensor removes in one tick (0 to 1); more is held back with an error",
            parse=_bounded(DEFAULT_MAX_REMOVAL_SHARE, 0.0, 1.0)),
    Setting("DQ_SENSOR_MAX_RUNS_PER_TICK", f"`{DEFAULT_MAX_RUNS}`",
            "runs one sensor tick requests (1 to 1,000,000); the rest follow on later ticks", parse=_max_runs),
    Setting("DQ_EXECUTOR", f"`{MULTIPROCESS}`",
            "what runs a run's steps, read when the code location loads: `multiprocess` (one process per step beside the "
            'run worker) or `celery` (Celery workers; `pip install -e ".[celery]"`, deploy/README.md)', parse=executor),
    Setting("DQ_CELERY_BROKER_URL", "RabbitMQ on localhost",
            "with `DQ_EXECUTOR=celery`: the Celery broker (credentials bound by name, never stored)", secret=True),
    Setting("DQ_CELERY_BACKEND_URL", "`rpc://`",
            "with `DQ_EXECUTOR=celery`: the Celery result backend (credentials bound by name, never stored)", secret=True),
    Setting("DQ_CELERY_QUEUE", "`dagster`",
            "with `DQ_EXECUTOR=celery`: the queue the steps are sent to and the workers consume (`-Q`)", parse=_queue),
)

ALL_SETTINGS: tuple[Setting, ...] = SETTINGS + PROCESS_SETTINGS
_BY_ENV = {s.env: s for s in ALL_SETTINGS}

# Masked in messages besides the secret settings: Dagster's own instance storage password
# (deploy/dagster.yaml), which the processes of a deployment hold in their environment too.
OTHER_SECRET_ENV = ("DAGSTER_PG_PASSWORD",)


def setting(name: str) -> Setting:
    """The declaration of one DQ_* variable (KeyError for an undeclared one: declare it first)."""
    return _BY_ENV[name]


def setting_value(name: str, env: Mapping[str, str] | None = None) -> Any:
    """The value of one DQ_* variable as its parser makes it, from `env` (default: the process environment)."""
    return setting(name).parse((os.environ if env is None else env).get(name))


def secret_env_names() -> tuple[str, ...]:
    """The declared variables that may carry a credential."""
    return tuple(s.env for s in ALL_SETTINGS if s.secret)


def masked_env_names() -> tuple[str, ...]:
    """The variables whose values `errors.redact` masks in every message."""
    return secret_env_names() + OTHER_SECRET_ENV


def markdown_table() -> str:
    """README's configuration table (Configuration): one row per declared setting."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{s.env}` | {s.default} | {s.doc} |" for s in ALL_SETTINGS]
    return "\n".join(rows) + "\n"


def readme_with_table(readme: str) -> str:
    """README text with its configuration table (the first table after `## Configuration`) replaced."""
    match = re.search(r"^## Configuration\n\n((?:\|.*\n)+)", readme, re.MULTILINE)
    if match is None:
        raise ValueError("README has no table under '## Configuration'")
    return readme[: match.start(1)] + markdown_table() + readme[match.end(1) :]


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
        values = {s.field: s.parse(raw[s.field]) for s in SETTINGS}

        # The defaults that depend on other settings.
        data_dir = values["data_dir"] = values["data_dir"] or Path(".dq_data")
        values["catalog_dir"] = values["catalog_dir"] or Path("catalogs")
        values["database_url"] = values["database_url"] or f"sqlite:///{(data_dir / 'dq.sqlite3').resolve()}"
        values["qdrant_path"] = None if values["qdrant_url"] else values["qdrant_path"] or str((data_dir / "qdrant").resolve())
        return cls(**values)


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


def main(argv: list[str] | None = None) -> int:
    """`python -m dq_pipeline.settings --markdown` prints README's configuration table;
    `--update README.md` rewrites that table in place."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--markdown"]:
        sys.stdout.write(markdown_table())
        return 0
    if len(args) == 2 and args[0] == "--update":
        path = Path(args[1])
        path.write_text(readme_with_table(path.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    sys.stderr.write("usage: python -m dq_pipeline.settings --markdown | --update README.md\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
