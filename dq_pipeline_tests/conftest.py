"""Shared fixtures: real stores on SQLite and PostgreSQL, embedded Qdrant, fake and real embedders.

PostgreSQL comes from DQ_TEST_DATABASE_URL when set, else from a throwaway server started from a
pip wheel (pg_server.py). With DQ_REQUIRE_POSTGRES=1 (as in .ci/run) a missing server fails the
run instead of skipping the PostgreSQL tests; so does a missing RabbitMQ or Redis for the Celery test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import create_engine

from dq_pipeline.embedding import HashingEmbedder
from dq_pipeline.sync import SyncedStore
from dq_pipeline.sync.stores.schema import metadata

from .pg_server import provide_postgres_url

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CATALOGS = REPO / "catalogs"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


# The fast tier (`python -m pytest -m "not slow"`) runs each test once, on the default stores
# (SQLite + qdrant-client's local mode), in-process and with the hashing embedder. Here `slow` is
# added to what needs more by its nature: the real model (`model`, or the `real_embedder` fixture),
# Dagster runs (`dagster`), PostgreSQL (the `postgres` marker, or the `postgres_url` fixture: a
# server, or a throwaway one to start) and the Qdrant Edge repeat of a store test. The other tests
# that took over ~1 s in a full `--durations=0` run (subprocesses, kills and lock waits, large
# catalogs, memory bounds) carry `@pytest.mark.slow` (or a module-wide `pytestmark`) in their module.
# The full suite (`python -m pytest`, as in .ci/run) still runs every test.
_SLOW_BY_NATURE = ("model", "dagster", "postgres")
_SLOW_FIXTURES = frozenset({"postgres_url", "real_embedder"})


def _on_qdrant_edge(item: pytest.Item) -> bool:
    """The Edge case of a store parametrization: `qdrant_engine`/`engine` "edge", `any_store` "sqlite-edge"."""
    callspec = getattr(item, "callspec", None)
    values = callspec.params.values() if callspec is not None else ()
    return any(isinstance(value, str) and (value == "edge" or value.endswith("-edge")) for value in values)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if (
            any(item.get_closest_marker(name) for name in _SLOW_BY_NATURE)
            or not _SLOW_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))
            or _on_qdrant_edge(item)
        ):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    try:
        manager = provide_postgres_url()
        url = manager.__enter__()
    except Exception as exc:
        postgres_unavailable(f"no PostgreSQL server available: {exc}")
    try:
        yield url
    finally:
        manager.__exit__(None, None, None)


def postgres_unavailable(reason: str) -> NoReturn:
    """Fail where PostgreSQL is required (DQ_REQUIRE_POSTGRES=1, as in .ci/run), skip elsewhere."""
    service_unavailable("PostgreSQL", reason)


def service_unavailable(service: str, reason: str) -> NoReturn:
    """The same for the other servers the PostgreSQL-marked tests of the deploy layout need (RabbitMQ,
    Redis): .ci/run starts them with PostgreSQL, so one flag says they must be there."""
    if os.environ.get("DQ_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{service} is required (DQ_REQUIRE_POSTGRES=1): {reason}", pytrace=False)
    pytest.skip(reason)


def reset_postgres(url: str) -> None:
    """Each test starts from an empty system of record."""
    from dq_pipeline.defs.folder_scan import _metadata as sensor_metadata

    engine = create_engine(url)
    metadata.drop_all(engine)
    sensor_metadata.drop_all(engine)  # the folder sensor's per-file state lives in the record too
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every protocol test runs on both systems of record."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dq.sqlite3'}"
    url = request.getfixturevalue("postgres_url")
    reset_postgres(url)
    return url


@pytest.fixture
def qdrant_path(tmp_path: Path) -> str:
    return str(tmp_path / "qdrant")


@pytest.fixture(params=["local", "edge"])
def qdrant_engine(request: pytest.FixtureRequest) -> str:
    """The embedded store: qdrant-client's local mode (the default) and Qdrant Edge (opt-in)."""
    return request.param


@pytest.fixture
def store(database_url: str, qdrant_path: str, qdrant_engine: str) -> Iterator[SyncedStore]:
    with SyncedStore.open(
        database_url, qdrant_path=qdrant_path, upsert_batch_size=2, lock_timeout_s=30, embedded_engine=qdrant_engine
    ) as opened:
        yield opened


@pytest.fixture
def embedder() -> HashingEmbedder:
    """Deterministic vectors for protocol tests, where meaning does not matter."""
    return HashingEmbedder()


@pytest.fixture(scope="session")
def real_embedder():
    from dq_pipeline.embedding import load_embedder

    return load_embedder()


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    """A private copy of the sample catalogs that a test may edit."""
    target = tmp_path / "catalogs"
    shutil.copytree(SAMPLE_CATALOGS, target)
    return target


@pytest.fixture
def env(database_url: str, tmp_path: Path, catalog_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The DQ_* environment of a CLI run on this test's stores and catalog copy."""
    values = {
        "DQ_DATABASE_URL": database_url,
        "DQ_DATA_DIR": str(tmp_path / "data"),
        "DQ_CATALOG_DIR": str(catalog_dir),
    }
    for name in ("DQ_QDRANT_URL", "DQ_QDRANT_PATH", "DQ_QDRANT_API_KEY", "DQ_EMBEDDING_MODEL", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture(autouse=True)
def _no_disposed_dagster_instance_left_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dagster keeps the state storage of the instance last entered (`with instance:`) in a context
    variable; an instance disposed while it is still there (a run's own instance, a fixture's) leaves
    a dead weakref, and the next `Definitions` built in that context fails to resolve it ("undefined
    DagsterInstance weakref"). Tests build many Definitions beside many short-lived instances: a
    storage whose instance is gone is treated as none, as it would be in a fresh process."""
    from dagster._core.storage.defs_state.base import DefsStateStorage, _current_storage

    _current_storage.set(None)
    real = DefsStateStorage.get.__func__  # type: ignore[attr-defined]

    def live_only(cls):  # type: ignore[no-untyped-def]
        storage = real(cls)
        if storage is not None and getattr(storage, "_instance_weakref", None) is not None and storage._instance_weakref() is None:
            return None
        return storage

    monkeypatch.setattr(DefsStateStorage, "get", classmethod(live_only))
