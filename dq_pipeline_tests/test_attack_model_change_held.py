"""Attacks on the model change that did NOT break anything (kept as regression tests).

The breaks are in test_attack_model_change.py; these are the evidence for what held.
"""

from __future__ import annotations

import pytest
from qdrant_client import models as qm
from sqlalchemy import func, select, text

from dq_pipeline.catalog import Entry
from dq_pipeline.errors import ConfigurationError, LockLost
from dq_pipeline.sync import Hooks, SyncedStore, model_roles
from dq_pipeline.sync.stores.schema import entries, standby

from .test_attack_model_change import (
    CATALOGS,
    A,
    B,
    C,
    assert_every_row_has_its_point,
    found,
    live_a,  # noqa: F401  (fixture)
    local_store,  # noqa: F401  (fixture)
    not_in_sync,
)


def models_in(store: SyncedStore, table) -> set[str]:  # type: ignore[no-untyped-def]
    with store.engine.connect() as conn:
        return set(conn.scalars(select(table.c.model).distinct()))


def every_entry_found(store: SyncedStore, embedder) -> bool:  # type: ignore[no-untyped-def]
    return all(found(store, embedder, e, cid) for cid, items in CATALOGS.items() for e in items)


def test_a_third_model_configured_mid_build_replaces_the_standby_row_by_row(live_a: SyncedStore) -> None:
    store = live_a
    first = next(iter(CATALOGS))
    store.sync(first, CATALOGS[first], B)  # B built for one catalog of three
    assert models_in(store, standby) == {B.model_id}
    store.build_standby(C)  # a third model: every standby row re-embedded with C, B's points retired
    assert models_in(store, standby) == {C.model_id} and models_in(store, entries) == {A.model_id}
    assert store.model_status()["standby"]["complete"]
    assert not_in_sync(store) == {}
    assert_every_row_has_its_point(store)
    b_collection = store.collection_for(B)
    assert store.index.client.count(b_collection).count == 0  # (the empty collection itself stays: see the report)
    assert every_entry_found(store, A)
    store.switch_model()
    assert every_entry_found(store, C) and not_in_sync(store) == {}


def test_switch_then_a_sync_configured_with_the_old_model_then_rollback(live_a: SyncedStore) -> None:
    store = live_a
    store.build_standby(B)
    store.switch_model()
    catalog_id, items = next(iter(CATALOGS.items()))
    edited = [Entry(items[0].key, items[0].kind, items[0].text + " edited after the switch", items[0].payload), *items[1:3]]
    result = store.sync(catalog_id, edited, A)  # a worker still configured with A: B stays live, A follows as the standby
    assert store.models()["live"].model_id == B.model_id and store.models()["standby"].state == "previous"
    assert (result.updated, result.deleted) == (1, 1) and result.standby is not None and (result.standby.updated, result.standby.deleted) == (1, 1)
    assert found(store, B, edited[0], catalog_id)
    calls = (len(A.calls), len(B.calls))
    store.switch_model(rollback=True)
    assert (len(A.calls), len(B.calls)) == calls
    assert found(store, A, edited[0], catalog_id) and not found(store, A, items[3], catalog_id)
    assert models_in(store, entries) == {A.model_id} and models_in(store, standby) == {B.model_id}
    assert not_in_sync(store) == {}
    assert_every_row_has_its_point(store)


def test_tampered_standby_points_are_found_by_verify_refuse_the_switch_and_are_repaired(live_a: SyncedStore) -> None:
    store = live_a
    store.build_standby(B)
    collection = store.collection_for(B)
    catalog_id, items = next(iter(CATALOGS.items()))
    with store.engine.connect() as conn:
        ids = list(conn.scalars(select(standby.c.point_id).where(standby.c.catalog_id == catalog_id).order_by(standby.c.entry_key)))
    client = store.index.client
    client.delete(collection, points_selector=qm.PointIdsList(points=[ids[0]]), wait=True)
    client.set_payload(collection, payload={"content_hash": "tampered"}, points=[ids[1]], wait=True)
    payload = client.retrieve(collection, [ids[2]], with_payload=True)[0].payload
    client.upsert(collection, points=[qm.PointStruct(id=ids[2], vector=[1.0] + [0.0] * 47, payload=payload)], wait=True)
    client.upsert(collection, points=[qm.PointStruct(id="00000000-0000-0000-0000-000000000001", vector=[1.0] * 48, payload={"catalog_id": catalog_id})], wait=True)
    shallow, deep = store.verify(catalog_id), store.verify(catalog_id, deep=True)
    assert (shallow.missing, shallow.mismatched, shallow.orphans) == (1, 1, 1)
    assert (deep.missing, deep.mismatched, deep.orphans) == (1, 2, 1)  # the overwritten vector only with --deep
    with pytest.raises(ConfigurationError, match="do not verify"):
        store.switch_model()
    repaired = store.repair(catalog_id, deep=True)
    assert repaired.after.in_sync and (repaired.restored, repaired.rewritten, repaired.orphans_deleted) == (1, 2, 1)
    assert_every_row_has_its_point(store)
    store.switch_model()
    assert every_entry_found(store, B)


def test_catalogs_removed_and_added_during_the_build(live_a: SyncedStore) -> None:
    store = live_a
    store.build_standby(B)
    ids = list(CATALOGS)
    store.sync(ids[0], [], A)  # removed during the build: its standby rows go with it
    with store.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(standby).where(standby.c.catalog_id == ids[0])) == 0
    assert store.model_status()["standby"]["complete"]
    new = [Entry("n.c0", "column", "a brand new catalog after the build", {})]
    store.load_model = lambda role: A if role.model_id == A.model_id else (_ for _ in ()).throw(RuntimeError("B is not on this worker"))
    result = store.sync("late/added", new, A)  # added after the build, on a worker that cannot load B
    assert result.standby_error is not None and "cannot be loaded here" in result.standby_error
    with pytest.raises(ConfigurationError, match="built for 2 of 3 catalogs"):
        store.switch_model()
    store.load_model = lambda role: {A.model_id: A, B.model_id: B}[role.model_id]
    store.build_standby()
    store.switch_model()
    assert found(store, B, new[0], "late/added") and not_in_sync(store) == {}


def test_force_reindex_during_the_build_rewrites_both_models_and_keeps_decisions(live_a: SyncedStore) -> None:
    store = live_a
    store.build_standby(B)
    catalog_id, items = next(iter(CATALOGS.items()))
    store.reject(catalog_id, [items[0].key], by="ana", reason="pii")
    calls_b = B.embedded
    result = store.sync(catalog_id, items, A, force=True)
    assert result.updated == len(items) and result.standby is not None and result.standby.updated == len(items)
    assert B.embedded - calls_b == len(items)
    store.switch_model()
    assert not found(store, B, items[0], catalog_id) and found(store, B, items[1], catalog_id)
    with store.engine.connect() as conn:
        assert conn.scalar(select(entries.c.reviewed_by).where(entries.c.entry_key == items[0].key)) == "ana"
    assert not_in_sync(store) == {}


def test_a_rejected_version_never_comes_back_through_the_standby(live_a: SyncedStore) -> None:
    store = live_a
    store.build_standby(B)
    catalog_id, items = next(iter(CATALOGS.items()))
    store.reject(catalog_id, [items[0].key], by="ana", reason="pii")
    store.cleanup_rejected(catalog_id)
    changed = [Entry(items[0].key, items[0].kind, items[0].text + " v2", items[0].payload), *items[1:]]
    store.sync(catalog_id, changed, A)  # new content: it comes back
    store.sync(catalog_id, items, A)  # changed back to the rejected version: stays out, in both models
    with store.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(standby).where(standby.c.entry_key == items[0].key)) == 0
    store.switch_model()
    store.sync(catalog_id, items, B)
    assert not found(store, B, items[0], catalog_id)
    store.switch_model(rollback=True)
    assert not found(store, A, items[0], catalog_id) and not_in_sync(store) == {}


@pytest.mark.postgres
def test_the_lock_session_killed_during_the_standby_step(live_a: SyncedStore) -> None:
    store = live_a
    if store.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL advisory locks")
    store.build_standby(B)
    catalog_id, items = next(iter(CATALOGS.items()))
    edited = [Entry(e.key, e.kind, e.text + " (edited)", e.payload) for e in items]
    seen = {"n": 0}

    def kill_the_lock_session(**_: object) -> None:
        seen["n"] += 1
        if seen["n"] == 2:
            with store.engine.connect() as conn:
                killed = conn.scalar(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid() "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                ))
                assert killed == 1

    with pytest.raises(LockLost):
        store.sync(catalog_id, edited, A, hooks=Hooks({"qdrant_written": kill_the_lock_session}))
    assert all(found(store, A, e, catalog_id) for e in edited)  # the live commit stands
    assert_every_row_has_its_point(store)
    again = store.sync(catalog_id, edited, A)
    assert again.written == 0 and again.standby is not None and again.standby.updated == len(items)
    assert not_in_sync(store) == {}
    store.switch_model()
    assert all(found(store, B, e, catalog_id) for e in edited)


def test_switch_is_refused_when_the_live_content_moved_past_the_standby(live_a: SyncedStore) -> None:
    store = live_a
    store.build_standby(B)
    catalog_id, items = next(iter(CATALOGS.items()))
    store.load_model = lambda role: A if role.model_id == A.model_id else (_ for _ in ()).throw(RuntimeError("no B here"))
    edited = [Entry(items[0].key, items[0].kind, items[0].text + " v2", items[0].payload), *items[1:]]
    store.sync(catalog_id, edited, A)
    with pytest.raises(ConfigurationError, match="built for 2 of 3"):
        store.switch_model()
    with pytest.raises(ConfigurationError, match="not built for 1 catalog"):
        model_roles.swap(store.engine, B.model_id)  # the atomic step checks again
    assert models_in(store, entries) == {A.model_id}
