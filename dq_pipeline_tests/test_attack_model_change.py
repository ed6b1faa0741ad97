"""Adversarial tests of the zero-downtime model change (sync/write/model_roles.py).

Each test is an attack on one guarantee of the blue/green model change, with real parts: SQLite
and PostgreSQL, qdrant-client's local mode (or the FakeQdrant REST server where a crash needs the
index to outlive the process), HashingEmbedder. A test that fails names what breaks.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from sqlalchemy import select

from dq_pipeline.catalog import Entry
from dq_pipeline.embedding import HashingEmbedder
from dq_pipeline.errors import ModelSwitched, StoreUnavailable
from dq_pipeline.sync import Hooks, SyncedStore, model_roles
from dq_pipeline.sync.stores.schema import ENTRY_TABLES

A = HashingEmbedder(32, "test/model-a")
B = HashingEmbedder(48, "test/model-b")
C = HashingEmbedder(40, "test/model-c")
CATALOGS = {
    f"team{n}/tables": [Entry(f"t{n}.c{i}", "column", f"team {n} column {i}: {word}", {"n": n, "i": i}) for i, word in enumerate(("ssn", "email", "amount", "country"))]
    for n in range(3)
}


def _load(role: model_roles.ModelRole) -> HashingEmbedder:
    return {A.model_id: A, B.model_id: B, C.model_id: C}[role.model_id]


@pytest.fixture
def local_store(database_url: str, qdrant_path: str):
    with SyncedStore.open(database_url, qdrant_path=qdrant_path, upsert_batch_size=2, lock_timeout_s=30, embedded_engine="local") as opened:
        opened.load_model = _load
        yield opened


@pytest.fixture
def live_a(local_store: SyncedStore) -> SyncedStore:
    for catalog_id, items in CATALOGS.items():
        local_store.sync(catalog_id, items, A)
    return local_store


def found(store: SyncedStore, embedder: HashingEmbedder, entry: Entry, catalog_id: str) -> bool:
    return (catalog_id, entry.key) in {(h.catalog_id, h.entry_key) for h in store.search(embedder, entry.text, limit=20)}


def not_in_sync(store: SyncedStore) -> dict[str, dict[str, int]]:
    bad = {}
    for catalog_id in store.known_catalogs():
        v = store.verify(catalog_id)
        if not v.in_sync:
            bad[catalog_id] = v.counts()
    return bad


def assert_every_row_has_its_point(store: SyncedStore) -> None:
    """I1 for both tables: every committed row's point exists with the row's vector and payload."""
    for table in ENTRY_TABLES:
        with store.engine.connect() as conn:
            rows = conn.execute(select(table)).all()
        for row in rows:
            got = store.index.client.retrieve(row.collection, [row.point_id], with_vectors=True, with_payload=True) if store.index.client.collection_exists(row.collection) else []
            assert got, f"{table.name} row {row.catalog_id}/{row.entry_key} has no point {row.collection}/{row.point_id}"
            assert got[0].payload["content_hash"] == row.content_hash and got[0].payload["written_by"] == row.written_by
            np.testing.assert_allclose(got[0].vector, np.frombuffer(row.vector, dtype="<f4") / np.linalg.norm(np.frombuffer(row.vector, dtype="<f4")), atol=1e-5)


# --- 1. cleanup-rejected is not fenced by the model role ---------------------------------------


def test_cleanup_rejected_racing_a_switch_leaves_orphans_in_the_new_live_collection(live_a: SyncedStore) -> None:
    """Attack: a cleanup of rejected entries plans (its plan holds the live rows' model-A point ids),
    the switch to B commits while it writes, then the cleanup commits. Its commit deletes the live
    rows, whose points are by then model B's in B's collection, but it only retires the A ids it
    planned with (which the standby rows now use, so the guard keeps them). The B points of the
    deleted entries are left in the live collection with no row and no journal row: orphans after
    a run that ended (I2). `remove_rejected` commits with `versions=None`, so `_write` never calls
    `assert_role` for it: a removal planned before a switch commits after it."""
    store = live_a
    store.build_standby(B)
    catalog_id, items = next(iter(CATALOGS.items()))
    store.reject(catalog_id, [items[0].key], by="ana", reason="pii")

    def switch_behind_its_back(**_: object) -> None:
        model_roles.swap(store.engine, B.model_id)  # `model switch` from another process

    try:
        store.cleanup_rejected(catalog_id, hooks=Hooks({"journal_written": switch_behind_its_back}))
    except ModelSwitched:
        pass  # refusing the planned-before-the-switch removal is a correct outcome
    assert store.models()["live"].model_id == B.model_id
    store.sync(catalog_id, items, B)  # the next run of the catalog, with the roles as they are now
    assert not found(store, B, items[0], catalog_id)
    assert not_in_sync(store) == {}, "the cleanup that straddled the switch left orphan points"


# --- 2. drop-old forgets rows of every model but deletes one collection ------------------------


def test_drop_old_after_a_third_model_replaced_the_previous_one_leaves_its_points_orphaned(live_a: SyncedStore) -> None:
    """Attack: switch A -> B (A is kept as the previous model, with every catalog's rows and points),
    then configure a third model C: `record_standby` replaces the standby role, but dq_standby still
    holds A's rows for every catalog not synced since. `drop-old` now deletes *every* dq_standby row
    (forget_standby) but only C's collection: the A points of those rows stay in A's collection with
    no row and no journal row naming them (I2: orphans after a run that ended), and no later
    `drop-old` can remove that collection (no standby is recorded any more)."""
    store = live_a
    store.build_standby(B)
    store.switch_model()
    first = next(iter(CATALOGS))
    store.sync(first, CATALOGS[first], C)  # C configured: it replaces A as the standby; one catalog re-embedded
    assert store.models()["standby"].model_id == C.model_id
    store.drop_standby()
    assert not_in_sync(store) == {}, "drop-old left the replaced standby model's points behind as orphans"
    assert not store.index.client.collection_exists(store.collection_for(A)), "the replaced model's collection was never dropped"


def test_drop_old_interrupted_before_the_collection_delete_leaves_unrecorded_orphans(live_a: SyncedStore) -> None:
    """Attack: drop-old commits its row deletion (forget_standby) and then Qdrant fails (or the
    process is killed) before `drop_collection`. The standby collection keeps every point, none of
    them named by a row or a journal row (I2: crash leftovers must be recorded), and drop-old cannot
    be retried: it answers 'no standby model is recorded: nothing to drop'. Nothing ever deletes the
    collection; verify reports every standby point as an orphan of every catalog."""
    store = live_a
    store.build_standby(B)
    store.switch_model()
    with mock.patch.object(store.index.client, "delete_collection", side_effect=ConnectionError("qdrant went away")):
        with pytest.raises(StoreUnavailable, match="qdrant went away"):  # translated where Qdrant is called
            store.drop_standby()
    try:
        store.drop_standby()  # the operator retries the failed drop-old
    except Exception:
        pass
    for catalog_id, items in CATALOGS.items():  # and later runs sync every catalog
        store.sync(catalog_id, items, B)
    assert not_in_sync(store) == {}, "the interrupted drop-old left orphans no run removes"
    assert not store.index.client.collection_exists(store.collection_for(A)), "the dropped model's collection is never deleted"


# --- 3. search straddling the switch ------------------------------------------------------------


def test_a_search_that_straddles_the_switch_still_finds_every_live_entry(live_a: SyncedStore) -> None:
    """Attack: a search reads the live role (A), embeds the query with A, and while Qdrant answers,
    the switch commits. The candidates come from A's collection, but `search._verified` keeps only
    points the *live* rows use in that collection, and the live rows now hold B's point ids: the
    search returns nothing at all, though every entry is live and indexed in both models."""
    store = live_a
    store.build_standby(B)
    catalog_id, items = next(iter(CATALOGS.items()))
    real = store.index.client.query_points
    switched = {"done": False}

    def query_then_switch(*args, **kwargs):  # type: ignore[no-untyped-def]
        answer = real(*args, **kwargs)
        if not switched["done"]:
            switched["done"] = True
            model_roles.swap(store.engine, B.model_id)  # `model switch` in another process, meanwhile
        return answer

    with mock.patch.object(store.index.client, "query_points", side_effect=query_then_switch):
        hits = store.search(A, items[1].text, limit=20)
    assert switched["done"]
    assert (catalog_id, items[1].key) in {(h.catalog_id, h.entry_key) for h in hits}, f"search during the switch returned {hits}"


# --- 4. two models, one collection -------------------------------------------------------------


def _colliding_model_ids() -> tuple[str, str]:
    """Two model ids with the same collection name: the slug keeps 80 characters and the digest
    6 hex digits (24 bits), so ids that differ after the 80th character collide after ~4k tries."""
    import hashlib

    seen: dict[str, str] = {}
    base = "org/" + "m" * 80
    for i in range(1_000_000):
        model_id = f"{base}-{i}"
        digest = hashlib.sha256(model_id.encode()).hexdigest()[:6]
        if digest in seen:
            return seen[digest], model_id
        seen[digest] = model_id
    raise AssertionError("no collision found")


def test_two_models_sharing_a_collection_name_leave_orphans_after_drop_old(local_store: SyncedStore) -> None:
    """Attack: two different models whose collection names are equal (same 80-character slug, same
    24-bit digest: `point_ids.collection_name`). `record_standby` accepts the second model although
    its collection *is* the live one, so both models' points share one collection (a query of one
    model is run against the other's vectors). After the switch, drop-old deletes the standby rows
    but not the collection (`forget_standby` sees it is the live one), and nothing deletes the old
    model's points in it: orphans after a run that ended (I2)."""
    first, second = _colliding_model_ids()
    X, Y = HashingEmbedder(32, first), HashingEmbedder(32, second)
    store = local_store
    assert store.collection_for(X) == store.collection_for(Y)
    store.load_model = lambda role: {X.model_id: X, Y.model_id: Y}[role.model_id]
    for catalog_id, items in CATALOGS.items():
        store.sync(catalog_id, items, X)
    try:
        store.build_standby(Y)
    except Exception:
        return  # refusing a standby whose collection is the live one's is a correct outcome
    store.switch_model()
    store.drop_standby()
    assert not_in_sync(store) == {}, "the old model's points stayed in the shared collection"


# --- 5. the standby's vectors in the vector cache ----------------------------------------------


def test_the_standby_models_vectors_left_in_the_vector_cache_are_never_evicted(live_a: SyncedStore) -> None:
    """Attack: the Dagster embedding step embeds with the *configured* model and leaves its vectors
    in `dq_vector_cache` for the write step. Configure the new model B: the write step's live part
    (A) embeds nothing, the standby part takes B's vectors from the cache, but only the live
    model's entries are evicted (`sync_catalog` evicts `embedder.model_id` only; `mirror_standby`
    never evicts): every vector of the whole build stays in the record for good."""
    from sqlalchemy import func

    from dq_pipeline.sync import vector_cache
    from dq_pipeline.sync.stores.schema import vector_cache as cache_table

    store = live_a
    catalog_id, items = next(iter(CATALOGS.items()))
    vector_cache.put(store.engine, B.model_id, [e.content_hash for e in items], B.embed([e.text for e in items]))  # the embedding step
    result = store.sync(catalog_id, items, B, use_vector_cache=True)  # the write step
    assert result.standby is not None and result.standby.inserted == len(items) and result.standby.embedded == 0
    with store.engine.connect() as conn:
        left = conn.scalar(select(func.count()).select_from(cache_table))
    assert left == 0, f"{left} vectors of the standby model stay in dq_vector_cache after their rows committed"


def test_drop_old_while_one_catalogs_standby_write_is_in_flight_orphans_every_catalogs_points(live_a: SyncedStore) -> None:
    """Attack: drop-old while a sync's standby step is between its points and its commit. drop-old
    deletes every standby row of every catalog (forget_standby), then asks `guard.drop_collection`,
    which (rightly) refuses because the in-flight run's pending journal row names points in it.
    The in-flight commit is refused (no standby any more) and compensated, but the collection
    stays with every *other* catalog's standby points, none named by a row or a journal row:
    orphans in every catalog after the runs ended (I2), and drop-old cannot be run again."""
    store = live_a
    store.build_standby(B)
    catalog_id, items = next(iter(CATALOGS.items()))
    edited = [Entry(e.key, e.kind, e.text + " (edited)", e.payload) for e in items]
    seen = {"n": 0}

    def drop_old_meanwhile(**_: object) -> None:
        seen["n"] += 1
        if seen["n"] == 2:  # the standby's points are written, its commit not begun
            store.drop_standby()

    result = store.sync(catalog_id, edited, A, hooks=Hooks({"qdrant_written": drop_old_meanwhile}))
    assert result.updated == len(items) and result.standby_error is not None
    assert "standby" not in store.models()
    assert_every_row_has_its_point(store)
    assert not_in_sync(store) == {}, "drop-old left the other catalogs' standby points as unrecorded orphans"
