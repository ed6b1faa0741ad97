"""The journal (outbox): what a run is about to do to Qdrant, committed before Qdrant is touched.

A row names every point the run will write (`new_points`, by collection; written by this run) and
every point it will retire once committed (`retired_points`, by collection, then by the run that
wrote them, "" for none recorded). Its phase says what is left to do:

* `pending`: the data has not committed (or its run died, or lost its lock, first). Finishing it
  deletes the named points no committed row uses, and rewrites from the record those that a
  committed row does use (a force reindex overwrote them with vectors that never committed).
* `committed` (set inside the data transaction itself): the data is in; finishing it deletes the
  retired points.

The same `_finish` completes a failed run, a crashed run and a run whose commit outcome is
unknown, because it decides from what the record actually holds, and every deletion goes through
`guard.delete_points`.

Recovering another run's row first advances the catalog's fencing epoch (locks.CatalogLock.
take_over): that run, if still alive without its lock, can then no longer commit, so the phase
read after the takeover is final. A run that finds it lost its lock does not clean up after itself
(the new owner may be writing the same content-addressed ids); it makes sure its row is still in
the journal (`keep_recorded`), so its leftovers are recorded, not guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from ...errors import LockLost
from ..stores.database import WRITE
from ..stores.qdrant_index import QdrantIndex
from ..stores.schema import COMMITTED, PENDING, journal
from .guard import ANY_WRITER, delete_points, referenced_by_rows, restore_points
from .locks import CatalogLock

PointsByCollection = Mapping[str, list[str]]
RetiredByCollection = Mapping[str, Mapping[str, list[str]]]  # collection -> writer ("" = none) -> ids


def write_pending(engine: Engine, run_id: str, catalog_id: str, new: PointsByCollection, retired: RetiredByCollection) -> None:
    with engine.execution_options(**WRITE).begin() as conn:
        conn.execute(
            insert(journal).values(
                run_id=run_id,
                catalog_id=catalog_id,
                phase=PENDING,
                new_points=dict(new),
                retired_points=dict(retired),
                created_at=datetime.now(UTC),
            )
        )


def mark_committed(conn: Connection, run_id: str) -> None:
    """Called inside the data transaction, so the phase flips exactly when the data commits."""
    result = conn.execute(update(journal).where(journal.c.run_id == run_id, journal.c.phase == PENDING).values(phase=COMMITTED))
    if result.rowcount != 1:
        raise LockLost(f"journal row of run {run_id} was taken over by another run before this run's commit")


def phase_of(engine: Engine, run_id: str) -> str | None:
    with engine.connect() as conn:
        return conn.scalar(select(journal.c.phase).where(journal.c.run_id == run_id))


def keep_recorded(engine: Engine, run_id: str, catalog_id: str, new: PointsByCollection) -> None:
    """A run that lost its lock: make sure its row (naming every point it may have written) is
    still in the journal, re-adding it if the new owner already finished it."""
    with engine.execution_options(**WRITE).begin() as conn:
        if conn.scalar(select(journal.c.run_id).where(journal.c.run_id == run_id)) is None:
            conn.execute(
                insert(journal).values(
                    run_id=run_id, catalog_id=catalog_id, phase=PENDING, new_points=dict(new), retired_points={}, created_at=datetime.now(UTC)
                )
            )


def finish_own(engine: Engine, index: QdrantIndex, run_id: str) -> str | None:
    """Finish this run's own row (the caller still holds the lock); returns its phase, None if gone.

    Raises if Qdrant or the database is unreachable: the row then stays for the next run.
    """
    row = _row(engine, run_id)
    if row is not None:
        _finish(engine, index, row)
    return None if row is None else row["phase"]


def recover(engine: Engine, index: QdrantIndex, lock: CatalogLock, catalog_id: str) -> int:
    """Finish every row an earlier run left for this catalog (under its lock); returns how many."""
    with engine.connect() as conn:
        run_ids = list(conn.scalars(select(journal.c.run_id).where(journal.c.catalog_id == catalog_id).order_by(journal.c.created_at)))
    for run_id in run_ids:
        with lock.fenced(engine, take_over=True):
            pass  # from here on, that run cannot commit: the phase read below is final
        row = _row(engine, run_id)
        if row is not None:
            _finish(engine, index, row)
    return len(run_ids)


def _row(engine: Engine, run_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(journal).where(journal.c.run_id == run_id)).first()
    return None if row is None else dict(row._mapping)


def _finish(engine: Engine, index: QdrantIndex, row: Mapping[str, Any]) -> None:
    catalog_id, run_id = row["catalog_id"], row["run_id"]
    if row["phase"] == PENDING:
        for collection, ids in (row["new_points"] or {}).items():
            used = referenced_by_rows(engine, collection, ids)
            restore_points(engine, index, collection, sorted(used))
            unused = [i for i in ids if i not in used]
            delete_points(engine, index, collection, unused, catalog_id=catalog_id, written_by=run_id, except_run=run_id)
    else:
        for collection, by_writer in (row["retired_points"] or {}).items():
            if isinstance(by_writer, list):  # a row journaled before writers were recorded
                by_writer = {ANY_WRITER: by_writer}
            for writer, ids in by_writer.items():
                written_by = writer if writer is ANY_WRITER else (writer or None)
                delete_points(engine, index, collection, ids, catalog_id=catalog_id, written_by=written_by, except_run=run_id)
    with engine.execution_options(**WRITE).begin() as conn:
        conn.execute(delete(journal).where(journal.c.run_id == run_id))


def rows_of_catalog(engine: Engine, catalog_id: str) -> list[Mapping[str, Any]]:
    with engine.connect() as conn:
        query = select(journal).where(journal.c.catalog_id == catalog_id).order_by(journal.c.created_at)
        return [row._mapping for row in conn.execute(query)]
