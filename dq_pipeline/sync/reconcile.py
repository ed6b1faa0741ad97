"""Proof and repair of I2: compare the ID sets (not just counts) and payloads of both stores.

Repair never embeds: PostgreSQL keeps every row's vector, so missing or wrong points are rewritten
from it, and points no row references are deleted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, select

from . import journal
from .locks import catalog_lock
from .point_ids import point_payload
from .qdrant_index import PAYLOAD_FIELDS, Point
from .schema import entries
from .schema import journal as journal_table

SAMPLE = 10  # ids shown per problem, enough to investigate without flooding the output


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

    @property
    def in_sync(self) -> bool:
        return not (self.missing or self.orphans or self.mismatched or self.pending_journal)

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k not in ("catalog_id", "samples")}


@dataclass
class _Comparison:
    verification: CatalogVerification
    missing: list[tuple[str, str]]  # (collection, point id)
    orphans: list[tuple[str, str]]
    mismatched: list[tuple[str, str]]


def _expected(store, catalog_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    columns = (entries.c.collection, entries.c.point_id, entries.c.entry_key, entries.c.content_hash, entries.c.model)
    with store.engine.connect() as conn:
        rows = conn.execute(select(*columns).where(entries.c.catalog_id == catalog_id))
        return {
            (r.collection, r.point_id): {"catalog_id": catalog_id, "entry_key": r.entry_key, "content_hash": r.content_hash, "model": r.model}
            for r in rows
        }


def _compare(store, catalog_id: str) -> _Comparison:
    expected = _expected(store, catalog_id)
    actual: dict[tuple[str, str], dict[str, Any]] = {}
    for collection in store.index.collections():
        for pid, payload in store.index.points_of_catalog(collection, catalog_id).items():
            actual[(collection, pid)] = payload
    missing = sorted(set(expected) - set(actual))
    orphans = sorted(set(actual) - set(expected))
    mismatched = sorted(
        k for k in set(expected) & set(actual) if any(actual[k].get(f) != expected[k][f] for f in PAYLOAD_FIELDS)
    )
    with store.engine.connect() as conn:
        pending = conn.scalar(select(func.count()).select_from(journal_table).where(journal_table.c.catalog_id == catalog_id))
    verification = CatalogVerification(
        catalog_id,
        pg=len(expected),
        qdrant=len(actual),
        missing=len(missing),
        orphans=len(orphans),
        mismatched=len(mismatched),
        pending_journal=int(pending or 0),
        samples={
            name: [f"{c}/{p}" for c, p in ids[:SAMPLE]]
            for name, ids in (("missing", missing), ("orphans", orphans), ("mismatched", mismatched))
            if ids
        },
    )
    return _Comparison(verification, missing, orphans, mismatched)


def verify_catalog(store, catalog_id: str) -> CatalogVerification:
    """Compare under the catalog lock, so a run in flight is waited for, not reported as a difference."""
    with catalog_lock(store.engine, catalog_id, store.lock_timeout_s):
        return _compare(store, catalog_id).verification


@dataclass
class RepairResult:
    catalog_id: str
    journal_rows_finished: int
    restored: int
    rewritten: int
    orphans_deleted: int
    after: CatalogVerification


def repair_catalog(store, catalog_id: str) -> RepairResult:
    """Under the catalog lock: finish the journal, re-upsert missing/mismatched points from PG, delete orphans."""
    with catalog_lock(store.engine, catalog_id, store.lock_timeout_s):
        finished = journal.recover(store.engine, store.index, catalog_id)
        comparison = _compare(store, catalog_id)
        to_write = comparison.missing + comparison.mismatched
        by_collection: dict[str, list[str]] = {}
        for collection, pid in to_write:
            by_collection.setdefault(collection, []).append(pid)
        for collection, ids in by_collection.items():
            points = _points_from_record(store, catalog_id, ids)
            store.index.ensure_collection(collection, len(points[0].vector))
            store.index.upsert(collection, points)
        orphans: dict[str, list[str]] = {}
        for collection, pid in comparison.orphans:
            orphans.setdefault(collection, []).append(pid)
        for collection, ids in orphans.items():
            store.index.delete(collection, ids)
        return RepairResult(
            catalog_id,
            journal_rows_finished=finished,
            restored=len(comparison.missing),
            rewritten=len(comparison.mismatched),
            orphans_deleted=len(comparison.orphans),
            after=_compare(store, catalog_id).verification,
        )


def _points_from_record(store, catalog_id: str, ids: list[str]) -> list[Point]:
    columns = (entries.c.point_id, entries.c.entry_key, entries.c.content_hash, entries.c.model, entries.c.kind, entries.c.vector)
    points: list[Point] = []
    with store.engine.connect() as conn:
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            for r in conn.execute(select(*columns).where(entries.c.catalog_id == catalog_id, entries.c.point_id.in_(chunk))):
                payload = point_payload(catalog_id, r.entry_key, r.content_hash, r.model, r.kind)
                points.append(Point(r.point_id, np.frombuffer(r.vector, dtype="<f4"), payload))
    return points
