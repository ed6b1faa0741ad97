"""Engines for the system of record: PostgreSQL (psycopg 3) or an embedded SQLite file."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from ...errors import ConfigurationError

WRITE = {"dq_write": True}
SUPPORTED = "postgresql:// (psycopg 3), postgresql+psycopg2:// or sqlite:///PATH"


def _parsed(url: str) -> URL:
    """The URL parsed, or a configuration error naming what is supported (never the URL: it may hold a password)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(f"DQ_DATABASE_URL is not a database URL; use {SUPPORTED}") from None
    if parsed.drivername == "postgres":  # Heroku-style scheme: psycopg 3, as `postgresql://`
        parsed = parsed.set(drivername="postgresql")
    if parsed.get_backend_name() not in ("postgresql", "sqlite"):
        raise ConfigurationError(f"DQ_DATABASE_URL: database {parsed.get_backend_name()!r} is not supported; use {SUPPORTED}")
    return parsed


def normalise_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here; SQLite paths get their folder created."""
    parsed = _parsed(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return parsed.render_as_string(hide_password=False)


def redact_url(url: str) -> str:
    """The URL with its password masked, for logs, metadata, errors and status output.

    Drivers also take secrets from the query string (`?password=`, `sslpassword`, `passfile`, ...):
    every query value is masked, since which of them a driver reads as a secret is its business."""
    try:
        parsed = make_url(url)
        if parsed.query:
            parsed = parsed.set(query={name: "redacted" for name in parsed.query})
        return parsed.render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        if make_url(url).database in (None, "", ":memory:"):
            raise ConfigurationError("an in-memory SQLite database cannot hold a synced index; use a file path")
        engine = create_engine(url, connect_args={"timeout": 60})
        _sqlite_transactions(engine)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    except (NoSuchModuleError, ImportError) as exc:  # a driver that is not installed
        raise ConfigurationError(f"DQ_DATABASE_URL: driver {make_url(url).drivername!r} cannot be loaded ({exc}); use {SUPPORTED}") from None


def _sqlite_transactions(engine: Engine) -> None:
    """Real BEGINs on SQLite: the stdlib driver's implicit transactions would break atomicity.

    Write transactions take the database lock up front (BEGIN IMMEDIATE): a deferred one that
    later upgrades can fail with "database is locked" when two processes write different catalogs.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("dq_write") else "BEGIN")
