"""The embedded Qdrant store on Qdrant Edge (the Qdrant engine in-process), behind qdrant-client's API.

qdrant-client's local mode is pure Python: it upserts ~1,000 points/s, keeps every point of
every collection in memory and warns past 20k points. Qdrant Edge (`qdrant-edge-py`) runs the real
engine in-process: ~35,000 points/s here, vectors and payloads on disk, every update written to
its write-ahead log before it returns (a point acknowledged survives a kill -9). See
benchmarks/RESULTS.md for the numbers.

`EdgeClient` implements the part of `QdrantClient` this project uses (the same call signatures,
returning qdrant-client's models), so `QdrantIndex`, search, reconcile and the tests need no
second code path. One Edge shard per collection, in `<path>/edge/<collection>/`. The whole folder
is locked by the opening process (a file lock the OS releases if the process dies), like local
mode: a second process gets `EmbeddedQdrantBusy`.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from filelock import FileLock, Timeout
from qdrant_client import models
from qdrant_client.http import models as rest

try:  # an optional dependency: without it the embedded store is qdrant-client's local mode
    import qdrant_edge as edge
except ImportError:  # pragma: no cover - exercised only where qdrant-edge-py is not installed
    edge = None

EDGE_FOLDER = "edge"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
_COMPLETED = rest.UpdateResult.model_construct(operation_id=0, status=rest.UpdateStatus.COMPLETED)


def available() -> bool:
    return edge is not None


def is_local_mode_folder(path: str | Path) -> bool:
    """A folder that qdrant-client's local mode already wrote (its data stays readable there)."""
    return (Path(path) / "meta.json").exists()


def is_edge_folder(path: str | Path) -> bool:
    """A folder that this module already wrote (it must not be reopened in local mode)."""
    return (Path(path) / EDGE_FOLDER).is_dir()


class EdgeBusy(RuntimeError):
    pass


class EdgeClient:
    """A `QdrantClient`-compatible facade over one Qdrant Edge shard per collection."""

    def __init__(self, path: str | Path):
        if edge is None:
            raise RuntimeError("qdrant-edge-py is not installed")
        self.path = Path(path)
        self.init_options = {"path": str(self.path), "engine": "edge"}
        (self.path / EDGE_FOLDER).mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path / ".lock"), timeout=0, thread_local=False, is_singleton=False)
        try:
            self._lock.acquire()
        except Timeout:
            raise EdgeBusy(f"Storage folder {self.path} is already accessed by another instance of Qdrant client") from None
        self._shards: dict[str, Any] = {}
        self._closed = False

    # --- collections ----------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        if not _NAME.match(name):
            raise ValueError(f"invalid collection name {name!r}")
        return self.path / EDGE_FOLDER / name

    def _meta(self, name: str) -> dict[str, Any]:
        return json.loads((self._dir(name) / "dq_collection.json").read_text())

    def collection_exists(self, collection_name: str) -> bool:
        return (self._dir(collection_name) / "dq_collection.json").exists()

    def _shard(self, name: str) -> Any:
        self._check_open()
        shard = self._shards.get(name)
        if shard is None:
            if not self.collection_exists(name):
                raise ValueError(f"Collection {name} not found")
            shard = self._shards[name] = edge.EdgeShard.load(str(self._dir(name) / "shard"))
        return shard

    def get_collection(self, collection_name: str) -> Any:
        meta = self._meta(collection_name)
        params = SimpleNamespace(vectors=SimpleNamespace(size=meta["size"], distance=meta["distance"]))
        return SimpleNamespace(config=SimpleNamespace(params=params), points_count=self.count(collection_name).count)

    def get_collections(self) -> Any:
        folder = self.path / EDGE_FOLDER
        names = sorted(p.name for p in folder.iterdir() if (p / "dq_collection.json").exists())
        return SimpleNamespace(collections=[SimpleNamespace(name=n) for n in names])

    def create_collection(self, collection_name: str, vectors_config: models.VectorParams, **_: Any) -> bool:
        if self.collection_exists(collection_name):
            raise ValueError(f"Collection {collection_name} already exists")
        if vectors_config.distance != models.Distance.COSINE:
            raise ValueError("only cosine collections are supported by the embedded Edge store")
        folder = self._dir(collection_name)
        shutil.rmtree(folder, ignore_errors=True)  # a creation interrupted before its marker was written
        config = edge.EdgeConfig(vectors=edge.EdgeVectorParams(size=vectors_config.size, distance=edge.Distance.Cosine))
        shard = edge.EdgeShard.create(str(folder / "shard"), config)
        # Scrolls filter on catalog_id; nothing filters on entry_key, whose index would cost ~0.5 KB a point.
        shard.update(edge.UpdateOperation.create_field_index("catalog_id", edge.PayloadSchemaType.Keyword))
        shard.flush()
        self._shards[collection_name] = shard
        marker = {"size": vectors_config.size, "distance": "Cosine"}
        (folder / "dq_collection.json.tmp").write_text(json.dumps(marker))
        (folder / "dq_collection.json.tmp").replace(folder / "dq_collection.json")  # the collection exists from here
        return True

    def delete_collection(self, collection_name: str, **_: Any) -> bool:
        shard = self._shards.pop(collection_name, None)
        if shard is not None:
            shard.close()
        if not self.collection_exists(collection_name):
            return False
        (self._dir(collection_name) / "dq_collection.json").unlink()
        shutil.rmtree(self._dir(collection_name), ignore_errors=True)
        return True

    def create_payload_index(self, collection_name: str, field_name: str, field_schema: Any = None, **_: Any) -> Any:
        return _COMPLETED  # the catalog_id index is created with the collection

    # --- points ---------------------------------------------------------------------------------

    def upsert(self, collection_name: str, points: Any, wait: bool = True, **_: Any) -> rest.UpdateResult:
        """Returns once the batch is in the shard's write-ahead log (so `wait` is always honoured)."""
        if isinstance(points, models.Batch):
            payloads = points.payloads or [None] * len(points.ids)
            items = [edge.Point(_edge_id(i), _vector(v), p) for i, v, p in zip(points.ids, points.vectors, payloads, strict=True)]  # type: ignore[arg-type]
        else:
            items = [edge.Point(_edge_id(p.id), _vector(p.vector), p.payload) for p in points]
        self._shard(collection_name).update(edge.UpdateOperation.upsert_points(items))
        return _COMPLETED

    def delete(self, collection_name: str, points_selector: Any, wait: bool = True, **_: Any) -> rest.UpdateResult:
        if isinstance(points_selector, models.FilterSelector):  # conditional deletes (guard.py)
            self._shard(collection_name).update(edge.UpdateOperation.delete_points_by_filter(_edge_filter(points_selector.filter)))
            return _COMPLETED
        ids = points_selector.points if isinstance(points_selector, models.PointIdsList) else points_selector
        if not isinstance(ids, list | tuple):
            raise NotImplementedError("the embedded Edge store deletes by point ids only")
        self._shard(collection_name).update(edge.UpdateOperation.delete_points([_edge_id(i) for i in ids]))
        return _COMPLETED

    def set_payload(self, collection_name: str, payload: dict[str, Any], points: Sequence[Any], wait: bool = True, **_: Any) -> rest.UpdateResult:
        self._shard(collection_name).update(edge.UpdateOperation.set_payload([_edge_id(i) for i in points], payload))
        return _COMPLETED

    def retrieve(
        self, collection_name: str, ids: Sequence[Any], with_payload: Any = True, with_vectors: Any = False, **_: Any
    ) -> list[rest.Record]:
        found = self._shard(collection_name).retrieve([_edge_id(i) for i in ids], with_payload=with_payload, with_vector=with_vectors)
        return [_record(r, with_vectors) for r in found]

    def scroll(
        self,
        collection_name: str,
        scroll_filter: models.Filter | None = None,
        limit: int = 10,
        offset: Any = None,
        with_payload: Any = True,
        with_vectors: Any = False,
        **_: Any,
    ) -> tuple[list[rest.Record], Any]:
        request = edge.ScrollRequest(
            offset=None if offset is None else _edge_id(offset),
            limit=limit,
            filter=_edge_filter(scroll_filter),
            with_payload=with_payload,
            with_vector=with_vectors,
        )
        records, next_offset = self._shard(collection_name).scroll(request)
        return [_record(r, with_vectors) for r in records], None if next_offset is None else str(next_offset)

    def count(self, collection_name: str, count_filter: models.Filter | None = None, exact: bool = True, **_: Any) -> rest.CountResult:
        number = self._shard(collection_name).count(edge.CountRequest(exact=True, filter=_edge_filter(count_filter)))
        return rest.CountResult(count=number)

    def query_points(
        self,
        collection_name: str,
        query: Sequence[float] | None = None,
        query_filter: models.Filter | None = None,
        limit: int = 10,
        with_payload: Any = True,
        with_vectors: Any = False,
        **_: Any,
    ) -> rest.QueryResponse:
        if query is None:
            raise NotImplementedError("the embedded Edge store answers nearest-vector queries only")
        request = edge.QueryRequest(
            limit=limit,
            query=edge.Query.Nearest([float(x) for x in query]),
            filter=_edge_filter(query_filter),
            with_payload=with_payload,
            with_vector=with_vectors,
        )
        points = [
            rest.ScoredPoint.model_construct(
                id=str(p.id), version=p.version, score=p.score, payload=p.payload if with_payload else None,
                vector=p.vector if with_vectors else None,
            )
            for p in self._shard(collection_name).query(request)
        ]
        return rest.QueryResponse.model_construct(points=points)

    # --- lifecycle ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the embedded Qdrant store is closed")

    def close(self, **_: Any) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for shard in self._shards.values():
                shard.close()
            self._shards.clear()
        finally:
            self._lock.release()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: S110 - interpreter shutdown: nothing left to report to
            pass


def _edge_id(point_id: Any) -> Any:
    return point_id if isinstance(point_id, int) else uuid.UUID(str(point_id))


def _vector(vector: Any) -> list[float]:
    if isinstance(vector, dict):  # the default (unnamed) vector given by name, as LangChain does
        if set(vector) != {""}:
            raise NotImplementedError("named vectors are not supported by the embedded Edge store")
        vector = vector[""]
    return vector if isinstance(vector, list) else list(vector)


def _record(r: Any, with_vectors: Any) -> rest.Record:
    vector = r.vector if with_vectors else None
    return rest.Record.model_construct(id=str(r.id), payload=r.payload, vector=vector, shard_key=None, order_value=None)


def _edge_filter(flt: models.Filter | None) -> Any:
    """qdrant-client's Filter -> Edge's, for the conditions this project uses (match on a keyword)."""
    if flt is None:
        return None

    def conditions(items: Iterable[Any] | Any | None) -> list[Any] | None:
        if items is None:
            return None
        items = items if isinstance(items, list | tuple) else [items]
        out = []
        for c in items:
            if isinstance(c, models.Filter):
                out.append(_edge_filter(c))
            elif isinstance(c, models.FieldCondition) and isinstance(c.match, models.MatchValue):
                out.append(edge.FieldCondition(key=c.key, match=edge.MatchValue(c.match.value)))
            elif isinstance(c, models.FieldCondition) and isinstance(c.match, models.MatchAny):
                out.append(edge.FieldCondition(key=c.key, match=edge.MatchAny(list(c.match.any))))
            elif isinstance(c, models.IsEmptyCondition):
                out.append(edge.IsEmptyCondition(key=c.is_empty.key))
            elif isinstance(c, models.HasIdCondition):
                out.append(edge.HasIdCondition({_edge_id(i) for i in c.has_id}))
            else:
                raise NotImplementedError(f"filter condition {type(c).__name__} is not supported by the embedded Edge store")
        return out

    return edge.Filter(must=conditions(flt.must), should=conditions(flt.should), must_not=conditions(flt.must_not))
