"""The search index as Qdrant holds it: one collection per model, points keyed by content-addressed
ids. `QdrantIndex` implements `vector_index.VectorIndex` over qdrant-client (a server, or local
mode) and over Qdrant Edge (`edge_client`, which speaks the client's interface)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import wraps
from itertools import islice
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from ...errors import ConfigurationError, DqError, EmbeddedQdrantBusy, StoreUnavailable, translate
from . import edge_client

# What a point's payload must match in its row; `vector_digest` makes a point's vector checkable
# against the record without reading either vector (see point_ids.vector_digest).
PAYLOAD_FIELDS = ("catalog_id", "entry_key", "content_hash", "model", "vector_digest", "written_by")
LOCAL_MODE_PAGE = 20_000  # points per scroll call of qdrant-client's local mode (see QdrantIndex._pages)
ANY_WRITER = object()  # an unconditional delete (journal rows written before writers were recorded)

__all__ = ["EmbeddedQdrantBusy", "IndexWriteError", "PAYLOAD_FIELDS", "Point", "QdrantIndex", "chunks", "open_qdrant"]


class IndexWriteError(StoreUnavailable):
    """Qdrant did not acknowledge a write."""


def _qdrant_call(where: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    """One Qdrant call, its foreign errors translated (unreachable, timed out -> transient)."""
    try:
        return call(*args, **kwargs)
    except DqError:
        raise
    except Exception as exc:
        raise translate(exc, f"Qdrant {where}") from exc


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
        raise ConfigurationError("set DQ_QDRANT_URL for a Qdrant server or DQ_QDRANT_PATH for the embedded store")
    if embedded_engine not in ("auto", "edge", "local"):
        raise ConfigurationError(f"embedded_engine must be auto, edge or local, not {embedded_engine!r}")
    local_folder, edge_folder = edge_client.is_local_mode_folder(path), edge_client.is_edge_folder(path)
    use_edge = edge_folder or (embedded_engine != "local" and edge_client.available() and not local_folder)
    if (use_edge and (local_folder or embedded_engine == "local" or not edge_client.available())) or (
        not use_edge and embedded_engine == "edge"
    ):
        raise ConfigurationError(
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


def _selector(ids: list[str], written_by: Any) -> Any:
    if written_by is ANY_WRITER:
        return models.PointIdsList(points=ids)
    writer = (
        models.IsEmptyCondition(is_empty=models.PayloadField(key="written_by"))
        if written_by is None
        else models.FieldCondition(key="written_by", match=models.MatchValue(value=written_by))
    )
    return models.FilterSelector(filter=models.Filter(must=[models.HasIdCondition(has_id=ids), writer]))


@dataclass(frozen=True)
class Point:
    id: str
    vector: np.ndarray
    payload: Mapping[str, Any]


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Serialized:
    """An embedded client whose calls are taken one at a time. qdrant-client's local mode keeps one
    SQLite connection per collection and no lock: two threads of one process writing through it
    (two stores sharing an index, a writer thread beside the planner) fail with SQLite's "cannot
    start a transaction within a transaction" or interleave its in-memory state. A server client is
    safe across threads and is not wrapped."""

    def __init__(self, client: Any):
        self._client = client
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._client, name)
        if not callable(value):
            return value

        @wraps(value)
        def serialized(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return value(*args, **kwargs)

        return serialized


def _is_embedded(client: Any) -> bool:
    options = getattr(client, "init_options", None) or {}
    return bool(options.get("path") or options.get("location") == ":memory:")


class QdrantIndex:
    def __init__(self, client: Any, prefix: str = "dq", batch_size: int = 256):
        self.client = _Serialized(client) if _is_embedded(client) and not isinstance(client, _Serialized) else client
        self.prefix = prefix
        self.batch_size = batch_size

    @property
    def is_server(self) -> bool:
        return not _is_embedded(self.client)

    def ensure_collection(self, name: str, dimension: int) -> None:
        _qdrant_call(f"collection {name}", self._ensure_collection, name, dimension)

    def _ensure_collection(self, name: str, dimension: int) -> None:
        if self.client.collection_exists(name):
            size = self.client.get_collection(name).config.params.vectors.size  # type: ignore[union-attr]
            if size != dimension:
                raise ConfigurationError(f"Qdrant collection {name} holds {size}-d vectors, not {dimension}-d")
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

    def has_collection(self, name: str) -> bool:
        return bool(_qdrant_call(f"collection {name}", self.client.collection_exists, name))

    def nearest(self, name: str, vector: Sequence[float], *, catalog_id: str | None = None, limit: int = 10) -> list[tuple[str, float]]:
        """The `limit` points closest to `vector` (cosine), best first, optionally of one catalog."""
        if limit <= 0 or not self.has_collection(name):
            return []
        flt = None
        if catalog_id is not None:
            flt = models.Filter(must=[models.FieldCondition(key="catalog_id", match=models.MatchValue(value=catalog_id))])
        found = _qdrant_call(
            f"query of {name}", self.client.query_points, name, query=list(vector), query_filter=flt, limit=limit, with_payload=False
        ).points
        return [(str(p.id), float(p.score)) for p in found]

    def unguarded_drop(self, name: str) -> None:
        """Delete a whole collection. Only `guard.drop_collection` may call this (it checks that no
        row uses the collection and no pending journal row names a point in it)."""
        _qdrant_call(f"deletion of collection {name}", self.client.delete_collection, name)

    def close(self) -> None:
        self.client.close()

    def alias_target(self, alias: str) -> str | None:
        """The collection an alias points at (None: no such alias, or no aliases in this engine)."""
        if not hasattr(self.client, "get_aliases"):
            return None
        try:
            listed = self.client.get_aliases().aliases
        except Exception:
            return None  # an engine or server without the aliases API
        return next((a.collection_name for a in listed if a.alias_name == alias), None)

    def point_alias(self, alias: str, collection: str) -> bool:
        """Point `alias` at `collection` in one atomic aliases update (Qdrant applies the delete and
        the create together); False where this engine has no aliases."""
        if not hasattr(self.client, "update_collection_aliases"):
            return False
        current = self.alias_target(alias)
        if current == collection:
            return True
        operations: list[Any] = [models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias))]
        if current is not None:
            operations.insert(0, models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        _qdrant_call(f"alias {alias}", self.client.update_collection_aliases, change_aliases_operations=operations)
        return True

    def collections(self) -> list[str]:
        listed = _qdrant_call("collection list", self.client.get_collections).collections
        return sorted(c.name for c in listed if c.name.startswith(f"{self.prefix}_"))

    def upsert(self, name: str, points: Iterable[Point], on_batch: Any = None) -> None:
        """Write points in batches, each acknowledged (`wait=True`) before the next is sent.

        `points` may be a generator: only one batch of them is held at a time.
        """
        iterator = iter(points)
        for number, batch in enumerate(iter(lambda: list(islice(iterator, self.batch_size)), [])):
            if on_batch is not None:
                on_batch(number)
            result = _qdrant_call(
                f"upsert into {name}",
                self.client.upsert,
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

    def unguarded_delete(self, name: str, ids: Iterable[str], written_by: Any = ANY_WRITER) -> None:
        """Delete points, only those whose payload says `written_by` wrote them (None: no writer
        recorded), decided by Qdrant when it applies the delete. Only `guard.delete_points` may call
        this: it first drops every id that a committed row or a pending journal row references (I1)."""
        ids = list(ids)
        if not ids or not self.client.collection_exists(name):
            return
        for batch in chunks(ids, 1000):
            result = _qdrant_call(f"point deletion in {name}", self.client.delete, name, points_selector=_selector(list(batch), written_by), wait=True)
            if result.status != models.UpdateStatus.COMPLETED:
                raise IndexWriteError(f"Qdrant did not acknowledge a delete in {name}: {result.status}")

    def points_of_catalog(self, name: str, catalog_id: str) -> dict[str, dict[str, Any]]:
        """Every point id of one catalog in a collection, with its payload (no vectors). For tests
        and small catalogs: verify and repair page through `pages_of_catalog` instead."""
        return {pid: payload for page in self.pages_of_catalog(name, catalog_id) for pid, payload in page}

    def pages_of_catalog(self, name: str, catalog_id: str, page: int = 1000) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        """The points whose payload names this catalog, a page at a time."""
        flt = models.Filter(must=[models.FieldCondition(key="catalog_id", match=models.MatchValue(value=catalog_id))])
        yield from self._pages(name, flt, page)

    def pages_of_collection(self, name: str, page: int = 1000) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        """Every point of a collection, a page at a time (payloads, no vectors)."""
        yield from self._pages(name, None, page)

    @property
    def is_local_mode(self) -> bool:
        return not self.is_server and self.client.init_options.get("engine") != "edge"

    def _pages(self, name: str, flt: models.Filter | None, page: int) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        if not self.client.collection_exists(name):
            return
        # qdrant-client's local mode filters and sorts every point of the collection on each scroll
        # call, so pages of `page` cost points x pages (most of a no-op sync's verify at 5,000
        # entries). It holds the collection in memory anyway: one call fetches many pages.
        fetch = max(page, LOCAL_MODE_PAGE) if self.is_local_mode else page
        offset = None
        while True:
            records, offset = _qdrant_call(
                f"scroll of {name}", self.client.scroll, name, scroll_filter=flt, limit=fetch, offset=offset, with_payload=True, with_vectors=False
            )
            found = [(str(record.id), dict(record.payload or {})) for record in records]
            for start in range(0, max(len(found), 1), page):
                yield found[start : start + page]
            if offset is None:
                return

    def retrieve(self, name: str, ids: Sequence[str], with_vectors: bool = False) -> dict[str, tuple[dict[str, Any], np.ndarray | None]]:
        """Payload (and vector) of these point ids; absent ids are missing from the result."""
        if not ids or not self.client.collection_exists(name):
            return {}
        records = _qdrant_call(f"retrieve from {name}", self.client.retrieve, name, list(ids), with_payload=True, with_vectors=with_vectors)
        return {
            str(r.id): (dict(r.payload or {}), np.asarray(r.vector, dtype=np.float32) if with_vectors and r.vector is not None else None)
            for r in records
        }

    def catalog_ids_in(self, name: str) -> set[str]:
        """Every catalog id that has points in a collection (finds orphans of forgotten catalogs)."""
        seen: set[str] = set()
        offset = None
        while True:
            records, offset = _qdrant_call(
                f"scroll of {name}", self.client.scroll, name, limit=1000, offset=offset, with_payload=["catalog_id"], with_vectors=False
            )
            # Only string ids name a catalog; other values are reported as unattributed (reconcile).
            seen.update(r.payload["catalog_id"] for r in records if isinstance((r.payload or {}).get("catalog_id"), str) and r.payload["catalog_id"])
            if offset is None:
                return seen
