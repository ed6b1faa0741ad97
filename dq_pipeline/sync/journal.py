"""The journal (outbox): what a run is about to do to Qdrant, committed before Qdrant is touched.

A `pending` row means the data transaction has not committed (or the process died first): its
new points that no committed row references are leftovers. A `committed` row (set in the data
transaction itself) means the data is in: its retired points are leftovers. Finishing a row
removes those leftovers and then the row; the same code finishes a failed run, a crashed run and a
run whose commit outcome is unknown, because it decides from what PostgreSQL actually holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from .database import WRITE
from .qdrant_index import QdrantIndex
from .schema import COMMITTED, PENDING, entries, journal

PointsByCollection = Mapping[str, list[str]]


def write_pending(engine: Engine, run_id: str, catalog_id: str, new: PointsByCollection, retired: PointsByCollection) -> None:
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
    result = conn.execute(update(journal).where(journal.c.run_id == run_id).values(phase=COMMITTED))
    if result.rowcount != 1:
        raise RuntimeError(f"journal row of run {run_id} vanished before commit")


def rows_of_catalog(engine: Engine, catalog_id: str) -> list[Mapping[str, Any]]:
    with engine.connect() as conn:
        query = select(journal).where(journal.c.catalog_id == catalog_id).order_by(journal.c.created_at)
        return [row._mapping for row in conn.execute(query)]


def referenced_point_ids(engine: Engine, ids: Iterable[str]) -> set[str]:
    ids = list(ids)
    found: set[str] = set()
    with engine.connect() as conn:
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            found.update(conn.scalars(select(entries.c.point_id).where(entries.c.point_id.in_(chunk))))
    return found


def finish(engine: Engine, index: QdrantIndex, run_id: str) -> str | None:
    """Complete one journal row from the committed state; returns the phase it was in (None if gone).

    Raises if Qdrant (or PostgreSQL) is unreachable: the row then stays for the next run.
    """
    if engine.dialect.name == "postgresql":
        # Hold the row (FOR UPDATE) from reading its phase to deleting it. Its run may still be alive
        # if that run's lock was lost (its session ended) and this run got the lock: if it is
        # committing, its data transaction holds the row, so this waits for the commit and finishes
        # the row as committed instead of deleting live points as a dead run's leftovers (I1); if it
        # has not reached its commit yet, it finds its row gone and rolls back.
        with engine.execution_options(**WRITE).begin() as conn:
            row = conn.execute(select(journal).where(journal.c.run_id == run_id).with_for_update()).first()
            if row is None:
                return None
            _remove_leftovers(engine, index, row)
            conn.execute(delete(journal).where(journal.c.run_id == run_id))
        return row.phase
    with engine.connect() as conn:
        row = conn.execute(select(journal).where(journal.c.run_id == run_id)).first()
    if row is None:
        return None
    _remove_leftovers(engine, index, row)
    with engine.execution_options(**WRITE).begin() as conn:
        conn.execute(delete(journal).where(journal.c.run_id == run_id))
    return row.phase


def _remove_leftovers(engine: Engine, index: QdrantIndex, row: Any) -> None:
    if row.phase == PENDING:
        # The data never committed: delete what this run wrote, except points that committed rows
        # use (a force reindex rewrites those in place; they must stay).
        for collection, ids in row.new_points.items():
            keep = referenced_point_ids(engine, ids)
            index.delete(collection, [i for i in ids if i not in keep])
    else:
        for collection, ids in row.retired_points.items():
            # Retired ids are never referenced by a committed row: content-addressed ids of the old
            # versions differ from the new ones. Checked anyway, because deleting a live point is
            # the one mistake this protocol must never make (I1).
            keep = referenced_point_ids(engine, ids)
            index.delete(collection, [i for i in ids if i not in keep])


def recover(engine: Engine, index: QdrantIndex, catalog_id: str) -> int:
    """Finish every journal row a dead or failed run left for this catalog (call under its lock)."""
    rows = rows_of_catalog(engine, catalog_id)
    for row in rows:
        finish(engine, index, row["run_id"])
    return len(rows)
