"""Regression tests for the holes an adversarial review found in the guarantees (issue 10).

Each test reproduces one way the review broke I1-I8 on e492d53, on SQLite and PostgreSQL and on
both embedded Qdrant engines; the ones that apply to a Qdrant server also run over qdrant-client's
HTTP path against the REST stand-in (fake_qdrant.py).
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from sqlalchemy import select, text

from dq_pipeline.catalog import ABSENT, Entry
from dq_pipeline.embedding import HashingEmbedder
from dq_pipeline.errors import LockLost, StaleSource
from dq_pipeline.sync import Hooks, Source, SyncedStore, SyncFailed, open_record
from dq_pipeline.sync.stores.qdrant_index import QdrantIndex
from dq_pipeline.sync.stores.schema import ACTIVE, REJECTED, catalogs, entries

from .conftest import reset_postgres
from .fake_qdrant import FakeQdrant
from .test_protocol import (
    CATALOG,
    V1,
    V2,
    assert_in_sync,
    assert_never_missing,
    assert_state,
    pg_rows,
    qdrant_ids,
)

PACKAGE = Path(__file__).resolve().parent.parent / "dq_pipeline"


_PG = pytest.mark.postgres


@pytest.fixture(
    params=[
        "sqlite-local",
        "sqlite-edge",
        pytest.param("postgres-local", marks=_PG),
        pytest.param("postgres-edge", marks=_PG),
        pytest.param("postgres-server", marks=_PG),
    ]
)
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SyncedStore]:
    """Both systems of record on both embedded engines, and PostgreSQL + a Qdrant server over HTTP."""
    database, engine = request.param.split("-")
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'dq.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
        reset_postgres(url)
    if engine != "server":
        with SyncedStore.open(url, qdrant_path=str(tmp_path / "qdrant"), upsert_batch_size=2, lock_timeout_s=30, embedded_engine=engine) as opened:
            yield opened
        return
    with FakeQdrant() as fake:
        client = QdrantClient(url=fake.url, timeout=5, check_compatibility=False)
        opened = SyncedStore(open_record(url), QdrantIndex(client, prefix="dq", batch_size=2), "pg", "server", lock_timeout_s=30)
        try:
            yield opened
        finally:
            opened.close()


def statuses(store: SyncedStore) -> dict[str, str]:
    with store.engine.connect() as conn:
        return dict(conn.execute(select(entries.c.entry_key, entries.c.status).where(entries.c.catalog_id == CATALOG)).all())  # type: ignore[arg-type]


# --- 1. a rejection is a decision about content (I7) ---------------------------------------------------


def test_rejection_survives_force_reindex_and_model_change_and_lapses_only_with_new_content(
    any_store: SyncedStore, embedder: HashingEmbedder
) -> None:
    store = any_store
    store.sync(CATALOG, V1, embedder)
    victim = V1[2]
    store.reject(CATALOG, [victim.key], by="ana", reason="pii")

    forced = store.sync(CATALOG, V1, embedder, force=True)
    assert forced.updated == len(V1)
    assert statuses(store)[victim.key] == REJECTED
    assert victim.key not in {h.entry_key for h in store.search(embedder, victim.text, limit=6)}

    other = HashingEmbedder(dimension=48, model_id="test/hashing-other")
    moved = store.sync(CATALOG, V1, other)  # builds the other model as the standby (every row, rejected or not)
    assert moved.standby is not None and moved.standby.inserted == len(V1) and moved.standby.embedded == len(V1)
    store.switch_model()
    assert statuses(store)[victim.key] == REJECTED
    with store.engine.connect() as conn:
        row = conn.execute(select(entries.c.reviewed_by, entries.c.review_reason).where(entries.c.entry_key == victim.key)).one()
    assert tuple(row) == ("ana", "pii")
    assert victim.key not in {h.entry_key for h in store.search(other, victim.text, limit=6)}

    changed = [Entry(victim.key, victim.kind, victim.text + " (edited)", victim.payload) if e.key == victim.key else e for e in V1]
    store.sync(CATALOG, changed, other)
    assert statuses(store)[victim.key] == ACTIVE  # new content: the decision lapsed
    assert_in_sync(store)


def test_content_changed_back_to_a_rejected_version_stays_out(store: SyncedStore, embedder: HashingEmbedder) -> None:
    victim = V1[2]
    store.sync(CATALOG, V1, embedder)
    store.reject(CATALOG, [victim.key])
    edited = [Entry(victim.key, victim.kind, victim.text + " v2", victim.payload) if e.key == victim.key else e for e in V1]
    store.sync(CATALOG, edited, embedder)
    assert statuses(store)[victim.key] == ACTIVE
    back = store.sync(CATALOG, V1, embedder)  # the rejected version again
    assert back.deleted == 1 and victim.key not in statuses(store)
    assert_in_sync(store)


# --- 3. repair never deletes a point a committed row uses (I1) --------------------------------------------


def test_repair_of_another_catalog_never_deletes_a_point_whose_payload_was_changed(
    any_store: SyncedStore, embedder: HashingEmbedder
) -> None:
    store = any_store
    store.sync(CATALOG, V1, embedder)
    store.sync("other/catalog", V2, embedder)
    collection = store.collection_for(embedder)
    victim = pg_rows(store)[V1[0].key][1]
    store.index.client.set_payload(collection, payload={"catalog_id": "other/catalog"}, points=[victim], wait=True)

    repaired = store.repair("other/catalog")
    assert repaired.orphans_deleted == 0 and repaired.after.in_sync
    assert store.index.retrieve(collection, [victim]), "repair deleted a point a committed row uses"
    tampered = store.verify(CATALOG)
    assert (tampered.mismatched, tampered.missing, tampered.orphans) == (1, 0, 0)
    assert store.repair(CATALOG).rewritten == 1
    assert_in_sync(store)
    assert store.verify("other/catalog").in_sync


# --- 4. a run that lost its lock cannot commit (fencing) ----------------------------------------------------


def _lose_lock(store: SyncedStore) -> None:
    """End the lock's session behind the run's back: a connection killer on PostgreSQL, a deleted lock
    file on SQLite (both release the lock while the run goes on)."""
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid() "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            )
    else:
        database = Path(store.engine.url.database).resolve()
        for lock_file in (database.parent / f"{database.name}.locks").glob("*.lock"):
            lock_file.unlink()


def _second_store(store: SyncedStore) -> SyncedStore:
    """Another run's stores: its own database engine, the same Qdrant (embedded Qdrant is one client per process)."""
    return SyncedStore(open_record(store.engine.url.render_as_string(hide_password=False)), store.index, "pg", "q", lock_timeout_s=30)


@pytest.mark.parametrize("where", ["qdrant_written", "qdrant_batch"])
def test_a_run_that_lost_its_lock_cannot_commit_and_leaves_its_points_recorded(
    store: SyncedStore, embedder: HashingEmbedder, where: str
) -> None:
    store.sync(CATALOG, V1, embedder)
    other = _second_store(store)
    newer = [*V1[:3], *V2[4:]]

    def takeover(**_: object) -> None:
        _lose_lock(store)
        other.sync(CATALOG, newer, embedder)  # takes the lock the first run lost, and commits

    hooks = Hooks({where: takeover} if where == "qdrant_written" else {where: lambda batch, **_: batch == 1 and takeover()})
    with pytest.raises((LockLost, SyncFailed)) as raised:
        store.sync(CATALOG, V2, embedder, hooks=hooks)
    assert "lost its lock" in str(raised.value)
    assert {k: h for k, (h, _) in pg_rows(store).items()} == {e.key: e.content_hash for e in newer}  # the newer run's version
    assert_never_missing(store)
    # The loser's points are recorded leftovers, never unnamed orphans; the next sync finishes them.
    leftovers = store.verify(CATALOG)
    assert leftovers.orphans == 0 and leftovers.missing == 0
    store.sync(CATALOG, newer, embedder)
    assert_in_sync(store)
    other.engine.dispose()


def test_a_lost_lock_without_a_takeover_still_refuses_the_commit(store: SyncedStore, embedder: HashingEmbedder) -> None:
    store.sync(CATALOG, V1, embedder)
    with pytest.raises(LockLost):
        store.sync(CATALOG, V2, embedder, hooks=Hooks({"qdrant_written": lambda **_: _lose_lock(store)}))
    assert_state(store, V1)
    store.sync(CATALOG, V2, embedder)
    assert_state(store, V2)
    assert_in_sync(store)


# --- 5. a point's vector is checked against the record ---------------------------------------------------


class ShiftedEmbedder(HashingEmbedder):
    """The same model id, other vectors: what a nondeterministic or silently changed model produces."""

    def embed(self, texts):  # type: ignore[no-untyped-def]
        return super().embed([t + " shifted" for t in texts])


def test_failed_force_reindex_with_other_vectors_restores_the_records_vectors(
    any_store: SyncedStore, embedder: HashingEmbedder
) -> None:
    store = any_store
    store.sync(CATALOG, V1, embedder)
    boom = Hooks({"before_commit": lambda **_: (_ for _ in ()).throw(RuntimeError("commit refused"))})
    with pytest.raises(SyncFailed):
        store.sync(CATALOG, V1, ShiftedEmbedder(), force=True, hooks=boom)
    assert_never_missing(store)  # every point holds the record's vector again
    assert store.verify(CATALOG, deep=True).in_sync


def test_verify_sees_a_vector_changed_behind_the_pipelines_back(any_store: SyncedStore, embedder: HashingEmbedder) -> None:
    store = any_store
    store.sync(CATALOG, V1, embedder)
    collection = store.collection_for(embedder)
    victim = pg_rows(store)[V1[1].key][1]
    payload, _ = store.index.retrieve(collection, [victim])[victim]
    wrong = -np.asarray(embedder.embed([V1[1].text])[0])  # cosine -1, payload untouched
    store.index.client.upsert(collection, [models.PointStruct(id=victim, vector=wrong.tolist(), payload=payload)], wait=True)
    assert store.verify(CATALOG).in_sync  # the payload digest alone cannot see it ...
    deep = store.verify(CATALOG, deep=True)  # ... the deep comparison does
    assert deep.mismatched == 1
    assert store.repair(CATALOG, deep=True).after.in_sync
    assert_never_missing(store)

    store.index.client.set_payload(collection, payload={"vector_digest": "0" * 16}, points=[victim], wait=True)
    assert store.verify(CATALOG).mismatched == 1  # a point claiming another vector is caught cheaply


# --- 8. no database transaction is open while Qdrant is written ------------------------------------------


def test_no_database_transaction_is_open_while_points_are_written(store: SyncedStore, embedder: HashingEmbedder) -> None:
    store.sync(CATALOG, V1, embedder)
    seen: list[bool] = []

    def probe(**_: object) -> None:
        if store.engine.dialect.name == "postgresql":
            with store.engine.connect() as conn:
                open_tx = conn.scalar(
                    text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'")
                )
            seen.append(open_tx == 0)
        else:  # another writer gets the database at once: nobody holds its write lock
            import sqlite3

            other = sqlite3.connect(store.engine.url.database, timeout=0, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
                seen.append(True)
            except sqlite3.OperationalError:
                seen.append(False)
            finally:
                other.close()

    store.sync(CATALOG, V2, embedder, hooks=Hooks({"qdrant_batch": probe, "qdrant_written": probe}))
    assert seen and all(seen), seen
    assert_in_sync(store)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_server_that_kills_idle_transactions_does_not_break_a_slow_write(
    store: SyncedStore, embedder: HashingEmbedder, database_url: str
) -> None:
    import time

    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        database = conn.scalar(text("SELECT current_database()"))
        conn.execute(text(f'ALTER DATABASE "{database}" SET idle_in_transaction_session_timeout = 500'))
    try:
        store.engine.dispose()  # new sessions take the setting
        store.sync(CATALOG, V1, embedder)
        store.sync(CATALOG, V2, embedder, hooks=Hooks({"qdrant_batch": lambda **_: time.sleep(0.8)}))
        assert_state(store, V2)
        assert_in_sync(store)
    finally:
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" RESET idle_in_transaction_session_timeout'))


# --- 10. never backwards: a parse older than the file cannot commit (I8) -------------------------------------


def _digest(entries_: list[Entry]) -> str:
    return hashlib.sha256("".join(e.content_hash for e in entries_).encode()).hexdigest()


def test_a_parse_older_than_the_file_on_disk_is_refused_and_the_digest_recorded(store: SyncedStore, embedder: HashingEmbedder) -> None:
    on_disk = {"digest": _digest(V1)}
    store.sync(CATALOG, V1, embedder, source=Source(_digest(V1), lambda: on_disk["digest"]))
    on_disk["digest"] = _digest(V2)
    store.sync(CATALOG, V2, embedder, source=Source(_digest(V2), lambda: on_disk["digest"]))
    # A retried or queued run that parsed v1 before v2 was written comes last:
    with pytest.raises(StaleSource):
        store.sync(CATALOG, V1, embedder, source=Source(_digest(V1), lambda: on_disk["digest"]))
    assert_state(store, V2)
    assert_in_sync(store)
    with store.engine.connect() as conn:
        assert conn.scalar(select(catalogs.c.source_digest).where(catalogs.c.catalog_id == CATALOG)) == _digest(V2)


def test_a_removal_is_refused_once_the_file_has_come_back(store: SyncedStore, embedder: HashingEmbedder) -> None:
    store.sync(CATALOG, V1, embedder)
    with pytest.raises(StaleSource):
        store.remove_catalog(CATALOG, embedder, source=Source(ABSENT, lambda: _digest(V1)))
    assert_state(store, V1)
    assert_in_sync(store)


def test_an_unchanged_catalog_records_a_new_source_digest_without_writing_entries(store: SyncedStore, embedder: HashingEmbedder) -> None:
    store.sync(CATALOG, V1, embedder, source=Source("a", lambda: "a"))
    before = pg_rows(store)
    again = store.sync(CATALOG, V1, embedder, source=Source("b", lambda: "b"))  # e.g. only whitespace changed
    assert (again.written, again.embedded) == (0, 0) and pg_rows(store) == before
    with store.engine.connect() as conn:
        assert conn.scalar(select(catalogs.c.source_digest).where(catalogs.c.catalog_id == CATALOG)) == "b"


# --- 11. points that name no catalog are reported, not verified as clean -------------------------------------


def test_points_without_a_catalog_id_are_reported_and_repaired(any_store: SyncedStore, embedder: HashingEmbedder) -> None:
    store = any_store
    store.sync(CATALOG, V1, embedder)
    collection = store.collection_for(embedder)
    stray = "00000000-0000-4000-8000-000000000001"
    store.index.client.upsert(collection, [models.PointStruct(id=stray, vector=embedder.embed(["x"])[0].tolist(), payload={})], wait=True)
    assert store.verify_unattributed()[0] == 1
    assert store.repair_unattributed() == 1
    assert store.verify_unattributed()[0] == 0
    assert stray not in qdrant_ids(store)
    assert_in_sync(store)


# --- the class: one guarded delete --------------------------------------------------------------------------


def _calls(name: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name:
                key = str(path.relative_to(PACKAGE))
                found[key] = found.get(key, 0) + 1
    return found


def test_every_deletion_of_points_goes_through_the_guard() -> None:
    # Qdrant's raw delete is called only inside the index adapter (QdrantIndex.unguarded_delete; the
    # Edge adapter implements the client's interface), and unguarded_delete only from guard.py.
    # (SQLAlchemy's `delete(table)` is a function, not a method call, so it does not count here.)
    assert set(_calls("unguarded_delete")) == {"sync/write/guard.py"}
    assert set(_calls("delete")) <= {"sync/stores/qdrant_index.py", "sync/stores/edge_client.py"}
    # A whole collection goes only through guard.drop_collection (a dropped standby model's).
    assert set(_calls("unguarded_drop")) == {"sync/write/guard.py"}
    assert set(_calls("delete_collection")) <= {"sync/stores/qdrant_index.py"}


# --- 11. remove_catalog does nothing once the catalog's file has come back ------------------------------------


@pytest.mark.dagster
def test_the_remove_job_does_nothing_when_the_file_is_back(tmp_path: Path, catalog_dir: Path) -> None:
    from dagster import instance_for_test

    from dq_pipeline.definitions import build_definitions, resources_for
    from dq_pipeline.settings import Settings

    settings = Settings.from_env(
        env={}, database_url=f"sqlite:///{tmp_path / 'dq.sqlite3'}", data_dir=str(tmp_path / "data"), catalog_dir=str(catalog_dir),
        embedding_model="hashing:32",
    )
    defs = build_definitions(resources_for(settings))
    config = {"ops": {"remove_catalog_data": {"config": {"catalog_id": "sales/orders"}}}}
    with instance_for_test() as instance:
        sync = defs.resolve_job_def("sync_catalog")
        instance.add_dynamic_partitions("catalogs", ["sales/orders"])
        assert sync.execute_in_process(partition_key="sales/orders", instance=instance).success
        with SyncedStore.open(settings.database_url, qdrant_path=settings.qdrant_path) as store:
            before = store.verify("sales/orders")
        assert before.pg > 0 and before.in_sync
        removed = defs.resolve_job_def("remove_catalog").execute_in_process(run_config=config, instance=instance)
        assert removed.success  # the file is there: nothing to do, not a failure
        with SyncedStore.open(settings.database_url, qdrant_path=settings.qdrant_path) as store:
            after = store.verify("sales/orders")
        assert (after.pg, after.qdrant, after.in_sync) == (before.pg, before.qdrant, True)
        (catalog_dir / "sales" / "orders.csv").unlink()
        assert defs.resolve_job_def("remove_catalog").execute_in_process(run_config=config, instance=instance).success
        with SyncedStore.open(settings.database_url, qdrant_path=settings.qdrant_path) as store:
            gone = store.verify("sales/orders")
        assert (gone.pg, gone.qdrant) == (0, 0)


# --- "not found" is never "removed" without positive evidence (I5) ---------------------------------------


def test_a_catalog_whose_folder_cannot_be_listed_is_not_read_as_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from dq_pipeline.catalog import SourceUnreadable, read_catalog

    (tmp_path / "finance").mkdir()
    (tmp_path / "finance" / "ledger.csv").write_text("table,column,description\nledger,amount,Amount\n", encoding="utf-8")
    assert len(read_catalog(tmp_path, "finance/ledger").entries) == 1
    real = os.scandir

    def unreadable(path="."):  # type: ignore[no-untyped-def]
        if Path(path).name == "finance":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", unreadable)
    with pytest.raises(SourceUnreadable, match="cannot be listed"):
        read_catalog(tmp_path, "finance/ledger")
    monkeypatch.setattr(os, "scandir", real)
    (tmp_path / "finance" / "ledger.csv").unlink()
    assert read_catalog(tmp_path, "finance/ledger").source_digest == ABSENT  # listed, and gone: removed


@pytest.mark.dagster
def test_sync_refuses_to_remove_every_catalog_of_an_empty_folder(env: dict[str, str], catalog_dir: Path) -> None:
    import shutil
    import subprocess
    import sys

    dq = str(Path(sys.executable).with_name("dq-pipeline"))
    run_env = {**__import__("os").environ, **env, "DQ_EMBEDDING_MODEL": "hashing:32"}
    assert subprocess.run([dq, "sync", "--json"], env=run_env, capture_output=True, text=True, check=False).returncode == 0
    shutil.rmtree(catalog_dir)
    catalog_dir.mkdir()  # what an unmounted mount point looks like
    done = subprocess.run([dq, "sync", "--json"], env=run_env, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "refusing to remove them all" in done.stderr, done.stderr
    verified = subprocess.run([dq, "verify", "--json"], env=run_env, capture_output=True, text=True, check=False)
    assert verified.returncode == 0 and all(c["pg"] > 0 for c in __import__("json").loads(verified.stdout)["catalogs"].values())
