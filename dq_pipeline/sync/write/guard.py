"""The one way points leave Qdrant, and the one way points are rebuilt from the record.

Deleting a point that a committed row uses is the one mistake this product must never make (I1),
so no code path decides on its own that a point is garbage: recovery, compensation, retirement,
repair and removal all hand their candidates to `delete_points`, which drops every id that

* a committed row references (any catalog, the live model's rows and the standby model's: a point
  whose payload was tampered with still belongs to the row whose id it carries), or
* a pending journal row names (a run in flight, or one whose leftovers are still recorded),
  other than the row being finished.

A test enumerates the call sites of `QdrantIndex.unguarded_delete` (only this module).

That check happens before the delete is sent, so on its own it could race with another run that
rewrites the same content-addressed id in between (a run that lost its lock, a delete delayed on
the wire). So every delete is also conditional on the writer: it removes a point only if its
payload's `written_by` is the run whose write is being undone or retired, and Qdrant decides that
when it applies the delete. A later rewrite of the id carries another writer and survives.

Journal names are looked up in the catalog's own journal rows only: point ids are
content-addressed over the catalog id, so no other catalog can name the same point. Points with
no catalog id at all (catalog_id=None) are checked against every pending row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import Engine, delete, select

from ..stores.database import WRITE
from ..stores.qdrant_index import ANY_WRITER, Point, QdrantIndex, chunks
from ..stores.schema import ENTRY_TABLES, PENDING, collection_drops, journal, models
from .point_ids import point_payload

_IN_CHUNK = 1000  # ids per IN (...) query


def referenced_by_rows(engine: Engine, collection: str, ids: Sequence[str]) -> set[str]:
    """The ids among `ids` that a committed row of any catalog uses in this collection."""
    found: set[str] = set()
    with engine.connect() as conn:
        for chunk in chunks(list(ids), _IN_CHUNK):
            for table in ENTRY_TABLES:
                query = select(table.c.point_id).where(table.c.point_id.in_(chunk), table.c.collection == collection)
                found.update(conn.scalars(query))
    return found


def named_by_pending(engine: Engine, catalog_id: str | None, collection: str, except_run: str | None = None) -> set[str]:
    """Point ids in this collection that pending journal rows (of the catalog; None: of any) name."""
    query = select(journal.c.run_id, journal.c.new_points).where(journal.c.phase == PENDING)
    if catalog_id is not None:
        query = query.where(journal.c.catalog_id == catalog_id)
    names: set[str] = set()
    with engine.connect() as conn:
        for run_id, new_points in conn.execute(query):
            if run_id != except_run:
                names.update((new_points or {}).get(collection, ()))
    return names


def delete_points(
    engine: Engine,
    index: QdrantIndex,
    collection: str,
    ids: Iterable[str],
    *,
    catalog_id: str | None,
    written_by: object,
    except_run: str | None = None,
) -> int:
    """Delete these points, written by `written_by` (a run id; None: no writer recorded; ANY_WRITER
    only for journal rows that predate writers), except those still referenced (see module doc);
    returns how many were asked of Qdrant. Raises if Qdrant is unreachable (the caller keeps its row)."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        return 0
    keep = referenced_by_rows(engine, collection, ids) | named_by_pending(engine, catalog_id, collection, except_run)
    doomed = [i for i in ids if i not in keep]
    index.unguarded_delete(collection, doomed, written_by)
    return len(doomed)


def finish_collection_drops(engine: Engine, index: QdrantIndex) -> list[str]:
    """Delete the collections a dropped standby model left (recorded in `dq_collection_drops`);
    returns those deleted. One that a role or a row uses again (the same model recorded anew) is
    kept and its drop forgotten; one that a pending journal row names waits for that row (a run in
    flight cannot commit into it, but its own clean-up must find the collection as it was). The
    checks and the delete happen while no role can be recorded (model_roles.lock_roles)."""
    from .model_roles import lock_roles  # the roles' module sits above the guard

    dropped: list[str] = []
    with engine.connect() as conn:
        pending = list(conn.scalars(select(collection_drops.c.collection)))
    for collection in pending:
        with engine.execution_options(**WRITE).begin() as conn:
            lock_roles(conn)
            in_use = conn.scalar(select(models.c.role).where(models.c.collection == collection).limit(1)) is not None or any(
                conn.scalar(select(table.c.point_id).where(table.c.collection == collection).limit(1)) is not None for table in ENTRY_TABLES
            )
            if not in_use and named_by_pending(engine, None, collection):
                continue
            if not in_use and index.has_collection(collection):
                index.unguarded_drop(collection)
                dropped.append(collection)
            conn.execute(delete(collection_drops).where(collection_drops.c.collection == collection))
    return dropped


__all__ = ["ANY_WRITER", "delete_points", "finish_collection_drops", "named_by_pending", "points_from_record", "referenced_by_rows", "restore_points"]


def points_from_record(engine: Engine, collection: str, ids: Sequence[str]) -> Iterator[list[Point]]:
    """The points committed rows (live or standby) define for these ids (vector and payload from the
    record), a chunk at a time; ids no row uses are skipped."""
    names = ("point_id", "catalog_id", "entry_key", "content_hash", "model", "kind", "vector", "written_by")
    for chunk in chunks(list(ids), _IN_CHUNK):
        by_id = {}
        with engine.connect() as conn:
            for table in reversed(ENTRY_TABLES):  # a live row's version wins where both use an id
                query = select(*(table.c[n] for n in names)).where(table.c.point_id.in_(chunk), table.c.collection == collection)
                by_id.update({r.point_id: r for r in conn.execute(query)})
        rows = list(by_id.values())
        yield [
            Point(
                r.point_id,
                np.frombuffer(r.vector, dtype="<f4"),
                point_payload(r.catalog_id, r.entry_key, r.content_hash, r.model, r.kind, r.vector, r.written_by),
            )
            for r in rows
        ]


def restore_points(engine: Engine, index: QdrantIndex, collection: str, ids: Sequence[str]) -> int:
    """Rewrite these points from the record (vector and payload); returns how many were written."""
    written = 0
    for points in points_from_record(engine, collection, ids):
        if points:
            index.ensure_collection(collection, len(points[0].vector))
            index.upsert(collection, points)
            written += len(points)
    return written
