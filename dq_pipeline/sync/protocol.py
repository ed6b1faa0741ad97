"""The journaled two-phase write of one catalog to PostgreSQL (record) and Qdrant (index).

Read `sync_catalog`, then `_write`, top to bottom: they are the specification.

  0. Lock the catalog, then finish whatever an earlier run left in the journal.
  1. Plan: compare the entries with the committed rows; embed only new and changed content.
  2. Journal: commit a `pending` row naming the points about to be written and retired.
  3. Phase 1: apply inserts/updates/deletes in one data transaction (not yet committed).
     Phase 2: upsert the new points to Qdrant, batch by batch, each acknowledged.
     Phase 3: mark the journal row `committed` in that same transaction, and commit.
     On any failure: roll back and finish the journal row (deletes the new points no committed
     row uses), then report the failure. Committed rows never lose their points (I1, I5).
  4. Retire: delete the points of replaced and deleted entries, then the journal row.

Point ids are content-addressed, so an updated entry's new point never overwrites the committed
version's point; the old one is deleted only after the commit. Removing rejected entries
(`remove_rejected`) is the same write with deletes only.

Memory stays bounded on any catalog size: new vectors are spooled to a temporary file as they are
embedded and read back a chunk at a time for the rows (phase 1) and the points (phase 2).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Connection, and_, bindparam, delete, insert, update

from ..catalog import Entry
from ..embedding import Embedder
from . import journal, review
from .database import WRITE
from .hooks import Hooks
from .locks import catalog_lock
from .plan import Plan, StoredRow, plan_changes, stored_rows
from .point_ids import point_id, point_payload
from .qdrant_index import Point, chunks
from .schema import ACTIVE, COMMITTED, REJECTED, catalogs, entries

log = logging.getLogger(__name__)

EMBED_CHUNK = 16_384  # texts per embedder call (the model sorts each call by length: bigger pads less)
WRITE_CHUNK = 2_048  # rows per INSERT/UPDATE round and vectors read back from the spool at a time


class SyncFailed(RuntimeError):
    def __init__(self, catalog_id: str, reason: str):
        super().__init__(f"sync of catalog {catalog_id} failed, nothing was changed: {reason}")
        self.catalog_id = catalog_id


@dataclass
class SyncResult:
    catalog_id: str
    model: str
    collection: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    embedded: int = 0
    recovered_journal_rows: int = 0
    retired_points: int = 0
    # Set when the data committed but its retired points could not be deleted yet: they are in
    # the journal and the next sync or repair removes them.
    retire_error: str | None = None
    durations: dict[str, float] = field(default_factory=dict)

    @property
    def written(self) -> int:
        return self.inserted + self.updated + self.deleted


def sync_catalog(
    store,  # SyncedStore; untyped to keep this module free of the facade
    catalog_id: str,
    wanted: Sequence[Entry],
    embedder: Embedder,
    *,
    force: bool = False,
    vectors: Mapping[str, np.ndarray] | None = None,
    hooks: Hooks | None = None,
) -> SyncResult:
    """Make the stores hold exactly `wanted` for this catalog (an empty list removes the catalog)."""
    hooks = hooks or Hooks()
    result = SyncResult(catalog_id, embedder.model_id, store.collection_for(embedder))
    clock = _Clock(result.durations)

    with catalog_lock(store.engine, catalog_id, store.lock_timeout_s):
        hooks("locked")
        with clock("recover"):
            result.recovered_journal_rows = journal.recover(store.engine, store.index, catalog_id)

        with clock("plan"):
            plan = plan_changes(
                stored_rows(store.engine, catalog_id), wanted, embedder.model_id, force, review.rejected_versions(store.engine, catalog_id)
            )
        result.unchanged = plan.unchanged
        if plan.is_empty:
            return result  # I4: nothing embedded, nothing written

        with clock("embed"):
            new_vectors, result.embedded = _vectors_for(plan.to_embed, embedder, vectors)
        with new_vectors:
            _write(store, catalog_id, plan, _Versions(embedder, result.collection, new_vectors), hooks, result)
    return result


def remove_rejected(store, catalog_id: str, hooks: Hooks | None = None) -> SyncResult:
    """Delete the catalog's rejected entries from both stores, through the same protocol."""
    hooks = hooks or Hooks()
    result = SyncResult(catalog_id, model="", collection="")
    with catalog_lock(store.engine, catalog_id, store.lock_timeout_s):
        hooks("locked")
        result.recovered_journal_rows = journal.recover(store.engine, store.index, catalog_id)
        rows = stored_rows(store.engine, catalog_id).values()
        plan = Plan(deletes=[r for r in rows if r.status == REJECTED])
        plan.unchanged = len(rows) - len(plan.deletes)
        result.unchanged = plan.unchanged
        if not plan.is_empty:
            _write(store, catalog_id, plan, None, hooks, result)
    return result


@dataclass(frozen=True)
class _Versions:
    """What new rows are made of: the model, its collection, and the vectors by content hash."""

    embedder: Embedder
    collection: str
    vectors: _VectorSpool


class _VectorSpool:
    """New vectors by content hash: precomputed ones (by the embedding asset) as given, the others in
    a temporary file of float32 rows, read back a chunk at a time."""

    def __init__(self, precomputed: Mapping[str, np.ndarray] | None):
        self._precomputed = precomputed or {}
        self._rows: dict[str, int] = {}
        self._file = tempfile.TemporaryFile(prefix="dq_vectors_")
        self._dimension = 0
        self._count = 0

    def add(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        block = np.ascontiguousarray(vectors, dtype="<f4")
        if not self._dimension:
            self._dimension = block.shape[1]
        if block.shape != (len(hashes), self._dimension):
            raise ValueError(f"the embedder returned vectors of shape {block.shape} for {len(hashes)} texts")
        os.pwrite(self._file.fileno(), block.tobytes(), self._count * self._dimension * 4)
        for offset, content_hash in enumerate(hashes):
            self._rows[content_hash] = self._count + offset
        self._count += len(hashes)

    def many(self, hashes: Sequence[str]) -> list[np.ndarray]:
        """The vectors of these content hashes, in order."""
        found: list[np.ndarray | None] = [self._precomputed.get(h) for h in hashes]
        spooled = [(i, self._rows[h]) for i, h in enumerate(hashes) if found[i] is None]
        if spooled:
            low, high = min(r for _, r in spooled), max(r for _, r in spooled)
            row_bytes = self._dimension * 4
            if high - low < 4 * len(spooled) + 64:  # rows are written in plan order: read one span
                span = self._read(low * row_bytes, (high - low + 1) * row_bytes).reshape(-1, self._dimension)
                for i, row in spooled:
                    found[i] = span[row - low]
            else:
                for i, row in spooled:
                    found[i] = self._read(row * row_bytes, row_bytes)
        return found  # type: ignore[return-value]

    def _read(self, offset: int, size: int) -> np.ndarray:
        data = os.pread(self._file.fileno(), size, offset)
        if len(data) != size:
            raise RuntimeError("the vector spool file is shorter than written")
        return np.frombuffer(data, dtype="<f4")

    def __enter__(self) -> _VectorSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


def _write(store, catalog_id: str, plan: Plan, versions: _Versions | None, hooks: Hooks, result: SyncResult) -> None:
    """Journal, then the two phases in one transaction, then retirement (under the catalog lock)."""
    engine, index = store.engine, store.index
    clock = _Clock(result.durations)
    todo = plan.to_embed if versions else []
    model_id = versions.embedder.model_id if versions else ""
    ids = {e.key: point_id(catalog_id, e.key, e.content_hash, model_id) for e in todo}  # known before any vector
    retired = _retired_points(plan, ids)
    new_points = {versions.collection: list(ids.values())} if versions and ids else {}
    if versions and ids:
        index.ensure_collection(versions.collection, versions.embedder.dimension)

    run_id = str(uuid.uuid4())
    journal.write_pending(engine, run_id, catalog_id, new_points, retired)
    hooks("journal_written")
    with clock("write"):
        try:
            with engine.execution_options(**WRITE).begin() as conn:
                _apply(conn, catalog_id, plan, ids, versions, run_id)
                hooks("pg_flushed")
                if versions and ids:
                    points = _points(catalog_id, todo, versions)
                    index.upsert(versions.collection, points, on_batch=lambda n: hooks("qdrant_batch", batch=n))
                hooks("qdrant_written")
                journal.mark_committed(conn, run_id)
                hooks("before_commit")
        except Exception as exc:
            if _compensate(store, run_id, catalog_id) != COMMITTED:
                raise SyncFailed(catalog_id, _describe(exc)) from exc
            log.warning("commit of %s reported %s but had succeeded; finished as committed", catalog_id, _describe(exc))
    hooks("committed")
    result.inserted, result.updated, result.deleted = len(plan.inserts), len(plan.updates), len(plan.deletes)

    with clock("retire"):
        try:
            journal.finish(engine, index, run_id)
            result.retired_points = sum(len(ids) for ids in retired.values())
            hooks("retired")
        except Exception as exc:
            result.retire_error = (
                f"committed, but {sum(len(i) for i in retired.values())} replaced point(s) could not be "
                f"deleted from Qdrant yet ({_describe(exc)}); the journal keeps them for the next sync or repair"
            )
            log.warning("%s: %s", catalog_id, result.retire_error)


def _compensate(store, run_id: str, catalog_id: str) -> str | None:
    """Finish this run's journal row from what PostgreSQL really committed; None if that fails too."""
    try:
        return journal.finish(store.engine, store.index, run_id)
    except Exception as exc:
        log.error(
            "%s: could not clean up after the failed run (%s); its journal row stays for the next run",
            catalog_id,
            _describe(exc),
        )
        return None


def _vectors_for(
    todo: Sequence[Entry], embedder: Embedder, precomputed: Mapping[str, np.ndarray] | None
) -> tuple[_VectorSpool, int]:
    """Vectors by content hash; only content not already embedded (by the embedding asset) is encoded,
    chunk by chunk into the spool."""
    spool = _VectorSpool(precomputed)
    try:
        missing = list({e.content_hash: e.text for e in todo if not (precomputed and e.content_hash in precomputed)}.items())
        for chunk in chunks(missing, EMBED_CHUNK):
            spool.add([h for h, _ in chunk], embedder.embed([text for _, text in chunk]))
    except BaseException:
        spool.__exit__()
        raise
    return spool, len(missing)


def _points(catalog_id: str, todo: Sequence[Entry], versions: _Versions) -> Iterator[Point]:
    """The new points, built a chunk at a time from the spooled vectors."""
    for chunk in chunks(todo, WRITE_CHUNK):
        for entry, vector in zip(chunk, versions.vectors.many([e.content_hash for e in chunk]), strict=True):
            yield _point(catalog_id, entry, versions.embedder.model_id, vector)


def _point(catalog_id: str, entry: Entry, model_id: str, vector: np.ndarray) -> Point:
    payload = point_payload(catalog_id, entry.key, entry.content_hash, model_id, entry.kind)
    return Point(point_id(catalog_id, entry.key, entry.content_hash, model_id), vector, payload)


def _retired_points(plan: Plan, new_ids: Mapping[str, str]) -> dict[str, list[str]]:
    """Points to delete after the commit: deleted entries', and replaced versions' (if their id changed)."""
    retired: dict[str, list[str]] = defaultdict(list)
    old: list[StoredRow] = plan.deletes + [row for entry, row in plan.updates if new_ids[entry.key] != row.point_id]
    for row in old:
        retired[row.collection].append(row.point_id)
    return dict(retired)


def _apply(conn: Connection, catalog_id: str, plan: Plan, ids: Mapping[str, str], versions: _Versions | None, run_id: str) -> None:
    """Phase 1: the whole catalog change in one transaction (I3), written a chunk of rows at a time."""
    now = datetime.now(UTC)

    def row(entry: Entry, vector: np.ndarray) -> dict[str, object]:
        assert versions is not None
        return {
            "kind": entry.kind,
            "text": entry.text,
            "payload": entry.payload,  # a fresh dict decoded from the entry's JSON
            "content_hash": entry.content_hash,
            "model": versions.embedder.model_id,
            "dimension": versions.embedder.dimension,
            "vector": np.asarray(vector, dtype="<f4").tobytes(),
            "collection": versions.collection,
            "point_id": ids[entry.key],
            "status": ACTIVE,  # changed content re-enters review as active
            "reviewed_by": None,
            "review_reason": None,
            "reviewed_at": None,
            "updated_at": now,
        }

    def vectors(chunk: Sequence[Entry]) -> list[np.ndarray]:
        assert versions is not None
        return versions.vectors.many([e.content_hash for e in chunk])

    for chunk in chunks(plan.inserts, WRITE_CHUNK):
        rows = [{"catalog_id": catalog_id, "entry_key": e.key, **row(e, v)} for e, v in zip(chunk, vectors(chunk), strict=True)]
        conn.execute(insert(entries), rows)
    if plan.updates:
        first = plan.updates[0][0]
        statement = (
            update(entries)
            .where(and_(entries.c.catalog_id == bindparam("b_catalog"), entries.c.entry_key == bindparam("b_key")))
            .values({name: bindparam(name) for name in row(first, vectors([first])[0])})
        )
        for pairs in chunks(plan.updates, WRITE_CHUNK):
            chunk = [e for e, _ in pairs]
            rows = [{"b_catalog": catalog_id, "b_key": e.key, **row(e, v)} for e, v in zip(chunk, vectors(chunk), strict=True)]
            conn.execute(statement, rows)
    keys = [r.entry_key for r in plan.deletes]
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        conn.execute(delete(entries).where(entries.c.catalog_id == catalog_id, entries.c.entry_key.in_(chunk)))

    conn.execute(delete(catalogs).where(catalogs.c.catalog_id == catalog_id))
    remaining = len(plan.inserts) + len(plan.updates) + plan.unchanged
    if remaining:
        conn.execute(insert(catalogs).values(catalog_id=catalog_id, entry_count=remaining, last_run_id=run_id, last_synced_at=now))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Clock:
    def __init__(self, into: dict[str, float]):
        self.into = into

    def __call__(self, name: str) -> _Clock:
        self._name = name
        return self

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.into[f"{self._name}_s"] = round(time.perf_counter() - self._start, 4)
