"""The zero-downtime model change (sync/write/model_roles.py): a recorded live model, a standby built
beside it through the same protocol, one atomic switch, an instant rollback, drop-old.

Every test runs on SQLite and PostgreSQL, with qdrant-client's local mode and Qdrant Edge.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import select

from dq_pipeline.catalog import Entry
from dq_pipeline.embedding import HashingEmbedder
from dq_pipeline.errors import ConfigurationError, ModelSwitched
from dq_pipeline.sync import Hooks, SimulatedCrash, SyncedStore, SyncFailed, model_roles
from dq_pipeline.sync.stores.schema import entries, standby

A = HashingEmbedder(32, "test/model-a")
B = HashingEmbedder(48, "test/model-b")
CATALOGS = {
    f"team{n}/tables": [Entry(f"t{n}.c{i}", "column", f"team {n} column {i}: {word}", {"n": n, "i": i}) for i, word in enumerate(("ssn", "email", "amount", "country"))]
    for n in range(3)
}


def _load(role: model_roles.ModelRole) -> HashingEmbedder:
    """How these tests' store loads a recorded model it was not handed (as recorded_model_loader would)."""
    return {A.model_id: A, B.model_id: B}[role.model_id]


@pytest.fixture
def live_a(store: SyncedStore) -> SyncedStore:
    store.load_model = _load
    for catalog_id, items in CATALOGS.items():
        store.sync(catalog_id, items, A)
    assert store.models()["live"].model_id == A.model_id
    return store


def found(store: SyncedStore, embedder: HashingEmbedder, entry: Entry, catalog_id: str) -> bool:
    return (catalog_id, entry.key) in {(h.catalog_id, h.entry_key) for h in store.search(embedder, entry.text, limit=20)}


def every_entry_found(store: SyncedStore, embedder: HashingEmbedder) -> bool:
    return all(found(store, embedder, e, cid) for cid, items in CATALOGS.items() for e in items)


def all_in_sync(store: SyncedStore) -> None:
    for catalog_id in store.known_catalogs():
        v = store.verify(catalog_id)
        assert v.in_sync, (catalog_id, v.counts(), v.samples)


def standby_rows(store: SyncedStore, catalog_id: str) -> dict[str, tuple[str, str]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(standby.c.entry_key, standby.c.content_hash, standby.c.model).where(standby.c.catalog_id == catalog_id))
        return {r.entry_key: (r.content_hash, r.model) for r in rows}


def test_search_serves_the_live_model_through_the_whole_build_then_switches_at_once(live_a: SyncedStore) -> None:
    store = live_a
    for catalog_id, items in CATALOGS.items():  # the build reaches one catalog at a time
        result = store.sync(catalog_id, items, B)
        assert result.written == 0 and result.standby is not None and result.standby.inserted == len(items)
        assert every_entry_found(store, A), f"search lost entries with the build at {catalog_id}"
        assert store.models()["live"].model_id == A.model_id
    assert store.model_status()["standby"]["complete"]
    all_in_sync(store)

    store.switch_model()
    assert store.models()["live"].model_id == B.model_id
    assert every_entry_found(store, B)
    with store.engine.connect() as conn:
        assert set(conn.scalars(select(entries.c.model).distinct())) == {B.model_id}
        assert set(conn.scalars(select(standby.c.model).distinct())) == {A.model_id}
    all_in_sync(store)


def test_syncs_during_the_build_keep_both_models_current_and_the_rollback_embeds_nothing(live_a: SyncedStore) -> None:
    store = live_a
    store.build_standby(B)
    catalog_id, items = next(iter(CATALOGS.items()))
    edited = [Entry(e.key, e.kind, e.text + " (edited)", e.payload) for e in items[:2]] + items[2:3]  # 2 changed, 1 deleted
    result = store.sync(catalog_id, edited, A)  # configured: the live model; the standby is loaded to follow
    assert (result.updated, result.deleted) == (2, 1)
    assert result.standby is not None and (result.standby.updated, result.standby.deleted, result.standby.embedded) == (2, 1, 2)
    assert {k: h for k, (h, _) in standby_rows(store, catalog_id).items()} == {e.key: e.content_hash for e in edited}
    all_in_sync(store)

    store.switch_model()
    assert found(store, B, edited[0], catalog_id)
    calls_a, calls_b = len(A.calls), len(B.calls)
    store.switch_model(rollback=True)
    store.switch_model()
    store.switch_model(rollback=True)
    assert (len(A.calls), len(B.calls)) == (calls_a, calls_b), "a switch embedded something"
    assert store.models()["live"].model_id == A.model_id and found(store, A, edited[0], catalog_id)
    all_in_sync(store)


def test_switch_is_refused_while_the_standby_is_behind_and_rollback_only_after_a_switch(live_a: SyncedStore) -> None:
    store = live_a
    with pytest.raises(ConfigurationError, match="no standby model"):
        store.switch_model()
    first = next(iter(CATALOGS))
    store.sync(first, CATALOGS[first], B)  # one catalog of three built
    with pytest.raises(ConfigurationError, match="built for 1 of 3 catalogs"):
        store.switch_model()
    with pytest.raises(ConfigurationError, match="a build, not the previous live model"):
        store.switch_model(rollback=True)
    assert store.models()["live"].model_id == A.model_id and every_entry_found(store, A)


def test_a_commit_planned_before_a_switch_cannot_commit_after_it(live_a: SyncedStore) -> None:
    """The role fence: a run that planned with A live and commits after the switch to B would write
    A's vectors into B's rows. It is refused inside its commit, cleaned up, and the next run applies it."""
    store = live_a
    store.build_standby(B)
    catalog_id, items = next(iter(CATALOGS.items()))
    edited = [Entry(items[0].key, items[0].kind, items[0].text + " v2", items[0].payload), *items[1:]]

    def switch_behind_its_back(**_: object) -> None:
        model_roles.swap(store.engine, B.model_id)  # the atomic step of `model switch`, from another session

    with pytest.raises(ModelSwitched):
        store.sync(catalog_id, edited, A, hooks=Hooks({"qdrant_written": switch_behind_its_back}))
    assert store.models()["live"].model_id == B.model_id
    with store.engine.connect() as conn:
        assert set(conn.scalars(select(entries.c.model).distinct())) == {B.model_id}
    all_in_sync(store)  # the refused run's points were compensated

    result = store.sync(catalog_id, edited, B)  # the next run, with the roles as they are now
    assert result.updated == 1 and result.standby is not None and result.standby.updated == 1
    assert found(store, B, edited[0], catalog_id)
    all_in_sync(store)


def test_a_crash_in_the_standby_step_keeps_the_live_commit_and_the_next_run_finishes_it(live_a: SyncedStore) -> None:
    store = live_a
    store.build_standby(B)
    catalog_id, items = next(iter(CATALOGS.items()))
    edited = [Entry(e.key, e.kind, e.text + " (new)", e.payload) for e in items]
    reached = {"n": 0}

    def die_in_the_second_journal(**_: object) -> None:
        reached["n"] += 1
        if reached["n"] == 2:  # the standby's journal row is committed: the process dies here
            raise SimulatedCrash()

    with pytest.raises(SimulatedCrash):
        store.sync(catalog_id, edited, A, hooks=Hooks({"journal_written": die_in_the_second_journal}))
    assert found(store, A, edited[0], catalog_id)  # the live commit stands
    assert not store.model_status()["standby"]["complete"]

    again = store.sync(catalog_id, edited, A)
    assert again.written == 0 and again.recovered_journal_rows == 1
    assert again.standby is not None and again.standby.updated == len(items)
    assert store.model_status()["standby"]["complete"]
    all_in_sync(store)


def test_a_standby_that_cannot_be_loaded_stays_behind_without_failing_the_live_sync(live_a: SyncedStore) -> None:
    store = live_a
    store.build_standby(B)
    store.load_model = None  # this process cannot load B
    catalog_id, items = next(iter(CATALOGS.items()))
    edited = [Entry(items[0].key, items[0].kind, items[0].text + " changed", items[0].payload), *items[1:]]
    result = store.sync(catalog_id, edited, A)
    assert result.updated == 1 and result.standby_error is not None and "cannot be loaded here" in result.standby_error
    assert found(store, A, edited[0], catalog_id)
    with pytest.raises(ConfigurationError, match="built for 2 of 3 catalogs"):
        store.switch_model()
    all_in_sync(store)


def test_cleanup_of_rejected_entries_removes_their_standby_rows_and_a_switch_keeps_decisions(live_a: SyncedStore) -> None:
    store = live_a
    store.build_standby(B)
    catalog_id, items = next(iter(CATALOGS.items()))
    store.reject(catalog_id, [items[0].key, items[1].key], by="ana", reason="pii")
    store.cleanup_rejected(catalog_id)
    assert set(standby_rows(store, catalog_id)) == {e.key for e in items[2:]}
    store.reject(catalog_id, [items[2].key], by="bo", reason="stale")
    store.switch_model()
    assert not found(store, B, items[2], catalog_id), "a rejected entry came back with the switch"
    with store.engine.connect() as conn:
        reviewed = conn.execute(select(entries.c.status, entries.c.reviewed_by).where(entries.c.entry_key == items[2].key)).one()
    assert tuple(reviewed) == ("rejected", "bo")
    all_in_sync(store)


def test_drop_old_deletes_the_standby_model_and_leaves_the_live_one_whole(live_a: SyncedStore) -> None:
    store = live_a
    store.build_standby(B)
    store.switch_model()
    old_collection = store.collection_for(A)
    assert store.drop_standby() == old_collection
    assert not store.index.client.collection_exists(old_collection)
    assert "standby" not in store.models()
    with pytest.raises(ConfigurationError, match="nothing to switch to"):
        store.switch_model(rollback=True)
    assert every_entry_found(store, B)
    all_in_sync(store)


def test_a_failed_standby_write_is_compensated_and_reported(live_a: SyncedStore) -> None:
    store = live_a
    store.build_standby(B)
    catalog_id, items = next(iter(CATALOGS.items()))
    edited = [Entry(e.key, e.kind, e.text + " again", e.payload) for e in items]
    calls = {"n": 0}

    def fail_in_the_standby_commit(**_: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("the database went away inside the standby commit")

    result = store.sync(catalog_id, edited, A, hooks=Hooks({"pg_flushed": fail_in_the_standby_commit}))
    assert result.updated == len(items)
    assert result.standby_error is not None and "went away" in result.standby_error
    assert not isinstance(result.standby_error, SyncFailed)
    all_in_sync(store)
    assert store.sync(catalog_id, edited, A).standby.updated == len(items)  # type: ignore[union-attr]
    assert store.model_status()["standby"]["complete"]


# --- the command line and the Dagster jobs ------------------------------------------------------


@pytest.mark.dagster
def test_cli_and_dagster_jobs_change_the_model_with_search_served_throughout(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from dq_pipeline.definitions import build_definitions, resources_for
    from dq_pipeline.defs.model_change import (
        MODEL_BUILD_JOB,
        MODEL_DROP_OLD_JOB,
        MODEL_ROLLBACK_JOB,
        MODEL_SWITCH_JOB,
    )
    from dq_pipeline.settings import Settings
    from dq_pipeline_tests.cli_helpers import run_json

    def hits(query: str) -> set[str]:
        return {h["catalog_id"] for h in run_json("search", query, "--limit", "50")["hits"]}

    monkeypatch.setenv("DQ_EMBEDDING_MODEL", "hashing:32")
    assert run_json("sync")["ok"]
    everything = hits("customer")
    assert len(everything) >= 3

    monkeypatch.setenv("DQ_EMBEDDING_MODEL", "hashing:48")  # the new model: syncs build it beside the live one
    synced = run_json("sync", "--catalog", "crm/customers")
    row = synced["catalogs"]["crm/customers"]
    assert synced["ok"] and (row["inserted"], row["updated"], row["deleted"]) == (0, 0, 0)  # the live rows were current
    assert row["embedded"] == 72  # the standby model's vectors
    status = run_json("model", "status")
    assert status["live"]["model"] == "test/hashing-32" and status["standby"]["state"] == "building"
    assert 0 < status["standby"]["catalogs_done"] < status["standby"]["catalogs_total"]
    assert hits("customer") == everything, "search lost catalogs while the build was partial"
    refused = subprocess.run([sys.executable, "-c", "from dq_pipeline.cli import main; main()", "model", "switch"], capture_output=True, text=True, env=os.environ, timeout=120)
    assert refused.returncode == 2, refused.stderr  # not built everywhere yet: a configuration error, nothing switched
    assert refused.stderr.startswith("error: the standby model test/hashing-48 is built for 1 of") and "Traceback" not in refused.stderr

    instance_defs = build_definitions(resources_for(Settings.from_env()))
    built = instance_defs.resolve_job_def(MODEL_BUILD_JOB).execute_in_process()
    assert built.success
    (output,) = [e for e in built.all_events if e.event_type_value == "STEP_OUTPUT"]
    meta = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert meta["ready_to_switch"] and meta["catalogs_done"] == meta["catalogs_total"] == status["standby"]["catalogs_total"]
    assert run_json("verify")["in_sync"]

    assert instance_defs.resolve_job_def(MODEL_SWITCH_JOB).execute_in_process().success
    status = run_json("model", "status")
    assert status["live"]["model"] == "test/hashing-48" and status["standby"]["state"] == "previous"
    assert status["alias_target"] == status["live"]["collection"]
    assert hits("customer") == everything
    monkeypatch.setenv("DQ_EMBEDDING_MODEL", "hashing:32")  # a process configured with the old model still searches the live one
    assert hits("customer") == everything

    assert instance_defs.resolve_job_def(MODEL_ROLLBACK_JOB).execute_in_process().success
    assert run_json("model", "status")["live"]["model"] == "test/hashing-32"
    assert instance_defs.resolve_job_def(MODEL_DROP_OLD_JOB).execute_in_process().success
    status = run_json("model", "status")
    assert status["standby"] is None and status["alias_target"] == status["live"]["collection"]
    refused = instance_defs.resolve_job_def(MODEL_SWITCH_JOB).execute_in_process(raise_on_error=False)
    assert not refused.success  # nothing to switch to: one clear failure, not retried
    assert run_json("verify")["in_sync"] and hits("customer") == everything


def test_a_standby_that_could_not_follow_is_reported_by_sync_json_and_on_stderr(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The live commit stands and the run succeeds, but a user scripting `sync --json` must see that
    the build stays behind for this catalog (it used to be only in the Dagster log)."""
    from unittest import mock

    from click.testing import CliRunner

    from dq_pipeline.cli import cli
    from dq_pipeline.errors import StoreUnavailable
    from dq_pipeline_tests.cli_helpers import run_json

    monkeypatch.setenv("DQ_EMBEDDING_MODEL", "hashing:32")
    assert run_json("sync")["ok"]
    monkeypatch.setenv("DQ_EMBEDDING_MODEL", "hashing:48")
    with mock.patch("dq_pipeline.sync.write.protocol.mirror_standby", side_effect=StoreUnavailable("qdrant went away")):
        synced = run_json("sync", "--catalog", "crm/customers")
        human = CliRunner().invoke(cli, ["sync", "--catalog", "crm/customers"], catch_exceptions=False)
    row = synced["catalogs"]["crm/customers"]
    assert synced["ok"] and row["status"] == "ok" and row["error"] is None
    assert "test/hashing-48 stays behind for this catalog" in row["standby_error"] and "qdrant went away" in row["standby_error"]
    assert human.exit_code == 0 and "crm/customers: warning: the standby model test/hashing-48 stays behind" in human.stderr
    assert run_json("sync", "--catalog", "crm/customers")["catalogs"]["crm/customers"]["standby_error"] is None
    assert run_json("model", "status")["standby"]["catalogs_done"] >= 1
