"""Vectors computed by the embedding step, waiting in the record for the write step.

Dagster runs the two steps in separate processes (or machines): handing a million vectors over as
one pickled step output would hold them all in memory twice. Here they go to `dq_vector_cache`
a chunk at a time and come back a chunk at a time; a retried write step finds them again instead
of re-embedding. Rows are keyed by (model, content hash), so equal content shares one vector, and
are evicted once the write that used them committed (the committed row keeps the vector).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Engine, delete, insert, select

from .database import WRITE
from .qdrant_index import chunks
from .schema import vector_cache

_CHUNK = 1000


def put(engine: Engine, model_id: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
    """Store vectors (one row per hash); a hash already cached keeps its vector (same model, same content)."""
    block = np.ascontiguousarray(vectors, dtype="<f4")
    now = datetime.now(UTC)
    for start in range(0, len(hashes), _CHUNK):
        part = list(hashes[start : start + _CHUNK])
        with engine.execution_options(**WRITE).begin() as conn:
            known = set(conn.scalars(select(vector_cache.c.content_hash).where(vector_cache.c.model == model_id, vector_cache.c.content_hash.in_(part))))
            rows = [
                {"model": model_id, "content_hash": h, "vector": block[start + i].tobytes(), "created_at": now}
                for i, h in enumerate(part)
                if h not in known
            ]
            if rows:
                conn.execute(insert(vector_cache), rows)


def get(engine: Engine, model_id: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
    """The cached vectors among these hashes (call with a bounded number of hashes)."""
    found: dict[str, np.ndarray] = {}
    with engine.connect() as conn:
        for part in chunks(list(hashes), _CHUNK):
            query = select(vector_cache.c.content_hash, vector_cache.c.vector).where(
                vector_cache.c.model == model_id, vector_cache.c.content_hash.in_(part)
            )
            for content_hash, vector in conn.execute(query):
                found[content_hash] = np.frombuffer(vector, dtype="<f4")
    return found


def cached_hashes(engine: Engine, model_id: str, hashes: Iterable[str]) -> set[str]:
    found: set[str] = set()
    with engine.connect() as conn:
        for part in chunks(list(hashes), _CHUNK):
            query = select(vector_cache.c.content_hash).where(vector_cache.c.model == model_id, vector_cache.c.content_hash.in_(part))
            found.update(conn.scalars(query))
    return found


def evict(engine: Engine, model_id: str, hashes: Iterable[str]) -> None:
    for part in chunks(list(hashes), _CHUNK):
        with engine.execution_options(**WRITE).begin() as conn:
            conn.execute(delete(vector_cache).where(vector_cache.c.model == model_id, vector_cache.c.content_hash.in_(part)))
