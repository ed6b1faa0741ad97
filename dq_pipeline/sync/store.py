"""The synced store: the system of record and the search index, opened together, used together."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from ..catalog import Entry
from ..embedding import Embedder
from . import protocol, reconcile, review, search
from .database import make_engine, redact_url
from .hooks import Hooks
from .point_ids import collection_name
from .qdrant_index import QdrantIndex, open_qdrant
from .schema import REJECTED, catalogs, create_schema, entries, journal


def redact_qdrant_url(url: str) -> str:
    parsed = make_url(url) if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0] else None
    if parsed is not None:
        return parsed.render_as_string(hide_password=True)
    return url.split("?", 1)[0]


def open_record(database_url: str) -> Engine:
    """Only the system of record (schema ensured): for steps that must not open embedded Qdrant."""
    engine = make_engine(database_url)
    try:
        create_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


@dataclass
class SyncedStore:
    engine: Engine
    index: QdrantIndex
    database_label: str
    qdrant_label: str
    lock_timeout_s: float = 600.0

    @classmethod
    def open(
        cls,
        database_url: str,
        *,
        qdrant_url: str | None = None,
        qdrant_api_key: str | None = None,
        qdrant_path: str | None = None,
        collection_prefix: str = "dq",
        upsert_batch_size: int = 256,
        lock_timeout_s: float = 600.0,
        embedded_engine: str = "local",
    ) -> SyncedStore:
        engine = open_record(database_url)
        try:
            client = open_qdrant(qdrant_url, qdrant_api_key, qdrant_path, embedded_engine=embedded_engine)
        except BaseException:
            engine.dispose()
            raise
        qdrant_label = redact_qdrant_url(qdrant_url) if qdrant_url else f"embedded:{qdrant_path}"
        index = QdrantIndex(client, prefix=collection_prefix, batch_size=upsert_batch_size)
        return cls(engine, index, redact_url(database_url), qdrant_label, lock_timeout_s)

    def close(self) -> None:
        try:
            self.index.client.close()
        finally:
            self.engine.dispose()

    def __enter__(self) -> SyncedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def collection_for(self, embedder: Embedder) -> str:
        return collection_name(self.index.prefix, embedder.model_id, embedder.dimension)

    # --- the write protocol ---------------------------------------------------------------------

    def sync(
        self,
        catalog_id: str,
        wanted: Sequence[Entry],
        embedder: Embedder,
        *,
        force: bool = False,
        source: protocol.Source | None = None,
        vectors: Mapping[str, np.ndarray] | None = None,
        use_vector_cache: bool = False,
        hooks: Hooks | None = None,
    ) -> protocol.SyncResult:
        """See protocol.sync_catalog (what it guarantees and raises)."""
        return protocol.sync_catalog(
            self, catalog_id, wanted, embedder, force=force, source=source, vectors=vectors, use_vector_cache=use_vector_cache, hooks=hooks
        )

    def remove_catalog(self, catalog_id: str, embedder: Embedder, source: protocol.Source | None = None) -> protocol.SyncResult:
        """Delete the catalog's rows and points; with `source`, refused if its file has come back."""
        return self.sync(catalog_id, [], embedder, source=source)

    # --- review and search ----------------------------------------------------------------------

    def reject(self, catalog_id: str, keys: Sequence[str], *, by: str | None = None, reason: str | None = None) -> int:
        return review.reject(self.engine, catalog_id, keys, by=by, reason=reason, lock_timeout_s=self.lock_timeout_s)

    def cleanup_rejected(self, catalog_id: str, hooks: Hooks | None = None) -> protocol.SyncResult:
        return protocol.remove_rejected(self, catalog_id, hooks)

    def catalogs_with_rejections(self) -> list[str]:
        """Catalogs holding rejected rows, and those with journal rows: a cleanup killed after its
        commit has no rejected rows left, only its journal row, and the next cleanup must finish it."""
        with self.engine.connect() as conn:
            rejected = set(conn.scalars(select(entries.c.catalog_id).where(entries.c.status == REJECTED).distinct()))
            unfinished = set(conn.scalars(select(journal.c.catalog_id).distinct()))
            return sorted(rejected | unfinished)

    def search(self, embedder: Embedder, query: str, *, catalog_id: str | None = None, limit: int = 10) -> list[search.Hit]:
        return search.search(self, embedder, query, catalog_id=catalog_id, limit=limit)

    # --- proof and repair -----------------------------------------------------------------------

    def known_catalogs(self, include_index: bool = True) -> list[str]:
        """Every catalog either store knows of (the index is scanned so orphans of forgotten catalogs count)."""
        with self.engine.connect() as conn:
            ids = set(conn.scalars(select(entries.c.catalog_id).distinct()))
            ids |= set(conn.scalars(select(journal.c.catalog_id).distinct()))
        if include_index:
            for collection in self.index.collections():
                ids |= self.index.catalog_ids_in(collection)
        return sorted(ids)

    def verify(self, catalog_id: str, deep: bool = False) -> reconcile.CatalogVerification:
        return reconcile.verify_catalog(self, catalog_id, deep)

    def repair(self, catalog_id: str, deep: bool = False) -> reconcile.RepairResult:
        return reconcile.repair_catalog(self, catalog_id, deep)

    def verify_unattributed(self) -> tuple[int, list[str]]:
        """Points of this namespace that name no catalog (they belong to no one)."""
        return reconcile.verify_unattributed(self)

    def repair_unattributed(self) -> int:
        return reconcile.repair_unattributed(self)

    def status(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            counts = conn.execute(
                select(entries.c.catalog_id, entries.c.status, func.count(), func.min(entries.c.model), func.max(entries.c.model))
                .group_by(entries.c.catalog_id, entries.c.status)
            ).all()
            synced = {r.catalog_id: r for r in conn.execute(select(catalogs))}
            pending = dict(conn.execute(select(journal.c.catalog_id, func.count()).group_by(journal.c.catalog_id)).all())
        report: dict[str, dict[str, Any]] = {}
        for catalog_id, status, count, model_lo, model_hi in counts:
            item = report.setdefault(catalog_id, {"entries": 0, "rejected": 0, "models": set()})
            item["entries"] += count
            if status == REJECTED:
                item["rejected"] += count
            item["models"] |= {model_lo, model_hi}
        for catalog_id in set(pending) | set(synced):
            report.setdefault(catalog_id, {"entries": 0, "rejected": 0, "models": set()})
        return {
            "database": self.database_label,
            "qdrant": self.qdrant_label,
            "namespace": self.index.prefix,
            "collections": self.index.collections(),
            "catalogs": {
                cid: {
                    "entries": item["entries"],
                    "rejected": item["rejected"],
                    "models": sorted(item["models"]),
                    "last_change": synced[cid].last_synced_at.isoformat() if cid in synced else None,
                    "pending_journal": int(pending.get(cid, 0)),
                }
                for cid, item in sorted(report.items())
            },
        }
