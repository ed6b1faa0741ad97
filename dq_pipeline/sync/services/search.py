"""Semantic search over the index, every hit verified against the system of record.

Qdrant finds candidates; PostgreSQL decides what is shown: a point whose row is gone, rejected,
or points elsewhere (a stale or orphaned point) is never returned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from sqlalchemy import and_, select

from ...embedding import Embedder
from ..stores.schema import ACTIVE, entries, standby

if TYPE_CHECKING:
    from ..stores import Stores

MAX_CANDIDATES = 10_000


@dataclass(frozen=True)
class Hit:
    score: float
    catalog_id: str
    entry_key: str
    kind: str
    text: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def search(store: Stores, embedder: Embedder, query: str, *, catalog_id: str | None = None, limit: int = 10) -> list[Hit]:
    collection = store.collection_for(embedder)
    if limit <= 0 or not store.index.has_collection(collection):
        return []
    vector = embedder.embed([query])[0].tolist()
    fetch = limit
    while True:
        # Ask for more than `limit`: some candidates may be rejected or stale and get dropped.
        fetch = min(fetch * 2, MAX_CANDIDATES)
        found = store.index.nearest(collection, vector, catalog_id=catalog_id, limit=fetch)
        hits = _verified(store, collection, found)
        if len(hits) >= limit or len(found) < fetch or fetch >= MAX_CANDIDATES:
            return hits[:limit]


def _verified(store: Stores, collection: str, candidates: list[tuple[str, float]]) -> list[Hit]:
    """The candidates a row uses, as active entries. A point of the standby model's rows counts
    when the live row of its entry has the same content: a search that embedded its query with the
    model that was live when it began still answers after a switch made that model the standby."""
    if not candidates:
        return []
    ids = [pid for pid, _ in candidates]
    columns = (entries.c.point_id, entries.c.catalog_id, entries.c.entry_key, entries.c.kind, entries.c.text)
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(*columns).where(entries.c.point_id.in_(ids), entries.c.collection == collection, entries.c.status == ACTIVE)
        )
        live = {r.point_id: r for r in rows}
        others = [pid for pid in ids if pid not in live]
        if others:
            same_content = and_(
                standby.c.catalog_id == entries.c.catalog_id,
                standby.c.entry_key == entries.c.entry_key,
                standby.c.content_hash == entries.c.content_hash,
            )
            query = (
                select(standby.c.point_id, entries.c.catalog_id, entries.c.entry_key, entries.c.kind, entries.c.text)
                .select_from(standby.join(entries, same_content))
                .where(standby.c.point_id.in_(others), standby.c.collection == collection, entries.c.status == ACTIVE)
            )
            live.update({r.point_id: r for r in conn.execute(query)})
    return [
        Hit(round(float(score), 4), live[pid].catalog_id, live[pid].entry_key, live[pid].kind, live[pid].text)
        for pid, score in candidates
        if pid in live
    ]
