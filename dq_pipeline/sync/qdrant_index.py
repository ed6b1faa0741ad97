"""The search index side: one Qdrant collection per model, points keyed by content-addressed ids."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from . import edge_client

PAYLOAD_FIELDS = ("catalog_id", "entry_key", "content_hash", "model")


class IndexWriteError(RuntimeError):
    """Qdrant did not acknowledge a write."""


class EmbeddedQdrantBusy(RuntimeError):
    """Another process holds the embedded Qdrant folder."""


def open_qdrant(url: str | None, api_key: str | None, path: str | None, timeout: int = 60, embedded_engine: str = "local") -> Any:
    """A Qdrant server when a URL is given, else the embedded store at `path`.

    `embedded_engine`: "local" (the default: qdrant-client's local mode), "edge" (Qdrant Edge, the
    engine in-process, ~35x faster writes, needs `qdrant-edge-py`; see `edge_client`), or "auto"
    (Edge when installed, except for a folder local mode wrote). A folder written by one engine is
    refused by the other with a clear error, never opened silently empty.
    """
    if url:
        return QdrantClient(url=url, api_key=api_key or None, timeout=timeout)
    if not path:
        raise ValueError("set DQ_QDRANT_URL for a Qdrant server or DQ_QDRANT_PATH for the embedded store")
    if embedded_engine not in ("auto", "edge", "local"):
        raise ValueError(f"embedded_engine must be auto, edge or local, not {embedded_engine!r}")
    local_folder, edge_folder = edge_client.is_local_mode_folder(path), edge_client.is_edge_folder(path)
    use_edge = edge_folder or (embedded_engine != "local" and edge_client.available() and not local_folder)
    if (use_edge and (local_folder or embedded_engine == "local" or not edge_client.available())) or (
        not use_edge and embedded_engine == "edge"
    ):
        raise ValueError(
            f"the embedded Qdrant store at {path} was written by "
            f"{'Qdrant Edge (qdrant-edge-py)' if edge_folder else 'qdrant-client local mode' if local_folder else 'neither engine'}"
            f" and cannot be opened with embedded_engine={embedded_engine!r}"
            f"{'' if edge_client.available() else ' (qdrant-edge-py is not installed)'}; rebuild it with `dq-pipeline repair`"
            " into a new DQ_QDRANT_PATH, or install the engine that wrote it"
        )
    try:
        return edge_client.EdgeClient(path) if use_edge else QdrantClient(path=path)
    except (RuntimeError, edge_client.EdgeBusy) as exc:
        if "already accessed" in str(exc):
            raise EmbeddedQdrantBusy(
                f"the embedded Qdrant store at {path} is open in another process (embedded Qdrant is "
                "single-process: wait for it to finish, or use a Qdrant server via DQ_QDRANT_URL)"
            ) from None
        raise


@dataclass(frozen=True)
class Point:
    id: str
    vector: np.ndarray
    payload: Mapping[str, Any]


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class QdrantIndex:
    def __init__(self, client: Any, prefix: str = "dq", batch_size: int = 256):
        self.client = client
        self.prefix = prefix
        self.batch_size = batch_size

    @property
    def is_server(self) -> bool:
        return not (self.client.init_options.get("path") or self.client.init_options.get("location") == ":memory:")

    def ensure_collection(self, name: str, dimension: int) -> None:
        if self.client.collection_exists(name):
            size = self.client.get_collection(name).config.params.vectors.size  # type: ignore[union-attr]
            if size != dimension:
                raise ValueError(f"Qdrant collection {name} holds {size}-d vectors, not {dimension}-d")
            return
        try:
            self.client.create_collection(
                name, vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE)
            )
        except Exception:
            if not self.client.collection_exists(name):  # another process may have created it first
                raise
        if self.is_server:  # local mode has no payload indexes
            for field in ("catalog_id", "entry_key"):
                self.client.create_payload_index(name, field, models.PayloadSchemaType.KEYWORD)

    def collections(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections if c.name.startswith(f"{self.prefix}_"))

    def upsert(self, name: str, points: Iterable[Point], on_batch: Any = None) -> None:
        """Write points in batches, each acknowledged (`wait=True`) before the next is sent.

        `points` may be a generator: only one batch of them is held at a time.
        """
        iterator = iter(points)
        for number, batch in enumerate(iter(lambda: list(islice(iterator, self.batch_size)), [])):
            if on_batch is not None:
                on_batch(number)
            result = self.client.upsert(
                name,
                points=models.Batch(
                    ids=[p.id for p in batch],
                    vectors=np.stack([p.vector for p in batch]).tolist(),
                    payloads=[dict(p.payload) for p in batch],
                ),
                wait=True,
            )
            if result.status != models.UpdateStatus.COMPLETED:
                raise IndexWriteError(f"Qdrant did not acknowledge batch {number} of {name}: {result.status}")

    def delete(self, name: str, ids: Iterable[str]) -> None:
        ids = list(ids)
        if not ids or not self.client.collection_exists(name):
            return
        for batch in chunks(ids, 1000):
            result = self.client.delete(name, points_selector=models.PointIdsList(points=list(batch)), wait=True)
            if result.status != models.UpdateStatus.COMPLETED:
                raise IndexWriteError(f"Qdrant did not acknowledge a delete in {name}: {result.status}")

    def points_of_catalog(self, name: str, catalog_id: str) -> dict[str, dict[str, Any]]:
        """Every point id of one catalog in a collection, with its payload (no vectors)."""
        if not self.client.collection_exists(name):
            return {}
        found: dict[str, dict[str, Any]] = {}
        flt = models.Filter(must=[models.FieldCondition(key="catalog_id", match=models.MatchValue(value=catalog_id))])
        offset = None
        while True:
            records, offset = self.client.scroll(
                name, scroll_filter=flt, limit=1000, offset=offset, with_payload=True, with_vectors=False
            )
            for record in records:
                found[str(record.id)] = dict(record.payload or {})
            if offset is None:
                return found

    def catalog_ids_in(self, name: str) -> set[str]:
        """Every catalog id that has points in a collection (finds orphans of forgotten catalogs)."""
        seen: set[str] = set()
        offset = None
        while True:
            records, offset = self.client.scroll(
                name, limit=1000, offset=offset, with_payload=["catalog_id"], with_vectors=False
            )
            seen.update(str((r.payload or {}).get("catalog_id")) for r in records)
            if offset is None:
                return seen
