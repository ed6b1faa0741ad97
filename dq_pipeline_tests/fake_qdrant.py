"""A small, real HTTP server speaking the part of Qdrant's REST API the sync path uses, with faults.

No Qdrant server binary exists on the test machines, yet the remote path (qdrant-client's HTTP
code, timeouts, refused connections, lost acknowledgements) is what production runs. This server
implements, over an in-memory dict, exactly the calls dq_pipeline makes (response shapes follow
qdrant-client's generated models, `qdrant_client/http/models/models.py`):

    GET  /                                    version (the client's compatibility check)
    GET  /collections                         CollectionsResponse
    GET  /collections/{name}/exists           CollectionExistence
    GET  /collections/{name}                  CollectionInfo (404 when missing)
    PUT  /collections/{name}                  create (409 when it exists)
    PUT  /collections/{name}/index            payload index (accepted, no effect)
    PUT  /collections/{name}/points           upsert: {"batch": {...}} or {"points": [...]}
    POST /collections/{name}/points/delete    delete by {"points": [ids]} or by {"filter": {...}} (has_id, match, is_empty)
    POST /collections/{name}/points/payload   set payload keys of {"points": [ids]}
    POST /collections/{name}/points/scroll    filter (must: match value/any, is_empty), offset, limit, payload/vector selection
    POST /collections/{name}/points           retrieve by ids
    POST /collections/{name}/points/query     nearest by cosine (brute force), with filter

Faults (`FakeQdrant.fail(...)`) apply to the n-th request matching a method and a path pattern:
``status`` (an HTTP error such as 500/503), ``delay`` (sleep, e.g. past the client's timeout),
``cut`` (read the request, then close the socket without answering: a connection lost
mid-batch), each either before or after the request takes effect (``applied=True``: the write
landed but its acknowledgement is lost). Refused connections: ``stop()`` the server (``start()``
brings it back on the same port with the same data). An ``api_key`` makes every request without
the matching ``api-key`` header fail with 403.

    python -m dq_pipeline_tests.fake_qdrant --port 6333     # serve until interrupted
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

VERSION = "1.20.0"  # same major/minor as the installed client: no compatibility warning


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    kind: str  # status | delay | cut
    nth: int = 1  # the first matching request it hits (1-based)
    times: int = 1  # how many matching requests in a row it hits (0 = every one from nth on)
    applied: bool = False  # let the request take effect first (the acknowledgement is what is lost)
    status: int = 500
    seconds: float = 0.0
    seen: int = 0
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if method != self.method or not self.path.search(path):
            return False
        self.seen += 1
        if self.seen < self.nth or (self.times and self.seen >= self.nth + self.times):
            return False
        self.hits += 1
        return True


@dataclass
class Collection:
    size: int
    distance: str
    points: dict[str, tuple[list[float], dict[str, Any]]] = field(default_factory=dict)
    indexes: dict[str, str] = field(default_factory=dict)
    _sorted: list[str] | None = None  # the ids in order, kept until a write: scrolls page in O(page), not O(n log n)

    def sorted_ids(self) -> list[str]:
        # Tests also edit `points` directly (a point deleted behind the pipeline's back): a size that
        # no longer matches means the order is stale too.
        if self._sorted is None or len(self._sorted) != len(self.points):
            self._sorted = sorted(self.points)
        return self._sorted


class _NotFound(Exception):
    pass


class _Conflict(Exception):
    pass


class FakeQdrant:
    """The data outlives stop()/start(), like a server's storage outlives a restart."""

    def __init__(self, api_key: str | None = None):
        self.api_key = api_key
        self.collections: dict[str, Collection] = {}
        self.aliases: dict[str, str] = {}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.operations = 0
        self.lock = threading.RLock()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int | None = None) -> str:
        fake = self

        class Handler(_Handler):
            server_state = fake

        server = ThreadingHTTPServer(("127.0.0.1", port if port is not None else self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Close the listening socket: connections are refused until start() again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeQdrant:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults

    def fail(self, method: str, path: str, kind: str, **options: Any) -> Fault:
        fault = Fault(method, re.compile(path), kind, **options)
        with self.lock:
            self.faults.append(fault)
        return fault

    def heal(self) -> None:
        with self.lock:
            self.faults.clear()

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    return fault
        return None

    # -- inspection

    def point_ids(self, name: str, catalog_id: str | None = None) -> set[str]:
        with self.lock:
            points = self.collections[name].points if name in self.collections else {}
            return {pid for pid, (_, payload) in points.items() if catalog_id is None or payload.get("catalog_id") == catalog_id}

    # -- the API

    def _change_aliases(self, actions: list[dict[str, Any]]) -> bool:
        """All actions or none, as Qdrant applies an aliases update."""
        aliases = dict(self.aliases)
        for action in actions:
            if "delete_alias" in action:
                aliases.pop(action["delete_alias"]["alias_name"], None)
            elif "create_alias" in action:
                target = action["create_alias"]["collection_name"]
                if target not in self.collections:
                    raise _NotFound(f"Not found: Collection `{target}` doesn't exist!")
                aliases[action["create_alias"]["alias_name"]] = target
        self.aliases = aliases
        return True

    def handle(self, method: str, path: str, body: Any) -> Any:
        parts = [p for p in path.split("/") if p]
        with self.lock:
            if method == "GET" and not parts:
                return {"title": "qdrant - vector search engine (dq_pipeline test fake)", "version": VERSION}
            if parts == ["aliases"] and method == "GET":
                return {"aliases": [{"alias_name": a, "collection_name": c} for a, c in sorted(self.aliases.items())]}
            if parts == ["collections", "aliases"] and method == "POST":
                return self._change_aliases(body["actions"])
            if parts[:1] != ["collections"]:
                raise _NotFound(f"Not found: {path}")
            if len(parts) == 1 and method == "GET":
                return {"collections": [{"name": n} for n in sorted(self.collections)]}
            name = parts[1]
            rest = "/".join(parts[2:])
            if rest == "exists" and method == "GET":
                return {"exists": name in self.collections}
            if rest == "" and method == "PUT":
                if name in self.collections:
                    raise _Conflict(f"Wrong input: Collection `{name}` already exists!")
                vectors = body["vectors"]
                self.collections[name] = Collection(int(vectors["size"]), vectors["distance"])
                return True
            if rest == "" and method == "DELETE":
                return self.collections.pop(name, None) is not None
            collection = self.collections.get(name)
            if collection is None:
                raise _NotFound(f"Not found: Collection `{name}` doesn't exist!")
            if rest == "" and method == "GET":
                return self._info(collection)
            if rest == "index" and method == "PUT":
                collection.indexes[body["field_name"]] = str(body.get("field_schema"))
                return self._update()
            if rest == "points" and method == "PUT":
                return self._upsert(collection, body)
            if rest == "points/delete" and method == "POST":
                if "filter" in body:  # a conditional delete: the filter is applied when the delete is
                    doomed = [pid for pid, (_, payload) in collection.points.items() if self._matches(payload, body["filter"], pid)]
                else:
                    doomed = [str(pid) for pid in body.get("points", [])]
                for pid in doomed:
                    collection.points.pop(pid, None)
                collection._sorted = None
                return self._update()
            if rest == "points/payload" and method == "POST":  # set payload keys (tests tamper with points)
                for pid in body.get("points", []):
                    if str(pid) in collection.points:
                        collection.points[str(pid)][1].update(body["payload"])
                return self._update()
            if rest == "points/scroll" and method == "POST":
                return self._scroll(collection, body)
            if rest == "points" and method == "POST":
                return [self._record(pid, collection, body.get("with_payload", True), body.get("with_vector", False)) for pid in body["ids"] if str(pid) in collection.points]
            if rest == "points/query" and method == "POST":
                return self._query(collection, body)
        raise _NotFound(f"Not found: {method} {path}")

    def _update(self) -> dict[str, Any]:
        self.operations += 1
        return {"operation_id": self.operations, "status": "completed"}

    def _upsert(self, collection: Collection, body: dict[str, Any]) -> dict[str, Any]:
        if "batch" in body:
            batch = body["batch"]
            payloads = batch.get("payloads") or [{}] * len(batch["ids"])
            items = list(zip(batch["ids"], batch["vectors"], payloads, strict=True))
        else:
            items = [(p["id"], p["vector"], p.get("payload") or {}) for p in body["points"]]
        for _, vector, _ in items:
            if len(vector) != collection.size:
                raise ValueError(f"Wrong input: Vector dimension error: expected dim: {collection.size}, got {len(vector)}")
        for pid, vector, payload in items:
            if collection.distance == "Cosine":
                norm = math.sqrt(sum(x * x for x in vector)) or 1.0
                vector = [x / norm for x in vector]
            collection.points[str(pid)] = (list(vector), dict(payload))
        collection._sorted = None
        return self._update()

    @staticmethod
    def _matches(payload: dict[str, Any], flt: dict[str, Any] | None, point_id: str | None = None) -> bool:
        if not flt:
            return True

        def condition(c: dict[str, Any]) -> bool:
            if "has_id" in c:
                return point_id in {str(i) for i in c["has_id"]}
            if "is_empty" in c:  # {"is_empty": {"key": k}}: the key is missing, null or []
                return payload.get(c["is_empty"]["key"]) in (None, [])
            match = c.get("match") or {}
            value = payload.get(c["key"])
            if "value" in match:
                return value == match["value"]
            if "any" in match:
                return value in match["any"]
            raise ValueError(f"unsupported condition {c}")

        must = all(condition(c) for c in flt.get("must") or [])
        must_not = not any(condition(c) for c in flt.get("must_not") or [])
        should = not flt.get("should") or any(condition(c) for c in flt["should"])
        return must and must_not and should

    @staticmethod
    def _select(payload: dict[str, Any], with_payload: Any) -> dict[str, Any] | None:
        if with_payload is True:
            return dict(payload)
        if isinstance(with_payload, list):
            return {k: v for k, v in payload.items() if k in with_payload}
        if isinstance(with_payload, dict) and "include" in with_payload:
            return {k: v for k, v in payload.items() if k in with_payload["include"]}
        return None

    def _record(self, pid: str, collection: Collection, with_payload: Any, with_vector: Any) -> dict[str, Any]:
        vector, payload = collection.points[str(pid)]
        return {"id": pid, "payload": self._select(payload, with_payload), "vector": list(vector) if with_vector else None}

    def _scroll(self, collection: Collection, body: dict[str, Any]) -> dict[str, Any]:
        limit = int(body.get("limit") or 10)
        ordered = collection.sorted_ids()
        offset = body.get("offset")
        start = 0 if offset is None else bisect.bisect_left(ordered, str(offset))
        following = (ordered[i] for i in range(start, len(ordered)))  # islice would step over the first `start`
        matching = (pid for pid in following if pid in collection.points and self._matches(collection.points[pid][1], body.get("filter")))
        found = list(itertools.islice(matching, limit + 1))
        page, rest = found[:limit], found[limit:]
        with_payload, with_vector = body.get("with_payload", True), body.get("with_vector", False)
        return {"points": [self._record(p, collection, with_payload, with_vector) for p in page], "next_page_offset": rest[0] if rest else None}

    def _query(self, collection: Collection, body: dict[str, Any]) -> dict[str, Any]:
        query = body.get("query")
        if isinstance(query, dict):
            query = query.get("nearest", query)
        norm = math.sqrt(sum(x * x for x in query)) or 1.0
        scored = []
        for pid, (vector, payload) in collection.points.items():
            if self._matches(payload, body.get("filter")):
                scored.append((sum(a * b for a, b in zip(vector, query, strict=True)) / norm, pid))
        scored.sort(reverse=True)
        limit = int(body.get("limit") or 10)
        with_payload = body.get("with_payload", False)
        points = [
            {"id": pid, "version": 0, "score": score, "payload": self._select(collection.points[pid][1], with_payload)}
            for score, pid in scored[:limit]
        ]
        return {"points": points}

    @staticmethod
    def _info(collection: Collection) -> dict[str, Any]:
        return {
            "status": "green",
            "optimizer_status": "ok",
            "indexed_vectors_count": 0,
            "points_count": len(collection.points),
            "segments_count": 1,
            "config": {
                "params": {
                    "vectors": {"size": collection.size, "distance": collection.distance},
                    "shard_number": 1,
                    "replication_factor": 1,
                    "write_consistency_factor": 1,
                    "on_disk_payload": True,
                },
                "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000, "max_indexing_threads": 0, "on_disk": False},
                "optimizer_config": {
                    "deleted_threshold": 0.2,
                    "vacuum_min_vector_number": 1000,
                    "default_segment_number": 0,
                    "max_segment_size": None,
                    "memmap_threshold": None,
                    "indexing_threshold": 20000,
                    "flush_interval_sec": 5,
                    "max_optimization_threads": None,
                },
                "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
                "quantization_config": None,
            },
            "payload_schema": {name: {"data_type": kind, "points": len(collection.points)} for name, kind in collection.indexes.items()},
        }


class _Handler(BaseHTTPRequestHandler):
    server_state: FakeQdrant
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _serve(self, method: str) -> None:
        state = self.server_state
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with state.lock:
            state.requests.append((method, path))
        fault = state._fault_for(method, path)
        if state.api_key is not None and self.headers.get("api-key") != state.api_key:
            self._reply(403, {"status": {"error": "Invalid api-key"}, "time": 0.0})
            return
        if fault is not None and not fault.applied:
            if self._inject(fault):
                return
        try:
            body = json.loads(raw) if raw else None
            result = state.handle(method, path, body)
            status, reply = 200, result if path == "/" else {"result": result, "status": "ok", "time": 0.0001}
        except _NotFound as exc:
            status, reply = 404, {"status": {"error": str(exc)}, "time": 0.0}
        except _Conflict as exc:
            status, reply = 409, {"status": {"error": str(exc)}, "time": 0.0}
        except (ValueError, KeyError, TypeError) as exc:
            status, reply = 400, {"status": {"error": f"Bad request: {exc}"}, "time": 0.0}
        if fault is not None and fault.applied and self._inject(fault):
            return
        self._reply(status, reply)

    def _inject(self, fault: Fault) -> bool:
        """Apply a fault; True when the request is finished (no normal answer follows)."""
        if fault.kind == "delay":
            time.sleep(fault.seconds)
            return False
        if fault.kind == "status":
            self._reply(fault.status, {"status": {"error": f"Service Unavailable: injected {fault.status}"}, "time": 0.0})
            return True
        if fault.kind == "cut":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True
        raise ValueError(f"unknown fault kind {fault.kind}")

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout fault)
            pass
        self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the fake Qdrant REST API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=6333)
    parser.add_argument("--api-key")
    args = parser.parse_args()
    fake = FakeQdrant(api_key=args.api_key)
    print(f"fake Qdrant on {fake.start(args.port)}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
