"""Proof and repair: compare what the record says with what Qdrant holds, point by point.

Two passes, each a page at a time, so memory is bounded whatever the catalog size:

1. Rows -> points: every committed row's point (the live model's rows, then the standby model's,
   see model_roles.py) is fetched by id. Absent: `missing`. Present but
   its payload (catalog, key, content hash, model, vector digest) differs from the row's:
   `mismatched`. With `deep`, the vector itself is compared with the record's (cosine within
   DEEP_TOLERANCE), which catches a vector overwritten under an unchanged payload.
2. Points -> rows: every point whose payload names the catalog is looked up in the record. A point
   no row uses is an `orphan`, unless a pending journal row names it: then it is a recorded
   leftover, counted in `pending_journal` and finished by the next sync or repair. A point that
   another catalog's row uses (its payload was changed) is that catalog's `mismatched`, never an
   orphan here.

Points with no catalog id in their payload belong to no catalog: `verify_unattributed` reports
them and `repair_unattributed` removes those no row uses.

Repair never embeds: the record keeps every row's vector, so missing or mismatched points are
rewritten from it, and orphans are deleted through the guard (guard.py), which refuses any id a
committed row or pending journal row uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select

from ..stores.qdrant_index import PAYLOAD_FIELDS, chunks
from ..stores.schema import ENTRY_TABLES
from ..stores.schema import journal as journal_table
from ..write import journal
from ..write.guard import delete_points, named_by_pending, restore_points
from ..write.locks import catalog_lock
from ..write.model_roles import pending_drops
from ..write.plan import refuse_foreign_namespace
from ..write.point_ids import vector_digest

if TYPE_CHECKING:
    from ..stores import Stores

SAMPLE = 10  # ids shown per problem, enough to investigate without flooding the output
PAGE = 1000  # rows or points held at a time
DEEP_TOLERANCE = 1e-4  # 1 - cosine between the record's vector and Qdrant's copy (which Qdrant may renormalise)


@dataclass
class CatalogVerification:
    catalog_id: str
    pg: int = 0
    qdrant: int = 0
    missing: int = 0
    orphans: int = 0
    mismatched: int = 0
    pending_journal: int = 0
    samples: dict[str, list[str]] = field(default_factory=dict)
    # Of `pg`, the live model's rows (the catalog's entries); the rest are a standby model's.
    live_rows: int = 0

    @property
    def in_sync(self) -> bool:
        return not (self.missing or self.orphans or self.mismatched or self.pending_journal)

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k not in ("catalog_id", "samples", "live_rows")}

    def _note(self, kind: str, collection: str, pid: str) -> None:
        sample = self.samples.setdefault(kind, [])
        if len(sample) < SAMPLE:
            sample.append(f"{collection}/{pid}")


@dataclass
class _Problems:
    """What a comparison found, as (collection, point id) pairs handed out a page at a time."""

    to_rewrite: list[tuple[str, str]] = field(default_factory=list)
    orphans: list[tuple[str, str, str | None]] = field(default_factory=list)  # and the writer its payload names


def _row_pages(store: Stores, catalog_id: str) -> Iterator[tuple[Any, list[Any]]]:
    """The catalog's live rows, then its standby model's rows, a page at a time."""
    for table in ENTRY_TABLES:
        columns = (
            table.c.collection, table.c.point_id, table.c.entry_key, table.c.content_hash, table.c.model, table.c.vector, table.c.written_by
        )
        query = select(*columns).where(table.c.catalog_id == catalog_id).order_by(table.c.collection, table.c.point_id)
        last: tuple[str, str] | None = None
        while True:  # keyset pagination: no cursor stays open across the Qdrant calls
            page_query = query if last is None else query.where(
                (table.c.collection > last[0]) | ((table.c.collection == last[0]) & (table.c.point_id > last[1]))
            )
            with store.engine.connect() as conn:
                rows = conn.execute(page_query.limit(PAGE)).all()
            if not rows:
                break
            yield table, rows
            last = (rows[-1].collection, rows[-1].point_id)


def _compare(store: Stores, catalog_id: str, deep: bool, on_page=None) -> CatalogVerification:
    """Both passes; `on_page(problems)` is called after each page (repair acts on it at once)."""
    v = CatalogVerification(catalog_id)
    index = store.index
    refuse_foreign_namespace(store.engine, store.index.prefix, catalog_id)

    # 1. rows -> points
    for table, rows in _row_pages(store, catalog_id):
        problems = _Problems()
        if table is ENTRY_TABLES[0]:
            v.live_rows += len(rows)
        by_collection: dict[str, list[Any]] = {}
        for r in rows:
            by_collection.setdefault(r.collection, []).append(r)
        for collection, group in by_collection.items():
            found = index.retrieve(collection, [r.point_id for r in group], with_vectors=deep)
            for r in group:
                v.pg += 1
                if r.point_id not in found:
                    v.missing += 1
                    v._note("missing", collection, r.point_id)
                    problems.to_rewrite.append((collection, r.point_id))
                    continue
                v.qdrant += 1
                payload, vector = found[r.point_id]
                want = {"catalog_id": catalog_id, "entry_key": r.entry_key, "content_hash": r.content_hash, "model": r.model,
                        "vector_digest": vector_digest(r.vector), "written_by": r.written_by}
                if any(payload.get(name) != want[name] for name in PAYLOAD_FIELDS) or (deep and _drifted(r.vector, vector)):
                    v.mismatched += 1
                    v._note("mismatched", collection, r.point_id)
                    problems.to_rewrite.append((collection, r.point_id))
        if on_page is not None:
            on_page(problems)

    # 2. points -> rows
    with store.engine.connect() as conn:
        v.pending_journal = int(conn.scalar(select(func.count()).select_from(journal_table).where(journal_table.c.catalog_id == catalog_id)) or 0)
    dropping = pending_drops(store.engine)
    for collection in index.collections():
        if collection in dropping:
            # A dropped model's collection, recorded for deletion: its points are recorded
            # leftovers (pending, finished by the next drop-old, sync or repair), not orphans.
            if next(iter(index.pages_of_catalog(collection, catalog_id, 1)), []):
                v.pending_journal += 1
            continue
        journaled = named_by_pending(store.engine, catalog_id, collection) if v.pending_journal else set()
        for page in index.pages_of_catalog(collection, catalog_id, PAGE):
            problems = _Problems()
            owners = _owners(store, collection, [pid for pid, _ in page])
            for pid, payload in page:
                owner = owners.get(pid)
                if owner == catalog_id:
                    continue  # counted in pass 1
                if owner is not None:
                    continue  # another catalog's row uses it: that catalog's `mismatched`
                v.qdrant += 1
                if pid in journaled:
                    continue  # a recorded leftover: finished with its journal row
                v.orphans += 1
                v._note("orphans", collection, pid)
                problems.orphans.append((collection, pid, payload.get("written_by")))
            if on_page is not None:
                on_page(problems)
    return v


def _owners(store: Stores, collection: str, ids: list[str]) -> dict[str, str]:
    """Which catalog's row uses each of these point ids in this collection."""
    owners: dict[str, str] = {}
    with store.engine.connect() as conn:
        for part in chunks(ids, PAGE):
            for table in ENTRY_TABLES:
                query = select(table.c.point_id, table.c.catalog_id).where(table.c.point_id.in_(part), table.c.collection == collection)
                owners.update(dict(conn.execute(query).all()))  # type: ignore[arg-type]
    return owners


def _drifted(record: bytes, stored: np.ndarray | None) -> bool:
    if stored is None:
        return True
    want = np.frombuffer(record, dtype="<f4").astype(np.float64)
    got = np.asarray(stored, dtype=np.float64)
    if want.shape != got.shape:
        return True
    norm = float(np.linalg.norm(want) * np.linalg.norm(got))
    return norm == 0.0 or 1.0 - float(want @ got) / norm > DEEP_TOLERANCE


def verify_catalog(store: Stores, catalog_id: str, deep: bool = False) -> CatalogVerification:
    """Compare the record and the index for one catalog (ids, payloads, vector digests; with `deep`,
    the vectors), under the catalog lock, so a run in flight is waited for, not reported as a
    difference. Reads a page at a time: memory does not grow with the catalog.

    Returns:
        the counts (pg, qdrant, missing, orphans, mismatched, pending_journal) and samples of each.
    Raises:
        LockTimeout: another run held the catalog's lock for longer than `store.lock_timeout_s`.
        StoreUnavailable: Qdrant did not answer (transient). A database error is SQLAlchemy's own
            (`errors.is_transient` counts it transient).
        ConfigurationError: the catalog's rows point into another namespace's collections.
    """
    with catalog_lock(store.engine, catalog_id, store.lock_timeout_s):
        return _compare(store, catalog_id, deep)


@dataclass
class RepairResult:
    catalog_id: str
    journal_rows_finished: int
    restored: int
    rewritten: int
    orphans_deleted: int
    after: CatalogVerification


def repair_catalog(store: Stores, catalog_id: str, deep: bool = False) -> RepairResult:
    """Under the catalog lock: finish the journal, rewrite missing/mismatched points from the record
    (never embeds), delete orphans through the guard; then verify again.

    Returns:
        what was finished, restored, rewritten and deleted, and the verification after (`after`).
    Raises:
        LockTimeout: another run held the catalog's lock for longer than `store.lock_timeout_s`.
        StoreUnavailable: Qdrant did not answer (transient; the journal keeps what is left). A
            database error is SQLAlchemy's own (`errors.is_transient` counts it transient).
        ConfigurationError: the catalog's rows point into another namespace's collections.
    """
    with catalog_lock(store.engine, catalog_id, store.lock_timeout_s) as lock:
        finished = journal.recover(store.engine, store.index, lock, catalog_id)
        deleted = 0

        def act(problems: _Problems) -> None:
            nonlocal deleted
            for collection, ids in _by_collection(problems.to_rewrite).items():
                restore_points(store.engine, store.index, collection, ids)
            for (collection, writer), ids in _by_collection_and_writer(problems.orphans).items():
                deleted += delete_points(store.engine, store.index, collection, ids, catalog_id=catalog_id, written_by=writer)

        before = _compare(store, catalog_id, deep, on_page=act)
        return RepairResult(
            catalog_id,
            journal_rows_finished=finished,
            restored=before.missing,
            rewritten=before.mismatched,
            orphans_deleted=deleted,
            after=_compare(store, catalog_id, deep),
        )


def _by_collection(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for collection, pid in pairs:
        grouped.setdefault(collection, []).append(pid)
    return grouped


def _unattributed_pages(store: Stores) -> Iterator[tuple[str, list[tuple[str, str, Any]]]]:
    """(collection, [(collection, id, writer)]) of points whose payload names no catalog (no
    catalog_id, or one that is not a non-empty string, which no catalog's keyword filter can
    match) and that no row uses."""
    for collection in store.index.collections():
        for page in store.index.pages_of_collection(collection, PAGE):
            strays = [(pid, payload.get("written_by")) for pid, payload in page if not _names_a_catalog(payload)]
            if strays:
                owners = _owners(store, collection, [pid for pid, _ in strays])
                yield collection, [(collection, pid, writer) for pid, writer in strays if pid not in owners]


def _names_a_catalog(payload: dict[str, Any]) -> bool:
    value = payload.get("catalog_id")
    return isinstance(value, str) and value != ""


def _by_collection_and_writer(triples: list[tuple[str, str, Any]]) -> dict[tuple[str, Any], list[str]]:
    grouped: dict[tuple[str, Any], list[str]] = {}
    for collection, pid, writer in triples:
        grouped.setdefault((collection, writer if isinstance(writer, str) else None), []).append(pid)
    return grouped


def verify_unattributed(store: Stores) -> tuple[int, list[str]]:
    """Points of this namespace that name no catalog, and a sample of them."""
    count, sample = 0, []
    for collection, strays in _unattributed_pages(store):
        count += len(strays)
        sample.extend(f"{collection}/{pid}" for _, pid, _ in strays[: SAMPLE - len(sample)])
    return count, sample


def repair_unattributed(store: Stores) -> int:
    """Delete points that name no catalog and that no row uses (through the guard); returns how many."""
    deleted = 0
    for _, strays in _unattributed_pages(store):
        for (collection, writer), ids in _by_collection_and_writer(strays).items():
            deleted += delete_points(store.engine, store.index, collection, ids, catalog_id=None, written_by=writer)
    return deleted
