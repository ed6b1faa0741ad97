"""The two stores, as adapters that know nothing of the write protocol: the record (SQLAlchemy
engine, `schema`, `database`), the search index (`vector_index.VectorIndex`, implemented by
`qdrant_index.QdrantIndex` over qdrant-client or Qdrant Edge, and by the in-memory fake), and the
record's vector cache."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ...embedding import Embedder
    from .vector_index import VectorIndex

__all__ = ["Stores"]


class Stores(Protocol):
    """The two stores as the write protocol and the services take them (`sync.store.SyncedStore`
    is the one the package builds): the record's engine, the search index, how long a run waits
    for a catalog's lock, and the collection a model's vectors live in."""

    engine: Engine
    index: VectorIndex
    lock_timeout_s: float

    def collection_for(self, embedder: Embedder) -> str: ...
