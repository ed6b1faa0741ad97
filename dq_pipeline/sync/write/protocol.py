"""The journaled write of one catalog to the record (PostgreSQL/SQLite) and the index (Qdrant).

Read `sync_catalog`, then `_write`, top to bottom: they are the specification (docs/DESIGN.md,
"The write protocol").

  0. Lock the catalog (fenced: see locks.py), then finish whatever earlier runs left in the journal.
  1. Plan: compare the entries with the committed rows; embed only new and changed content.
  2. Journal: commit a `pending` row naming every point about to be written and retired.
  3. Points first: upsert the new points to Qdrant, batch by batch, each acknowledged, with no
     database transaction open, checking before each batch that the run still owns the catalog.
  4. Commit, in one short transaction: check the fence (a run that lost its lock cannot commit)
     and the source (a parse older than the file on disk cannot commit, I8), apply the catalog's
     inserts/updates/deletes (I3), mark the journal row `committed`.
     On any failure before the commit: finish the journal row (delete the new points no committed
     row uses; rewrite from the record those a committed row uses), then raise one error. A run
     that lost its lock leaves its row for the next owner instead (its points stay recorded).
  5. Retire: delete the points of replaced and deleted entries, then the journal row.
  6. Standby: while a standby model is recorded (a model build, or the model a switch replaced:
     model_roles.py), bring its rows level with the live rows just committed, steps 1-5 again
     under the same lock, into its own table and collection. The live commit stands whatever
     happens here; a failure is reported (`standby_error`) and the standby stays behind.

Point ids are content-addressed, so an updated entry's new point never overwrites the committed
version's point; the old one is deleted only after the commit. Removing rejected entries
(`remove_rejected`) is the same write with deletes only. A review decision belongs to an entry's
content: rewriting a row with the same content (force reindex, a model change) keeps it (I7).

Memory stays bounded on any catalog size: the entries are read from their entry spool, the plan is
a join in temporary tables beside them (plan.py), and new vectors are kept there as they are
embedded (or read from the vector cache the embedding step filled); all are read back a chunk at a
time for the points (step 3) and the rows (step 4).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import Connection, and_, bindparam, delete, insert, select, update

from ...catalog import ABSENT, Entry, EntrySpool
from ...catalog.spool import batch
from ...embedding import Embedder
from ...errors import DqError, LockLost, LockTimeout, StaleSource, is_transient, one_line
from ..stores import vector_cache
from ..stores.qdrant_index import Point
from ..stores.schema import ACTIVE, COMMITTED, REJECTED, catalogs, entries
from . import journal, model_roles
from .guard import delete_points
from .hooks import Hooks
from .locks import CatalogLock, catalog_lock
from .model_roles import LIVE, STANDBY, assert_role, table_of
from .plan import Plan, plan_removal, plan_sync, rebatched, refuse_foreign_namespace, rejected_versions
from .point_ids import point_id, point_payload

if TYPE_CHECKING:
    from ..stores import Stores

log = logging.getLogger(__name__)

EMBED_CHUNK = 16_384  # texts per embedder call (the model sorts each call by length: bigger pads less)
WRITE_CHUNK = 2_048  # rows per INSERT/UPDATE round and vectors read back from the spool at a time


class SyncFailed(DqError):
    """A sync ended before its commit and was cleaned up; transient or terminal as its cause is."""

    def __init__(self, catalog_id: str, reason: str, transient: bool = True):
        super().__init__(f"sync of catalog {catalog_id} failed, nothing was changed: {reason}")
        self.catalog_id = catalog_id
        self.transient = transient


@dataclass(frozen=True)
class Source:
    """The version of the source a sync's entries were parsed from (I8): its digest, and how to read
    the digest of the source as it is on disk now. A commit refuses a parse that is no longer current."""

    digest: str
    current: Callable[[], str]


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
    # What step 6 did to the standby model's rows (None: no standby recorded), and why it could
    # not finish (the live commit stands; the standby stays behind until a later sync or build).
    standby: SyncResult | None = None
    standby_error: str | None = None

    @property
    def written(self) -> int:
        return self.inserted + self.updated + self.deleted


def sync_catalog(
    store: Stores,
    catalog_id: str,
    wanted: Iterable[Entry],
    embedder: Embedder,
    *,
    force: bool = False,
    source: Source | None = None,
    vectors: Mapping[str, np.ndarray] | None = None,
    use_vector_cache: bool = False,
    hooks: Hooks | None = None,
    standby: Embedder | None = None,
) -> SyncResult:
    """Make the stores hold exactly `wanted` for this catalog (an empty list removes the catalog).

    Args:
        wanted: every entry the catalog holds now (an `EntrySpool` is read as it is; other
            iterables are first written to one).
        embedder: the live model's (model_roles.py; recorded as live if none is yet).
        standby: the standby model's, while one is recorded: its rows are brought level after the
            live commit (step 6).
        force: re-embed and rewrite every entry (review decisions are kept).
        source: the source version the entries were parsed from; the commit is refused if the
            source on disk is no longer that version (I8), and the digest is recorded.
        vectors: precomputed vectors by content hash (the rest are embedded here).
        use_vector_cache: take vectors the embedding step left in the record's vector cache.
    Returns:
        what was written; `retire_error` set if old points could not be deleted yet (journaled).
    Raises:
        SyncFailed: the run failed before its commit; both stores hold the previous version.
        LockLost: the run lost its lock; nothing was committed, its leftovers are journaled.
        StaleSource: the file changed after it was parsed; nothing was committed.
        LockTimeout: another run of the catalog held the lock for too long.
        ModelSwitched: `embedder` is not the live model, or the live model switched during the run.
    """
    hooks = hooks or Hooks()
    result = SyncResult(catalog_id, embedder.model_id, store.collection_for(embedder))
    clock = _Clock(result.durations)
    cache = store.engine if use_vector_cache else None
    live = model_roles.record_live(store.engine, embedder.model_id, embedder.dimension, result.collection, getattr(embedder, "source", None))
    if live.model_id != embedder.model_id:
        raise model_roles.ModelSwitched(f"catalog {catalog_id}: {embedder.model_id} is not the live model ({live.model_id}); nothing was written")

    spool = EntrySpool.of(wanted)
    try:
        with catalog_lock(store.engine, catalog_id, store.lock_timeout_s) as lock:
            hooks("locked")
            with clock("recover"):
                result.recovered_journal_rows = journal.recover(store.engine, store.index, lock, catalog_id)

            with clock("plan"):
                rejected = rejected_versions(store.engine, catalog_id)
                refuse_foreign_namespace(store.engine, store.index.prefix, catalog_id)
                plan = plan_sync(store.engine, catalog_id, spool, embedder.model_id, force, rejected)
            with plan:
                result.unchanged = plan.unchanged
                if plan.is_empty:
                    _record_source(store.engine, lock, catalog_id, source)  # I4: no entry embedded or written
                else:
                    with clock("embed"):
                        new_vectors = _VectorStore(plan, vectors)
                        result.embedded = _embed_into(new_vectors, plan, embedder, cache)
                    _write(store, lock, catalog_id, plan, _Versions(embedder, result.collection, new_vectors, live), source, hooks, result)
                    if cache is not None:
                        for part in plan.texts_to_embed():
                            vector_cache.evict(store.engine, embedder.model_id, [h for h, _ in part])

            if standby is not None:  # 6. the standby model's rows, level with the live ones
                try:
                    result.standby = mirror_standby(store, lock, catalog_id, standby, force=force, cache=cache, hooks=hooks)
                except Exception as exc:
                    result.standby_error = f"the standby model {standby.model_id} stays behind for this catalog: {one_line(exc)}"
                    log.warning("%s: %s", catalog_id, result.standby_error)
    finally:
        if spool is not wanted:
            spool.close()
    return result


def mirror_standby(store: Stores, lock: CatalogLock, catalog_id: str, embedder: Embedder, *, force: bool = False, cache=None, hooks: Hooks | None = None) -> SyncResult:
    """Make the catalog's standby rows hold the live rows' contents embedded with the standby model
    (under the catalog's lock, which the caller holds): steps 1-5 into the standby table and
    collection. Review decisions stay with the live rows; every live row is mirrored, rejected or not.

    Raises:
        SyncFailed, LockLost: as sync_catalog; ModelSwitched: `embedder` is not (or no longer) the
        standby model. ModelUnavailable: the standby model is needed but cannot be loaded here.
    """
    hooks = hooks or Hooks()
    result = SyncResult(catalog_id, embedder.model_id, store.collection_for(embedder))
    clock = _Clock(result.durations)
    recorded = model_roles.roles(store.engine).get(STANDBY)
    if recorded is None or recorded.model_id != embedder.model_id:
        raise model_roles.ModelSwitched(f"catalog {catalog_id}: {embedder.model_id} is not the standby model; nothing was written")
    with _live_rows(store.engine, catalog_id) as spool:
        with clock("plan"):
            plan = plan_sync(store.engine, catalog_id, spool, embedder.model_id, force, (), table=table_of(STANDBY))
        with plan:
            result.unchanged = plan.unchanged
            if plan.is_empty:
                return result
            with clock("embed"):
                new_vectors = _VectorStore(plan, None)
                result.embedded = _embed_into(new_vectors, plan, embedder, cache)
            _write(store, lock, catalog_id, plan, _Versions(embedder, result.collection, new_vectors, recorded), None, hooks, result)
            if cache is not None:  # the embedding step's vectors of the standby model, now in its rows
                for part in plan.texts_to_embed():
                    vector_cache.evict(store.engine, embedder.model_id, [h for h, _ in part])
    return result


def _live_rows(engine, catalog_id: str) -> EntrySpool:
    """The catalog's committed live rows as entries (what the standby mirrors), streamed to a spool."""
    spool = EntrySpool.create()
    try:
        query = select(entries.c.entry_key, entries.c.kind, entries.c.text, entries.c.payload, entries.c.content_hash).where(
            entries.c.catalog_id == catalog_id
        )
        with engine.connect() as conn:
            for part in conn.execution_options(yield_per=WRITE_CHUNK).execute(query).partitions():
                for r in part:
                    spool.add(Entry.restore(r.entry_key, r.kind, r.text, json.dumps(r.payload, sort_keys=True), "", r.content_hash))
        return spool.seal()
    except BaseException:
        spool.close()
        raise


def remove_rejected(store: Stores, catalog_id: str, hooks: Hooks | None = None, standby: Embedder | None = None) -> SyncResult:
    """Delete the catalog's rejected entries from both stores, through the same protocol (and, with
    `standby`, the standby model's rows of them: step 6, which embeds nothing here)."""
    hooks = hooks or Hooks()
    result = SyncResult(catalog_id, model="", collection="")
    with catalog_lock(store.engine, catalog_id, store.lock_timeout_s) as lock:
        hooks("locked")
        result.recovered_journal_rows = journal.recover(store.engine, store.index, lock, catalog_id)
        live = model_roles.roles(store.engine).get(LIVE)  # a removal planned before a switch cannot commit after it
        with plan_removal(store.engine, catalog_id, REJECTED) as plan:
            result.unchanged = plan.unchanged
            if not plan.is_empty:
                _write(store, lock, catalog_id, plan, None, None, hooks, result, fence=live)
        if standby is not None:
            try:
                result.standby = mirror_standby(store, lock, catalog_id, standby, hooks=hooks)
            except Exception as exc:
                result.standby_error = f"the standby model {standby.model_id} stays behind for this catalog: {one_line(exc)}"
                log.warning("%s: %s", catalog_id, result.standby_error)
    return result


def _write(
    store: Stores,
    lock: CatalogLock,
    catalog_id: str,
    plan: Plan,
    versions: _Versions | None,
    source: Source | None,
    hooks: Hooks,
    result: SyncResult,
    fence: model_roles.ModelRole | None = None,
) -> None:
    """Journal, points, commit, retire (under the catalog lock). The commit is fenced on the model
    role the run planned with: its versions' role, or `fence` for a write of deletions only."""
    fence = versions.role if versions is not None else fence
    engine, index = store.engine, store.index
    clock = _Clock(result.durations)
    model_id = versions.embedder.model_id if versions else ""
    ids = [point_id(catalog_id, e.key, e.content_hash, model_id) for chunk in plan.to_embed() for e in chunk] if versions else []
    retired = _retired_points(catalog_id, plan, model_id)
    new_points = {versions.collection: ids} if versions and ids else {}
    run_id = str(uuid.uuid4())  # also the writer every new point and row records

    if versions and ids:  # Qdrant unreachable: fail here, with nothing journaled and nothing to clean up
        index.ensure_collection(versions.collection, versions.embedder.dimension)

    # 2. Journal: every point this run may write or retire is named before Qdrant is written.
    journal.write_pending(engine, run_id, catalog_id, new_points, retired)
    hooks("journal_written")
    with clock("write"):
        try:
            # 3. Points first, no transaction open.
            if versions and ids:

                def on_batch(number: int) -> None:
                    hooks("qdrant_batch", batch=number)
                    _assert_owned(engine, lock)

                index.upsert(versions.collection, _points(catalog_id, plan, versions, run_id), on_batch=on_batch)
            hooks("qdrant_written")

            # 4. Commit: fence, model role, source, rows, journal phase, in one short transaction.
            _assert_current(catalog_id, source)
            with lock.fenced(engine) as conn:
                if fence is not None:
                    assert_role(conn, fence, versions.embedder.dimension if versions else None, versions.collection if versions else None)
                _apply(conn, catalog_id, plan, versions, run_id, source)
                hooks("pg_flushed")
                journal.mark_committed(conn, run_id)
                hooks("before_commit")
        except Exception as exc:
            if _compensate(store, lock, run_id, catalog_id, new_points) != COMMITTED:
                if isinstance(exc, (LockLost, StaleSource, model_roles.ModelSwitched)):
                    raise
                raise SyncFailed(catalog_id, one_line(exc), is_transient(exc)) from exc
            log.warning("commit of %s reported %s but had succeeded; finished as committed", catalog_id, one_line(exc))
    hooks("committed")
    result.inserted, result.updated, result.deleted = plan.inserted, plan.updated, plan.deleted

    # 5. Retire the replaced and deleted versions' points.
    with clock("retire"):
        try:
            journal.finish_own(engine, index, run_id)
            result.retired_points = _count(retired)
            hooks("retired")
        except Exception as exc:
            result.retire_error = (
                f"committed, but {_count(retired)} replaced point(s) could not be "
                f"deleted from Qdrant yet ({one_line(exc)}); the journal keeps them for the next sync or repair"
            )
            log.warning("%s: %s", catalog_id, result.retire_error)


def _assert_owned(engine, lock: CatalogLock) -> None:
    """Stop writing points as soon as another run owns the catalog (its recovery may be deleting them)."""
    with engine.connect() as conn:
        if not lock.still_held(conn):
            raise LockLost(f"catalog {lock.catalog_id}: this run lost its lock while writing points; nothing was committed")


def _assert_current(catalog_id: str, source: Source | None) -> None:
    if source is not None and (now := source.current()) != source.digest:
        raise StaleSource(
            f"catalog {catalog_id}: its source changed after it was parsed (parsed {source.digest[:12]}, now {now[:12]}); "
            "nothing was committed: a newer run applies the newer version"
        )


def _compensate(store: Stores, lock: CatalogLock, run_id: str, catalog_id: str, new_points: Mapping[str, list[str]]) -> str | None:
    """After a failure before (or during) the commit: the row's phase once finished, or None if it
    could not be finished now (it then stays in the journal for the next run)."""
    engine = store.engine
    try:
        phase = journal.phase_of(engine, run_id)
        if phase == COMMITTED:  # the commit went through although it reported an error
            return COMMITTED
        with engine.connect() as conn:
            owned = phase is not None and lock.still_held(conn)
        if owned:
            return journal.finish_own(engine, store.index, run_id)
        return _compensate_after_losing_the_lock(store, run_id, catalog_id, new_points)
    except Exception as exc:
        log.error("%s: could not clean up after the failed run (%s); its journal row stays for the next run", catalog_id, one_line(exc))
        return None


def _compensate_after_losing_the_lock(store: Stores, run_id: str, catalog_id: str, new_points: Mapping[str, list[str]]) -> str | None:
    """The lock went (its session ended). If nobody holds it now, take it again and clean up under
    it, as the next run would; if another run holds it, that run may be writing these very ids:
    clean up nothing, only make sure they stay recorded for whoever runs next."""
    engine = store.engine
    journal.keep_recorded(engine, run_id, catalog_id, new_points)
    try:
        with catalog_lock(engine, catalog_id, RELOCK_WAIT_S) as again:
            journal.recover(engine, store.index, again, catalog_id)
            return journal.phase_of(engine, run_id)  # None: finished
    except LockTimeout:
        log.error("%s: lost the catalog lock to another run; this run's points stay in the journal for it", catalog_id)
        return None


RELOCK_WAIT_S = 0.5  # a run that lost its lock tries this long to take it back for its clean-up


def _record_source(engine, lock: CatalogLock, catalog_id: str, source: Source | None) -> None:
    """Nothing to write but the source digest, and only if it differs from what is recorded."""
    if source is None:
        return
    with engine.connect() as conn:
        row = conn.execute(select(catalogs.c.source_digest, catalogs.c.entry_count).where(catalogs.c.catalog_id == catalog_id)).first()
    if (row is None and source.digest == ABSENT) or (row is not None and row.source_digest == source.digest):
        return
    if source.current() != source.digest:
        return  # the file changed again since it was parsed: the run that parses it records it
    with lock.fenced(engine) as conn:
        remaining = row.entry_count if row is not None else 0
        _record_catalog(conn, catalog_id, remaining, None, source)


def _record_catalog(conn: Connection, catalog_id: str, remaining: int, run_id: str | None, source: Source | None) -> None:
    """The catalog's row: kept while it has entries or a file, so the sensor can compare digests."""
    now = datetime.now(UTC)
    previous = conn.execute(select(catalogs.c.last_run_id, catalogs.c.last_synced_at).where(catalogs.c.catalog_id == catalog_id)).first()
    conn.execute(delete(catalogs).where(catalogs.c.catalog_id == catalog_id))
    digest = source.digest if source is not None else None
    if remaining or (digest is not None and digest != ABSENT):
        conn.execute(
            insert(catalogs).values(
                catalog_id=catalog_id,
                entry_count=remaining,
                last_run_id=run_id or (previous.last_run_id if previous else None),
                last_synced_at=now if run_id or previous is None else previous.last_synced_at,
                source_digest=digest,
            )
        )


@dataclass(frozen=True)
class _Versions:
    """What new rows are made of: the model, its collection, the vectors by content hash, and the
    role (live or standby) whose table they go to."""

    embedder: Embedder
    collection: str
    vectors: _VectorStore
    role: model_roles.ModelRole


class _VectorStore:
    """New vectors by content hash: precomputed ones as given, the others in the plan's temporary
    tables (float32 little-endian rows), read back a chunk at a time."""

    def __init__(self, plan: Plan, precomputed: Mapping[str, np.ndarray] | None):
        self._db = plan.db
        self._precomputed = precomputed or {}
        self._dimension = 0

    def add(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        block = np.ascontiguousarray(vectors, dtype="<f4")
        if not self._dimension:
            self._dimension = block.shape[1]
        if block.shape != (len(hashes), self._dimension):
            raise ValueError(f"the embedder returned vectors of shape {block.shape} for {len(hashes)} texts")
        with batch(self._db):
            self._db.executemany("INSERT OR REPLACE INTO vector (hash, v) VALUES (?, ?)", zip(hashes, (row.tobytes() for row in block), strict=True))

    def given(self, content_hash: str) -> bool:
        """Whether this content's vector was handed in precomputed (nothing to embed or fetch)."""
        return content_hash in self._precomputed

    def many(self, hashes: Sequence[str]) -> list[np.ndarray]:
        """The vectors of these content hashes (a chunk's worth), in order."""
        found = {h: np.asarray(self._precomputed[h], dtype="<f4") for h in hashes if h in self._precomputed}
        wanted = sorted({h for h in hashes if h not in found})
        if wanted:
            query = "SELECT hash, v FROM vector WHERE hash IN (SELECT value FROM json_each(?))"
            for content_hash, blob in self._db.execute(query, (json.dumps(wanted),)):
                found[content_hash] = np.frombuffer(blob, dtype="<f4")
        return [found[h] for h in hashes]


def _embed_into(store: _VectorStore, plan: Plan, embedder: Embedder, cache_engine) -> int:
    """Fill `store` with the vectors of every new version not precomputed (from the record's vector
    cache where the embedding step left them, else encoded here, a chunk at a time); returns how
    many texts were encoded here."""

    def not_at_hand() -> Iterator[list[tuple[str, str]]]:
        for part in plan.texts_to_embed():
            part = [(h, t) for h, t in part if not store.given(h)]
            if cache_engine is not None and part:
                cached = vector_cache.get(cache_engine, embedder.model_id, [h for h, _ in part])
                if cached:
                    store.add(list(cached), np.stack(list(cached.values())))
                part = [(h, t) for h, t in part if h not in cached]
            yield part

    encoded = 0
    for texts in rebatched(not_at_hand(), EMBED_CHUNK):
        store.add([h for h, _ in texts], embedder.embed([text for _, text in texts]))
        encoded += len(texts)
    return encoded


def _points(catalog_id: str, plan: Plan, versions: _Versions, run_id: str) -> Iterator[Point]:
    """The new points, built a chunk at a time from the stored vectors."""
    for chunk in plan.to_embed():
        for entry, vector in zip(chunk, versions.vectors.many([e.content_hash for e in chunk]), strict=True):
            yield _point(catalog_id, entry, versions.embedder.model_id, vector, run_id)


def _point(catalog_id: str, entry: Entry, model_id: str, vector: np.ndarray, written_by: str | None = None) -> Point:
    vector = np.asarray(vector, dtype="<f4")
    payload = point_payload(catalog_id, entry.key, entry.content_hash, model_id, entry.kind, vector.tobytes(), written_by)
    return Point(point_id(catalog_id, entry.key, entry.content_hash, model_id), vector, payload)


def _retired_points(catalog_id: str, plan: Plan, model_id: str) -> dict[str, dict[str, list[str]]]:
    """Points to delete after the commit, by collection and writer: deleted entries', and replaced
    versions' (if their id changed; a force reindex rewrites the same ids in place)."""
    retired: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for rows in plan.deletes():
        for row in rows:
            retired[row.collection][row.written_by or ""].append(row.point_id)
    for pairs in plan.updates():
        for entry, row in pairs:
            if point_id(catalog_id, entry.key, entry.content_hash, model_id) != row.point_id:
                retired[row.collection][row.written_by or ""].append(row.point_id)
    return {collection: dict(by_writer) for collection, by_writer in retired.items()}


def _count(retired: Mapping[str, Mapping[str, list[str]]]) -> int:
    return sum(len(ids) for by_writer in retired.values() for ids in by_writer.values())


_REVIEW_RESET = {"status": ACTIVE, "reviewed_by": None, "review_reason": None, "reviewed_at": None}


def _apply(conn: Connection, catalog_id: str, plan: Plan, versions: _Versions | None, run_id: str, source: Source | None) -> None:
    """The whole catalog change in one transaction (I3), written a chunk of rows at a time."""
    now = datetime.now(UTC)
    table = table_of(versions.role.role) if versions is not None else entries

    def row(entry: Entry, vector: np.ndarray) -> dict[str, object]:
        assert versions is not None
        return {
            "kind": entry.kind,
            "text": entry.text,
            "payload": entry.payload,  # a fresh dict decoded from the entry's JSON
            "content_hash": entry.content_hash,
            "model": versions.embedder.model_id,
            "dimension": versions.embedder.dimension,
            "vector": vector.tobytes(),
            "collection": versions.collection,
            "point_id": point_id(catalog_id, entry.key, entry.content_hash, versions.embedder.model_id),
            "written_by": run_id,
            "updated_at": now,
        }

    def vectors(chunk: Sequence[Entry]) -> list[np.ndarray]:
        assert versions is not None
        return versions.vectors.many([e.content_hash for e in chunk])

    for chunk in plan.inserts():
        rows = [{"catalog_id": catalog_id, "entry_key": e.key, **row(e, v), **_REVIEW_RESET} for e, v in zip(chunk, vectors(chunk), strict=True)]
        conn.execute(insert(table), rows)

    # Same content rewritten (force, model change): the review decision stays. New content: it lapses.
    statements: dict[bool, object] = {}
    for pairs in plan.updates():
        for rewrite in (True, False):
            part = [e for e, r in pairs if (e.content_hash == r.content_hash) is rewrite]
            if not part:
                continue
            extra = {} if rewrite else _REVIEW_RESET
            rows = [{"b_catalog": catalog_id, "b_key": e.key, **row(e, v), **extra} for e, v in zip(part, vectors(part), strict=True)]
            if rewrite not in statements:
                statements[rewrite] = (
                    update(table)
                    .where(and_(table.c.catalog_id == bindparam("b_catalog"), table.c.entry_key == bindparam("b_key")))
                    .values({name: bindparam(name) for name in rows[0] if not name.startswith("b_")})
                )
            conn.execute(statements[rewrite], rows)

    for rows in plan.deletes():
        keys = [r.entry_key for r in rows]
        for start in range(0, len(keys), 1000):
            conn.execute(delete(table).where(table.c.catalog_id == catalog_id, table.c.entry_key.in_(keys[start : start + 1000])))

    if table is entries:  # the catalog's record follows its live rows only
        _record_catalog(conn, catalog_id, plan.inserted + plan.updated + plan.unchanged, run_id, source)


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


# Deletions of points outside the journal go through the guard too (see guard.py); re-exported so
# callers of the protocol need not know where it lives.
__all__ = ["ABSENT", "SyncFailed", "SyncResult", "Source", "delete_points", "mirror_standby", "remove_rejected", "sync_catalog"]
