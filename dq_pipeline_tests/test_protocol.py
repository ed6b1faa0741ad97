"""The write protocol under faults, on SQLite and on PostgreSQL, against embedded Qdrant.

Each fault test starts from a committed version 1 of a catalog and tries to write version 2
(4 updated entries, 1 deleted, 2 inserted: 6 new points in 3 Qdrant batches of 2), failing at one
protocol step. Afterwards both stores must show exactly version 1 (I3, I5) or, past the commit,
exactly version 2, every committed row must have its point with its vector (I1), and after a
handled failure the point ids of both stores must be equal (I2); after a crash the next sync or
repair must restore that.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from sqlalchemy import func, select

from dq_pipeline.catalog import Entry
from dq_pipeline.embedding import HashingEmbedder
from dq_pipeline.errors import ModelUnavailable
from dq_pipeline.sync import Hooks, SimulatedCrash, SyncedStore, SyncFailed
from dq_pipeline.sync.stores.schema import entries as entries_table
from dq_pipeline.sync.stores.schema import journal as journal_table
from dq_pipeline.sync.stores.schema import standby as standby_table

CATALOG = "warehouse/orders"


def column(i: int, version: int = 1) -> Entry:
    return Entry(
        key=f"orders.c{i}",
        kind="column",
        text=f"column orders.c{i}: version {version} of its description",
        payload={"table": "orders", "column": f"c{i}", "version": version},
    )


V1 = [column(i) for i in range(6)]
V2 = [column(i, 2) for i in range(4)] + [column(4)] + [column(6), column(7)]  # c5 deleted


def pg_rows(store: SyncedStore, catalog_id: str = CATALOG) -> dict[str, tuple[str, str]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(entries_table.c.entry_key, entries_table.c.content_hash, entries_table.c.point_id).where(
                entries_table.c.catalog_id == catalog_id
            )
        )
        return {r.entry_key: (r.content_hash, r.point_id) for r in rows}


def expected_rows(version: list[Entry]) -> dict[str, str]:
    return {e.key: e.content_hash for e in version}


def qdrant_ids(store: SyncedStore, catalog_id: str = CATALOG) -> set[str]:
    return {pid for c in store.index.collections() for pid in store.index.points_of_catalog(c, catalog_id)}


def journal_rows(store: SyncedStore) -> int:
    with store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(journal_table))


def assert_never_missing(store: SyncedStore, catalog_id: str = CATALOG) -> None:
    """I1: every committed row has its point, with the row's vector and payload."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(entries_table).where(entries_table.c.catalog_id == catalog_id)).all()
    for row in rows:
        found = store.index.client.retrieve(row.collection, [row.point_id], with_vectors=True, with_payload=True)
        assert found, f"row {row.entry_key} has no point {row.point_id}"
        assert found[0].payload["content_hash"] == row.content_hash
        assert found[0].payload["entry_key"] == row.entry_key
        np.testing.assert_allclose(found[0].vector, np.frombuffer(row.vector, dtype="<f4"), atol=1e-6)


def assert_state(store: SyncedStore, version: list[Entry]) -> None:
    """PostgreSQL holds exactly this version (I3), and I1 holds for it."""
    rows = pg_rows(store)
    assert {k: h for k, (h, _) in rows.items()} == expected_rows(version)
    assert_never_missing(store)


def standby_ids(store: SyncedStore, catalog_id: str = CATALOG) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.scalars(select(standby_table.c.point_id).where(standby_table.c.catalog_id == catalog_id)))


def assert_in_sync(store: SyncedStore) -> None:
    """I2: equal ID sets (the live rows' and the standby model's rows', if any), matching payloads,
    nothing left in the journal."""
    assert qdrant_ids(store) == {pid for _, pid in pg_rows(store).values()} | standby_ids(store)
    verification = store.verify(CATALOG)
    assert verification.in_sync, verification.counts()


@pytest.fixture
def v1(store: SyncedStore, embedder: HashingEmbedder) -> SyncedStore:
    result = store.sync(CATALOG, V1, embedder)
    assert (result.inserted, result.embedded) == (6, 6)
    assert_in_sync(store)
    return store


# --- I4: incremental and idempotent -------------------------------------------------------------


def test_unchanged_catalog_embeds_nothing_and_writes_nothing(v1: SyncedStore, embedder: HashingEmbedder) -> None:
    before = pg_rows(v1)
    with mock.patch.object(v1.index, "upsert", wraps=v1.index.upsert) as upsert:
        result = v1.sync(CATALOG, V1, embedder)
    assert (result.embedded, result.written, result.unchanged) == (0, 0, 6)
    assert embedder.embedded == 6  # only the first sync's
    upsert.assert_not_called()
    assert pg_rows(v1) == before


def test_editing_one_entry_embeds_one_updates_one_and_retires_its_old_point(v1: SyncedStore, embedder: HashingEmbedder) -> None:
    old_point = pg_rows(v1)["orders.c2"][1]
    edited = [column(i, 2 if i == 2 else 1) for i in range(6)]
    result = v1.sync(CATALOG, edited, embedder)
    assert (result.embedded, result.updated, result.inserted, result.deleted, result.unchanged) == (1, 1, 0, 0, 5)
    assert result.retired_points == 1
    new_point = pg_rows(v1)["orders.c2"][1]
    assert new_point != old_point
    assert old_point not in qdrant_ids(v1) and new_point in qdrant_ids(v1)
    assert_state(v1, edited)
    assert_in_sync(v1)


def test_deleting_an_entry_deletes_its_row_and_point(v1: SyncedStore, embedder: HashingEmbedder) -> None:
    gone = pg_rows(v1)["orders.c5"][1]
    result = v1.sync(CATALOG, V1[:5], embedder)
    assert (result.deleted, result.embedded) == (1, 0)
    assert "orders.c5" not in pg_rows(v1) and gone not in qdrant_ids(v1)
    assert_in_sync(v1)


def test_removed_catalog_is_synced_as_empty(v1: SyncedStore, embedder: HashingEmbedder) -> None:
    result = v1.sync(CATALOG, [], embedder)
    assert result.deleted == 6
    assert pg_rows(v1) == {} and qdrant_ids(v1) == set()
    assert CATALOG not in v1.status()["catalogs"]


def test_model_change_builds_a_new_collection_beside_the_old(v1: SyncedStore) -> None:
    """A sync with another model builds it as the standby (model_roles.py): the live collection is
    untouched until the switch; the switch embeds nothing, nor does switching back; drop-old deletes
    the old collection."""
    live, other = HashingEmbedder(), HashingEmbedder(dimension=16, model_id="test/other-model")
    old_collection, new_collection = v1.collection_for(live), v1.collection_for(other)
    result = v1.sync(CATALOG, V1, other)
    assert (result.written, result.embedded) == (0, 0)  # the live rows were current
    assert result.standby is not None and (result.standby.inserted, result.standby.embedded) == (6, 6)
    assert new_collection != old_collection
    assert len(v1.index.points_of_catalog(old_collection, CATALOG)) == 6
    assert len(v1.index.points_of_catalog(new_collection, CATALOG)) == 6
    assert v1.models()["live"].model_id == live.model_id and v1.models()["standby"].state == "building"
    assert_in_sync(v1)

    new_live, previous = v1.switch_model()
    assert (new_live.model_id, previous.model_id, previous.state) == (other.model_id, live.model_id, "previous")
    with v1.engine.connect() as conn:
        assert set(conn.scalars(select(entries_table.c.collection).distinct())) == {new_collection}
    assert {pid for _, pid in pg_rows(v1).values()} == set(v1.index.points_of_catalog(new_collection, CATALOG))
    assert v1.search(other, V1[0].text, limit=1)[0].entry_key == V1[0].key  # served by the new live model now
    with pytest.raises(ModelUnavailable, match="live model test/other-model"):
        v1.search(live, V1[0].text)  # never the old model's vectors against the new collection
    assert_in_sync(v1)
    back, _ = v1.switch_model(rollback=True)
    assert back.model_id == live.model_id
    again, _ = v1.switch_model()
    assert again.model_id == other.model_id
    calls = len(other.calls)
    v1.sync(CATALOG, V1, other)
    assert len(other.calls) == calls, "a sync after the switches embedded again"

    assert v1.drop_standby() == old_collection
    assert not v1.index.client.collection_exists(old_collection)
    assert "standby" not in v1.models()
    assert_in_sync(v1)


# --- handled failures: nothing lost, nothing left (I1, I2, I3, I5) -------------------------------


def failing_upsert(store: SyncedStore, failing_call: int, after_write: bool):
    """Qdrant fails on one upsert call; `after_write`: the batch landed but its acknowledgement was lost."""
    real = store.index.client.upsert
    calls = {"n": 0}

    def upsert(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == failing_call + 1:
            if after_write:
                real(*args, **kwargs)
            raise ConnectionError(f"qdrant went away on batch {failing_call}")
        return real(*args, **kwargs)

    return mock.patch.object(store.index.client, "upsert", side_effect=upsert)


@pytest.mark.parametrize("after_write", [False, True], ids=["refused", "ack-lost"])
@pytest.mark.parametrize("batch", [0, 1, 2], ids=["first-batch", "middle-batch", "last-batch"])
def test_qdrant_failure_rolls_back_and_compensates(v1: SyncedStore, embedder: HashingEmbedder, batch: int, after_write: bool) -> None:
    with failing_upsert(v1, batch, after_write), pytest.raises(SyncFailed, match="qdrant went away"):
        v1.sync(CATALOG, V2, embedder)
    assert_state(v1, V1)
    assert_in_sync(v1)
    assert journal_rows(v1) == 0
    result = v1.sync(CATALOG, V2, embedder)
    assert (result.updated, result.inserted, result.deleted) == (4, 2, 1)
    assert_state(v1, V2)
    assert_in_sync(v1)


def _raise(exc: Exception):
    def handler(**_: object) -> None:
        raise exc

    return handler


@pytest.mark.parametrize(
    "point", ["journal_written", "pg_flushed", "qdrant_written", "before_commit"], ids=lambda p: f"fails-at-{p}"
)
def test_failure_before_commit_leaves_the_previous_version_in_both_stores(
    v1: SyncedStore, embedder: HashingEmbedder, point: str
) -> None:
    hooks = Hooks({point: _raise(RuntimeError(f"injected failure at {point}"))})
    with pytest.raises((SyncFailed, RuntimeError), match=f"injected failure at {point}"):
        v1.sync(CATALOG, V2, embedder, hooks=hooks)
    if point == "journal_written":  # raised outside the transaction: the next run recovers it
        v1.sync(CATALOG, V1, embedder)
    assert_state(v1, V1)
    assert_in_sync(v1)


def test_a_real_database_error_at_flush_is_compensated(v1: SyncedStore, embedder: HashingEmbedder) -> None:
    """PostgreSQL/SQLite itself refuses the write: a NULL in a NOT NULL column, raised by the database."""
    broken = [*V2[:-1], Entry(key="orders.c7", kind="column", text=None, payload={})]  # type: ignore[arg-type]
    with pytest.raises(SyncFailed, match="IntegrityError|NotNullViolation"):
        v1.sync(CATALOG, broken, HashingEmbedder_accepting_none())
    assert_state(v1, V1)
    assert_in_sync(v1)


def HashingEmbedder_accepting_none() -> HashingEmbedder:  # noqa: N802 - reads as a type at the call site
    class Lenient(HashingEmbedder):
        def embed(self, texts):
            return super().embed([t or "" for t in texts])

    return Lenient()


def test_previous_version_of_an_updated_entry_survives_a_failed_update(v1: SyncedStore, embedder: HashingEmbedder) -> None:
    key, (old_hash, old_point) = "orders.c1", pg_rows(v1)["orders.c1"]
    old_vector = v1.index.client.retrieve(v1.collection_for(embedder), [old_point], with_vectors=True)[0].vector
    with failing_upsert(v1, 2, after_write=True), pytest.raises(SyncFailed):
        v1.sync(CATALOG, V2, embedder)
    assert pg_rows(v1)[key] == (old_hash, old_point)
    survivor = v1.index.client.retrieve(v1.collection_for(embedder), [old_point], with_vectors=True)
    assert survivor and np.allclose(survivor[0].vector, old_vector)


def test_failed_force_reindex_keeps_the_points_committed_rows_use(v1: SyncedStore, embedder: HashingEmbedder) -> None:
    with failing_upsert(v1, 1, after_write=False), pytest.raises(SyncFailed):
        v1.sync(CATALOG, V1, embedder, force=True)
    assert_state(v1, V1)
    assert_in_sync(v1)
    result = v1.sync(CATALOG, V1, embedder, force=True)
    assert (result.updated, result.embedded, result.retired_points) == (6, 6, 0)
    assert_in_sync(v1)


def test_retirement_failure_after_commit_is_finished_by_the_next_sync(v1: SyncedStore, embedder: HashingEmbedder) -> None:
    with mock.patch.object(v1.index, "unguarded_delete", side_effect=ConnectionError("qdrant down after commit")):
        result = v1.sync(CATALOG, V2, embedder)
    assert result.retire_error and "journal keeps them" in result.retire_error
    assert_state(v1, V2)  # committed
    verification = v1.verify(CATALOG)
    assert (verification.orphans, verification.pending_journal) == (5, 1)  # 4 replaced + 1 deleted
    again = v1.sync(CATALOG, V2, embedder)
    assert (again.recovered_journal_rows, again.written, again.embedded) == (1, 0, 0)
    assert_in_sync(v1)


def test_qdrant_unreachable_even_for_compensation_leaves_the_journal_for_the_next_run(
    v1: SyncedStore, embedder: HashingEmbedder
) -> None:
    with (
        failing_upsert(v1, 2, after_write=True),
        mock.patch.object(v1.index, "unguarded_delete", side_effect=ConnectionError("qdrant down")),
        pytest.raises(SyncFailed),
    ):
        v1.sync(CATALOG, V2, embedder)
    assert_state(v1, V1)
    verification = v1.verify(CATALOG)
    # The 6 new points are named by the pending journal row: recorded leftovers, never counted (nor
    # deleted) as orphans; 6 committed + 6 leftover points in Qdrant.
    assert (verification.pending_journal, verification.orphans, verification.qdrant) == (1, 0, 12)
    assert not verification.in_sync
    repaired = v1.repair(CATALOG)
    assert repaired.journal_rows_finished == 1 and repaired.after.in_sync
    assert_state(v1, V1)


# --- crashes: the process dies at each step (I1 always; next run restores I2) --------------------

BEFORE_COMMIT = ["locked", "journal_written", "pg_flushed", "qdrant_batch", "qdrant_written", "before_commit"]
AFTER_COMMIT = ["committed", "retired"]


def _crash(**_: object) -> None:
    raise SimulatedCrash()


@pytest.mark.parametrize("point", BEFORE_COMMIT + AFTER_COMMIT)
@pytest.mark.parametrize("recovery", ["next-sync", "repair"])
def test_crash_at_each_step_is_recovered(v1: SyncedStore, embedder: HashingEmbedder, point: str, recovery: str) -> None:
    handler = _crash
    if point == "qdrant_batch":  # die with the first batch written and the rest not

        def handler(batch: int, **_: object) -> None:
            if batch == 1:
                raise SimulatedCrash()

    with pytest.raises(SimulatedCrash):
        v1.sync(CATALOG, V2, embedder, hooks=Hooks({point: handler}))
    survived = V1 if point in BEFORE_COMMIT else V2
    assert_state(v1, survived)  # exactly one version, every row with its point
    if recovery == "repair":
        assert v1.repair(CATALOG).after.in_sync
        assert_state(v1, survived)
    else:
        v1.sync(CATALOG, V2, embedder)
        assert_state(v1, V2)
    assert_in_sync(v1)
