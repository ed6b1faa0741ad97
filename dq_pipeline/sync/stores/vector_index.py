"""The search index's interface, and an in-memory implementation of it.

The write protocol, the guard, reconcile and search ask the index for exactly what is listed in
`VectorIndex`, nothing of a client behind it. `qdrant_index.QdrantIndex` implements it over a Qdrant
server, qdrant-client's local mode and Qdrant Edge; `InMemoryIndex` implements it in this process
(nothing persists), for fast tests of the layers above and for trying the protocol out. Both pass
the same contract test (dq_pipeline_tests/test_vector_index.py).

Semantics every implementation keeps:
* a collection has one vector size, fixed when it is created; points are (id, vector, payload);
* `upsert` acknowledges each batch before the next is sent (`on_batch(n)` is called before batch n);
* `unguarded_delete(ids, written_by)` deletes only points whose payload's `written_by` is that
  writer (None: points with no writer; ANY_WRITER: all of them), decided when the delete is
  applied — the guard relies on it (guard.py);
* reads of a collection that does not exist are empty, never an error.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from ...errors import ConfigurationError
from .qdrant_index import ANY_WRITER, Point

Page = list[tuple[str, dict[str, Any]]]


class VectorIndex(Protocol):
    prefix: str

    def ensure_collection(self, name: str, dimension: int) -> None: ...
    def has_collection(self, name: str) -> bool: ...
    def collections(self) -> list[str]: ...
    def upsert(self, name: str, points: Iterable[Point], on_batch: Any = None) -> None: ...
    def unguarded_delete(self, name: str, ids: Iterable[str], written_by: Any = ANY_WRITER) -> None: ...
    def unguarded_drop(self, name: str) -> None: ...
    def retrieve(self, name: str, ids: Sequence[str], with_vectors: bool = False) -> dict[str, tuple[dict[str, Any], np.ndarray | None]]: ...
    def points_of_catalog(self, name: str, catalog_id: str) -> dict[str, dict[str, Any]]: ...
    def pages_of_catalog(self, name: str, catalog_id: str, page: int = 1000) -> Iterator[Page]: ...
    def pages_of_collection(self, name: str, page: int = 1000) -> Iterator[Page]: ...
    def catalog_ids_in(self, name: str) -> set[str]: ...
    def nearest(self, name: str, vector: Sequence[float], *, catalog_id: str | None = None, limit: int = 10) -> list[tuple[str, float]]: ...
    def alias_target(self, alias: str) -> str | None: ...
    def point_alias(self, alias: str, collection: str) -> bool: ...
    def close(self) -> None: ...


class _Collection:
    def __init__(self, dimension: int):
        self.dimension = dimension
        self.points: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}


class InMemoryIndex:
    """A `VectorIndex` in this process's memory: exact cosine search, writer-conditional deletes."""

    def __init__(self, prefix: str = "dq", batch_size: int = 256):
        self.prefix, self.batch_size = prefix, batch_size
        self._collections: dict[str, _Collection] = {}
        self._aliases: dict[str, str] = {}
        self._lock = threading.Lock()  # steps of one process may share it from several threads

    def ensure_collection(self, name: str, dimension: int) -> None:
        with self._lock:
            existing = self._collections.get(name)
            if existing is None:
                self._collections[name] = _Collection(dimension)
            elif existing.dimension != dimension:
                raise ConfigurationError(f"collection {name} holds {existing.dimension}-d vectors, not {dimension}-d")

    def has_collection(self, name: str) -> bool:
        return name in self._collections

    def collections(self) -> list[str]:
        return sorted(n for n in self._collections if n.startswith(f"{self.prefix}_"))

    def upsert(self, name: str, points: Iterable[Point], on_batch: Any = None) -> None:
        batch: list[Point] = []
        number = 0
        for point in points:
            batch.append(point)
            if len(batch) == self.batch_size:
                self._write(name, number, batch, on_batch)
                number, batch = number + 1, []
        if batch:
            self._write(name, number, batch, on_batch)

    def _write(self, name: str, number: int, batch: list[Point], on_batch: Any) -> None:
        if on_batch is not None:
            on_batch(number)
        with self._lock:
            collection = self._collections.get(name)
            if collection is None:
                raise ConfigurationError(f"collection {name} does not exist")
            for p in batch:
                vector = np.asarray(p.vector, dtype=np.float32)
                if vector.shape != (collection.dimension,):
                    raise ConfigurationError(f"a {vector.shape[0]}-d vector for {collection.dimension}-d collection {name}")
                collection.points[str(p.id)] = (vector.copy(), dict(p.payload))

    def unguarded_delete(self, name: str, ids: Iterable[str], written_by: Any = ANY_WRITER) -> None:
        with self._lock:
            collection = self._collections.get(name)
            if collection is None:
                return
            for pid in ids:
                found = collection.points.get(pid)
                if found is not None and (written_by is ANY_WRITER or found[1].get("written_by") == written_by):
                    del collection.points[pid]

    def unguarded_drop(self, name: str) -> None:
        with self._lock:
            self._collections.pop(name, None)
            self._aliases = {a: c for a, c in self._aliases.items() if c != name}

    def retrieve(self, name: str, ids: Sequence[str], with_vectors: bool = False) -> dict[str, tuple[dict[str, Any], np.ndarray | None]]:
        collection = self._collections.get(name)
        if collection is None:
            return {}
        return {
            pid: (dict(payload), vector.copy() if with_vectors else None)
            for pid in ids
            if (found := collection.points.get(pid)) is not None
            for vector, payload in [found]
        }

    def points_of_catalog(self, name: str, catalog_id: str) -> dict[str, dict[str, Any]]:
        return {pid: payload for page in self.pages_of_catalog(name, catalog_id) for pid, payload in page}

    def pages_of_catalog(self, name: str, catalog_id: str, page: int = 1000) -> Iterator[Page]:
        yield from self._pages(name, page, lambda payload: payload.get("catalog_id") == catalog_id)

    def pages_of_collection(self, name: str, page: int = 1000) -> Iterator[Page]:
        yield from self._pages(name, page, lambda payload: True)

    def _pages(self, name: str, size: int, keep: Any) -> Iterator[Page]:
        collection = self._collections.get(name)
        if collection is None:
            return
        with self._lock:
            chosen = [(pid, dict(payload)) for pid, (_, payload) in sorted(collection.points.items()) if keep(payload)]
        for start in range(0, len(chosen), size):
            yield chosen[start : start + size]

    def catalog_ids_in(self, name: str) -> set[str]:
        collection = self._collections.get(name)
        if collection is None:
            return set()
        with self._lock:
            values = [payload.get("catalog_id") for _, payload in collection.points.values()]
        return {v for v in values if isinstance(v, str) and v}

    def nearest(self, name: str, vector: Sequence[float], *, catalog_id: str | None = None, limit: int = 10) -> list[tuple[str, float]]:
        collection = self._collections.get(name)
        if collection is None or limit <= 0:
            return []
        with self._lock:
            chosen = [(pid, v) for pid, (v, payload) in collection.points.items() if catalog_id is None or payload.get("catalog_id") == catalog_id]
        if not chosen:
            return []
        query = np.asarray(vector, dtype=np.float64)
        matrix = np.stack([v for _, v in chosen]).astype(np.float64)
        norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(query) or 1.0)
        scores = matrix @ query / np.where(norms == 0, 1.0, norms)
        order = np.argsort(-scores, kind="stable")[:limit]
        return [(chosen[i][0], float(scores[i])) for i in order]

    def alias_target(self, alias: str) -> str | None:
        return self._aliases.get(alias)

    def point_alias(self, alias: str, collection: str) -> bool:
        with self._lock:
            self._aliases[alias] = collection
        return True

    def close(self) -> None:
        pass
