"""The search index's contract (sync/stores/vector_index.py), held by every implementation: qdrant-client's
local mode, Qdrant Edge, the REST path (against the suite's Qdrant stand-in server), and the
in-memory index shipped in the package. Then the whole protocol on the in-memory index."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from dq_pipeline.catalog import Entry
from dq_pipeline.embedding import HashingEmbedder
from dq_pipeline.errors import ConfigurationError
from dq_pipeline.sync import InMemoryIndex, SyncedStore, VectorIndex
from dq_pipeline.sync.stores.qdrant_index import ANY_WRITER, Point, QdrantIndex, open_qdrant

from .fake_qdrant import FakeQdrant


@pytest.fixture(params=["local", "edge", "rest", "memory"])
def index(request: pytest.FixtureRequest, tmp_path) -> Iterator[VectorIndex]:  # type: ignore[no-untyped-def]
    if request.param == "memory":
        made: VectorIndex = InMemoryIndex(batch_size=2)
    elif request.param == "rest":
        fake = FakeQdrant()
        request.addfinalizer(fake.__exit__)
        fake.__enter__()
        made = QdrantIndex(open_qdrant(fake.url, None, None), batch_size=2)
    else:
        made = QdrantIndex(open_qdrant(None, None, str(tmp_path / "q"), embedded_engine=request.param), batch_size=2)
    yield made
    made.close()


ID = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(6)]


def point(i: int, catalog: str = "sales", writer: str | None = "run-1") -> Point:
    vector = np.zeros(4, dtype=np.float32)
    vector[i % 4] = 1.0
    vector[(i + 1) % 4] = 0.1 * i
    payload = {"catalog_id": catalog, "entry_key": f"k{i}"} | ({"written_by": writer} if writer is not None else {})
    return Point(ID[i], vector, payload)


def test_collections_have_one_vector_size_and_absent_ones_read_empty(index: VectorIndex) -> None:
    assert not index.has_collection("dq_a") and index.retrieve("dq_a", [ID[0]]) == {}
    assert list(index.pages_of_collection("dq_a")) == [] and index.nearest("dq_a", [1, 0, 0, 0]) == []
    index.unguarded_delete("dq_a", [ID[0]])  # nothing to delete: not an error
    index.ensure_collection("dq_a", 4)
    index.ensure_collection("dq_a", 4)
    with pytest.raises(ConfigurationError):
        index.ensure_collection("dq_a", 8)
    index.ensure_collection("other_b", 4)
    assert index.has_collection("dq_a") and index.collections() == ["dq_a"]  # only this namespace's


def test_upsert_acknowledges_batch_by_batch_and_retrieve_returns_what_was_written(index: VectorIndex) -> None:
    index.ensure_collection("dq_a", 4)
    seen: list[int] = []
    index.upsert("dq_a", (point(i) for i in range(5)), on_batch=seen.append)
    assert seen == [0, 1, 2]  # batch_size 2: three batches, each announced before it is sent
    found = index.retrieve("dq_a", [ID[1], ID[5]], with_vectors=True)
    assert set(found) == {ID[1]}
    payload, vector = found[ID[1]]
    assert payload["entry_key"] == "k1"
    np.testing.assert_allclose(vector / np.linalg.norm(vector), point(1).vector / np.linalg.norm(point(1).vector), atol=1e-6)
    assert index.retrieve("dq_a", [ID[1]])[ID[1]][1] is None  # no vectors unless asked


def test_deletes_are_conditional_on_the_writer(index: VectorIndex) -> None:
    index.ensure_collection("dq_a", 4)
    index.upsert("dq_a", [point(0, writer="run-1"), point(1, writer="run-2"), point(2, writer=None), point(3, writer="run-1")])
    index.unguarded_delete("dq_a", [ID[0], ID[1], ID[2]], "run-1")
    assert set(index.retrieve("dq_a", ID[:4])) == {ID[1], ID[2], ID[3]}  # only run-1's point among those named
    index.unguarded_delete("dq_a", [ID[1], ID[2]], None)
    assert set(index.retrieve("dq_a", ID[:4])) == {ID[1], ID[3]}  # None: only points with no writer
    index.unguarded_delete("dq_a", [ID[1], ID[3]], ANY_WRITER)
    assert index.retrieve("dq_a", ID[:4]) == {}


def test_pages_catalogs_and_nearest(index: VectorIndex) -> None:
    index.ensure_collection("dq_a", 4)
    index.upsert("dq_a", [point(i, catalog="sales" if i % 2 else "crm") for i in range(5)])
    assert set(index.points_of_catalog("dq_a", "sales")) == {ID[1], ID[3]}
    pages = list(index.pages_of_collection("dq_a", page=2))
    assert sorted(pid for page in pages for pid, _ in page) == sorted(ID[:5]) and all(len(p) <= 2 for p in pages)
    assert index.catalog_ids_in("dq_a") == {"sales", "crm"}
    best = index.nearest("dq_a", [1.0, 0.0, 0.0, 0.0], limit=2)
    assert best[0][0] == ID[0] and best[0][1] >= best[1][1] and len(best) == 2
    only_sales = index.nearest("dq_a", [1.0, 0.0, 0.0, 0.0], catalog_id="sales", limit=10)
    assert {pid for pid, _ in only_sales} == {ID[1], ID[3]}


def test_drop_removes_a_collection(index: VectorIndex) -> None:
    index.ensure_collection("dq_a", 4)
    index.upsert("dq_a", [point(0)])
    index.unguarded_drop("dq_a")
    assert not index.has_collection("dq_a") and index.retrieve("dq_a", [ID[0]]) == {}


def test_aliases_point_at_one_collection_where_the_engine_has_them(index: VectorIndex) -> None:
    index.ensure_collection("dq_a", 4)
    index.ensure_collection("dq_b", 4)
    if not index.point_alias("dq_live", "dq_a"):
        pytest.skip("Qdrant Edge has no aliases: the record alone decides")
    assert index.alias_target("dq_live") == "dq_a"
    assert index.point_alias("dq_live", "dq_b") and index.alias_target("dq_live") == "dq_b"


def test_the_whole_protocol_runs_on_the_in_memory_index(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b = HashingEmbedder(32, "test/a"), HashingEmbedder(48, "test/b")
    v1 = [Entry(f"t.c{i}", "column", f"column {i} of the table", {"i": i}) for i in range(5)]
    v2 = [Entry(e.key, e.kind, e.text + " (edited)", e.payload) for e in v1[:3]] + v1[3:4]
    with SyncedStore.with_index(f"sqlite:///{tmp_path / 'dq.sqlite3'}", InMemoryIndex(batch_size=2), lock_timeout_s=10) as store:
        assert store.sync("sales", v1, a).inserted == 5
        changed = store.sync("sales", v2, a)
        assert (changed.updated, changed.deleted, changed.unchanged, changed.retired_points) == (3, 1, 1, 4)
        assert store.verify("sales").in_sync and store.verify("sales").qdrant == 4
        assert store.search(a, v2[0].text, limit=1)[0].entry_key == v2[0].key
        collection = store.collection_for(a)
        store.index.unguarded_delete(collection, [next(iter(store.index.points_of_catalog(collection, "sales")))])
        assert store.verify("sales").missing == 1 and store.repair("sales").after.in_sync
        store.load_model = lambda role: {"test/a": a, "test/b": b}[role.model_id]
        store.build_standby(b)
        store.switch_model()
        assert store.search(b, v2[0].text, limit=1)[0].entry_key == v2[0].key
        assert store.verify("sales").in_sync and store.index.alias_target("dq_live") == store.collection_for(b)


def test_one_index_is_safe_to_write_from_several_threads(index: VectorIndex) -> None:
    """Two stores sharing one embedded client (and any writer thread beside the planner) call it
    concurrently; qdrant-client's local mode alone fails that within a few hundred calls ("cannot
    start a transaction within a transaction"), so the index serializes embedded clients."""
    import threading
    import uuid

    index.ensure_collection("dq_t", 4)
    errors: list[BaseException] = []

    def churn(worker: int) -> None:
        try:
            for _ in range(60):
                ids = [str(uuid.uuid4()) for _ in range(4)]
                index.upsert("dq_t", [Point(i, np.ones(4, dtype=np.float32), {"catalog_id": f"c{worker}", "entry_key": i}) for i in ids])
                index.unguarded_delete("dq_t", ids)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert [p for page in index.pages_of_collection("dq_t") for p in page] == []  # every write and delete took effect
