"""Review workflow and search: rejected entries leave search at once and both stores at cleanup,
and are not resurrected by an unchanged file; hits are always verified against PostgreSQL."""

from __future__ import annotations

import pytest

from dq_pipeline.catalog import Entry
from dq_pipeline.embedding import HashingEmbedder
from dq_pipeline.sync import Hooks, SimulatedCrash, SyncedStore, SyncFailed, UnknownEntries

from .cli_helpers import run, run_json
from .test_protocol import V1, assert_in_sync, assert_state, column, pg_rows, qdrant_ids

CATALOG = "warehouse/orders"


def statuses(store: SyncedStore) -> dict[str, str]:
    from sqlalchemy import select

    from dq_pipeline.sync.stores.schema import entries

    with store.engine.connect() as conn:
        return dict(conn.execute(select(entries.c.entry_key, entries.c.status).where(entries.c.catalog_id == CATALOG)).all())


def test_reject_cleanup_and_no_resurrection(store: SyncedStore, embedder: HashingEmbedder) -> None:
    store.sync(CATALOG, V1, embedder)
    assert store.reject(CATALOG, ["orders.c1", "orders.c2"], by="ana", reason="duplicate of c0") == 2
    assert store.reject(CATALOG, ["orders.c1"]) == 0  # already rejected
    assert statuses(store)["orders.c1"] == "rejected"
    assert_in_sync(store)  # rejected rows keep their points until cleanup (I1)

    kept = {k: v for k, v in pg_rows(store).items() if k not in ("orders.c1", "orders.c2")}
    gone = {pg_rows(store)["orders.c1"][1], pg_rows(store)["orders.c2"][1]}
    result = store.cleanup_rejected(CATALOG)
    assert (result.deleted, result.unchanged) == (2, 4)
    assert pg_rows(store) == kept and not gone & qdrant_ids(store)
    assert_in_sync(store)

    again = store.sync(CATALOG, V1, embedder)  # the file still has them, unchanged
    assert (again.inserted, again.written, again.embedded) == (0, 0, 0)
    assert set(pg_rows(store)) == set(kept)

    changed = [column(i, 2) if i == 1 else column(i) for i in range(6)]
    back = store.sync(CATALOG, changed, embedder)  # new content: back for review as active
    assert (back.inserted, back.embedded) == (1, 1)
    assert statuses(store)["orders.c1"] == "active" and "orders.c2" not in statuses(store)
    assert_in_sync(store)


def test_rejected_entry_with_unchanged_content_stays_rejected_across_syncs(store: SyncedStore, embedder: HashingEmbedder) -> None:
    store.sync(CATALOG, V1, embedder)
    store.reject(CATALOG, ["orders.c3"])
    assert store.sync(CATALOG, V1, embedder).written == 0
    assert statuses(store)["orders.c3"] == "rejected"


def test_rejecting_an_unknown_key_changes_nothing(store: SyncedStore, embedder: HashingEmbedder) -> None:
    store.sync(CATALOG, V1, embedder)
    with pytest.raises(UnknownEntries, match="orders.nope"):
        store.reject(CATALOG, ["orders.c0", "orders.nope"])
    assert set(statuses(store).values()) == {"active"}


def test_cleanup_failure_and_crash_keep_both_stores_consistent(store: SyncedStore, embedder: HashingEmbedder) -> None:
    store.sync(CATALOG, V1, embedder)
    store.reject(CATALOG, ["orders.c4"])

    def fail(**_: object) -> None:
        raise RuntimeError("database went away")

    with pytest.raises(SyncFailed):
        store.cleanup_rejected(CATALOG, hooks=Hooks({"pg_flushed": fail}))
    assert_state(store, V1)
    assert_in_sync(store)

    def crash(**_: object) -> None:
        raise SimulatedCrash()

    with pytest.raises(SimulatedCrash):
        store.cleanup_rejected(CATALOG, hooks=Hooks({"committed": crash}))
    assert "orders.c4" not in pg_rows(store)
    # No rejected row is left, but the next `cleanup-rejected` (all catalogs) must still visit this
    # one: its journal row names the point to retire.
    assert store.catalogs_with_rejections() == [CATALOG]
    assert store.cleanup_rejected(CATALOG).recovered_journal_rows == 1
    assert_in_sync(store)


def test_search_never_shows_rejected_or_stale_points(store: SyncedStore, embedder: HashingEmbedder) -> None:
    store.sync(CATALOG, V1, embedder)
    target = V1[2]
    hits = store.search(embedder, target.text, limit=3)
    assert hits[0].entry_key == target.key and hits[0].score == pytest.approx(1.0, abs=1e-3)

    store.reject(CATALOG, [target.key])
    assert target.key not in {h.entry_key for h in store.search(embedder, target.text, limit=6)}

    orphan = Entry(key="orders.ghost", kind="column", text=V1[3].text + " ghost", payload={})
    from dq_pipeline.sync.write.protocol import _point

    store.index.upsert(store.collection_for(embedder), [_point(CATALOG, orphan, embedder.model_id, embedder.embed([orphan.text])[0])])
    assert "orders.ghost" not in {h.entry_key for h in store.search(embedder, orphan.text, limit=6)}


@pytest.mark.model
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cli_search_reject_cleanup_verify(env: dict[str, str]) -> None:
    run("sync")
    found = run_json("search", "customer email address", "--limit", "5")["hits"]
    assert (found[0]["catalog_id"], found[0]["entry_key"], found[0]["kind"]) == ("crm/customers", "customers.email", "column")
    table = run("search", "customer email address", "--limit", "3")
    assert "crm/customers:customers.email" in table.splitlines()[0]

    run("reject", "--catalog", "crm/customers", "customers.email", "--by", "ana", "--reason", "test")
    after = run_json("search", "customer email address", "--limit", "5")["hits"]
    assert "customers.email" not in {h["entry_key"] for h in after}

    before = run_json("verify")["catalogs"]["crm/customers"]
    cleaned = run_json("cleanup-rejected")
    assert cleaned["catalogs"] == {"crm/customers": {"status": "ok", "deleted": 1, "remaining": 71, "error": None}}
    now = run_json("verify")
    assert now["in_sync"] is True
    assert (now["catalogs"]["crm/customers"]["pg"], now["catalogs"]["crm/customers"]["qdrant"]) == (before["pg"] - 1, before["qdrant"] - 1)
    assert run_json("sync", "--catalog", "crm/customers")["catalogs"]["crm/customers"]["inserted"] == 0  # not resurrected
    run("reject", "--catalog", "crm/customers", "customers.nope", expect=1)
