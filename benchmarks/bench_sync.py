"""dq_pipeline's sync protocol against pure encoding and the naive recipe, scenario by scenario.

Every measurement runs in its own process (its peak RSS is reported), configurations are
interleaved within each round, and each number reported is the median over the rounds.

Scenarios, run in this order on the same stores (each one starts from the state the previous left):
  fresh       sync N entries into empty stores
  unchanged   the same N again (must embed 0 and write 0)
  changed1    1% of the entries edited
  removed10   10% of the entries removed
  force       force reindex of the catalog (re-embeds and rewrites everything)
  repair5     5% of the points deleted from Qdrant behind the pipeline's back, then `repair`
Baselines: `encode` = the embedder alone on the same texts (the floor; run in the `fresh` slot);
`naive` = the original recipe (per-row flush, one Qdrant upsert per entry, PG commit at the end).

Qdrant engines: `edge` and `local` are embedded (in the measured process); `rest` is qdrant-client's
HTTP path to a server in another process, the production layout, so the peak RSS reported is the
pipeline's alone. No Qdrant server binary exists on these machines: `rest` serves the REST API from
the test suite's in-memory stand-in (dq_pipeline_tests/fake_qdrant.py), one per configuration and
round. Its seconds say nothing about a real server's speed; its memory figure is the point.

Examples (PostgreSQL server at 127.0.0.1:5432, user postgres, trust):
  python benchmarks/bench_sync.py --size 10000 --repeat 3                       # real model
  python benchmarks/bench_sync.py --size 1000000 --model hashing:64 --repeat 1 \\
      --systems dq --backends pg --engines edge,rest --scenarios fresh,unchanged,changed1
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
import synthetic  # noqa: E402

SCENARIOS = ["fresh", "unchanged", "changed1", "removed10", "force", "repair5"]
NAIVE_SCENARIOS = {"fresh", "unchanged", "changed1"}
CATALOG_ID = "warehouse/columns"


def catalog(size: int, seed: int, scenario: str) -> Iterator[synthetic.SyntheticEntry]:
    """The catalog a scenario syncs (the scenarios are cumulative, like a catalog's life), generated lazily."""
    edited = synthetic.every(0.01, size, salt=1) if scenario not in ("fresh", "unchanged") else set()
    removed = synthetic.every(0.10, size, salt=2) if scenario not in ("fresh", "unchanged", "changed1") else set()
    for i, e in enumerate(synthetic.entries(size, seed)):
        if i not in removed:
            yield synthetic.changed(e) if i in edited else e


def database_url(spec: dict[str, Any]) -> str:
    if spec["backend"] == "pg":
        return f"{spec['pg_url'].rsplit('/', 1)[0]}/{spec['pg_db']}"
    return f"sqlite:///{spec['workdir']}/record.sqlite3"


# --- workers (run in their own process) ---------------------------------------------------------


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    if spec["system"] == "encode":
        return _encode_worker(spec)
    if spec["system"] == "naive":
        return _naive_worker(spec)
    return _dq_worker(spec)


def _load(spec: dict[str, Any]):
    from dq_pipeline.embedding import load_embedder

    started = time.perf_counter()
    embedder = load_embedder(None if spec["model"] == "default" else spec["model"])
    embedder.embed(["warm-up"])
    return embedder, time.perf_counter() - started


def _encode_worker(spec: dict[str, Any]) -> dict[str, Any]:
    texts = [e.text for e in catalog(spec["size"], spec["seed"], "fresh")]
    embedder, load_s = _load(spec)
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "embedded": len(vectors), "load_s": load_s, "peak_rss_mib": common.peak_rss_mib()}


def _dq_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from dq_pipeline.catalog import Entry
    from dq_pipeline.sync import SyncedStore

    scenario = spec["scenario"]
    wanted = [Entry(e.key, e.kind, e.text, e.payload) for e in catalog(spec["size"], spec["seed"], scenario)]
    embedder, load_s = _load(spec)
    started = time.perf_counter()
    store = SyncedStore.open(
        database_url(spec), qdrant_url=spec.get("qdrant_url"), qdrant_path=None if spec.get("qdrant_url") else f"{spec['workdir']}/qdrant",
        embedded_engine=spec["engine"], upsert_batch_size=spec["batch"],
    )
    open_s = time.perf_counter() - started
    out: dict[str, Any] = {"load_s": load_s, "open_s": open_s}
    with store:
        if scenario == "repair5":
            rows = _point_ids(store)
            doomed = [rows[i] for i in sorted(synthetic.every(0.05, len(rows), salt=3))]
            by_collection: dict[str, list[str]] = {}
            for collection, pid in doomed:
                by_collection.setdefault(collection, []).append(pid)
            for collection, ids in by_collection.items():
                store.index.unguarded_delete(collection, ids)
            started = time.perf_counter()
            repaired = store.repair(CATALOG_ID)
            out.update(seconds=time.perf_counter() - started, restored=repaired.restored, in_sync=repaired.after.in_sync, embedded=0)
        else:
            started = time.perf_counter()
            result = store.sync(CATALOG_ID, wanted, embedder, force=scenario == "force")
            out.update(
                seconds=time.perf_counter() - started, embedded=result.embedded, inserted=result.inserted,
                updated=result.updated, deleted=result.deleted, unchanged=result.unchanged, durations=result.durations,
            )
            if spec.get("verify"):
                started = time.perf_counter()
                out["in_sync"] = store.verify(CATALOG_ID).in_sync
                out["verify_s"] = time.perf_counter() - started
    out["peak_rss_mib"] = common.peak_rss_mib()
    return out


def _point_ids(store) -> list[tuple[str, str]]:
    from sqlalchemy import select

    from dq_pipeline.sync.stores.schema import entries

    with store.engine.connect() as conn:
        query = select(entries.c.collection, entries.c.point_id).where(entries.c.catalog_id == CATALOG_ID).order_by(entries.c.entry_key)
        return [(r.collection, r.point_id) for r in conn.execute(query)]


def _naive_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """The original design's recipe: PG flush per row, one Qdrant upsert per entry, commit at the end,
    compensate by deleting the points on failure. No journal, no lock, no incrementality: a re-sync
    re-embeds and rewrites everything. Embedding is one batched call (its best case)."""
    import uuid

    from qdrant_client import models
    from sqlalchemy import Column, LargeBinary, String, Text, create_engine
    from sqlalchemy.orm import Session, declarative_base

    from dq_pipeline.sync.stores.database import normalise_url
    from dq_pipeline.sync.stores.qdrant_index import open_qdrant

    base = declarative_base()

    class Row(base):  # type: ignore[valid-type,misc]
        __tablename__ = "naive_entries"
        entry_key = Column(String(512), primary_key=True)
        text = Column(Text, nullable=False)
        vector = Column(LargeBinary, nullable=False)
        point_id = Column(String(36), nullable=False)

    wanted = list(catalog(spec["size"], spec["seed"], spec["scenario"]))
    embedder, load_s = _load(spec)
    engine = create_engine(normalise_url(database_url(spec)))
    base.metadata.create_all(engine)
    started = time.perf_counter()
    url = spec.get("qdrant_url")
    client = open_qdrant(url, None, None if url else f"{spec['workdir']}/qdrant", embedded_engine=spec["engine"])
    open_s = time.perf_counter() - started
    collection = "naive"
    if not client.collection_exists(collection):
        client.create_collection(collection, vectors_config=models.VectorParams(size=embedder.dimension, distance=models.Distance.COSINE))
    started = time.perf_counter()
    vectors = embedder.embed([e.text for e in wanted])
    written: list[str] = []
    with Session(engine) as session:
        try:
            for entry, vector in zip(wanted, vectors, strict=True):
                pid = str(uuid.uuid5(uuid.NAMESPACE_URL, entry.key))
                session.merge(Row(entry_key=entry.key, text=entry.text, vector=vector.tobytes(), point_id=pid))
                session.flush()
                client.upsert(collection, points=[models.PointStruct(id=pid, vector=vector.tolist(), payload={"key": entry.key})], wait=True)
                written.append(pid)
            session.commit()
        except BaseException:
            session.rollback()
            client.delete(collection, points_selector=models.PointIdsList(points=written))
            raise
    seconds = time.perf_counter() - started
    client.close()
    return {"seconds": seconds, "embedded": len(vectors), "load_s": load_s, "open_s": open_s, "peak_rss_mib": common.peak_rss_mib()}


# --- the orchestrator ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1000, help="catalog entries (default 1000)")
    parser.add_argument("--model", default="default", help="'default' (all-MiniLM-L6-v2) or 'hashing:64' (fake, fast)")
    parser.add_argument("--systems", default="encode,dq,naive", help="comma list of encode, dq, naive")
    parser.add_argument("--backends", default="pg,sqlite", help="record store(s): pg, sqlite (both with embedded Qdrant)")
    parser.add_argument("--engines", default="auto", help="Qdrant engine(s): auto, edge, local (embedded), rest (another process; comma list)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma list, in order")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (medians are reported)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch", type=int, default=256, help="Qdrant upsert batch size")
    parser.add_argument("--verify", action="store_true", help="also time verify after each sync")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres", help="maintenance DB URL")
    parser.add_argument("--json", dest="json_out", help="write raw samples here")
    args = parser.parse_args()

    systems = args.systems.split(",")
    scenarios = [s for s in args.scenarios.split(",") if s]
    configs = []
    for system in (s for s in systems if s != "encode"):
        for backend in args.backends.split(","):
            for engine in args.engines.split(","):
                configs.append({"system": system, "backend": backend, "engine": engine})
    base = {"size": args.size, "model": args.model, "seed": args.seed, "batch": args.batch, "pg_url": args.pg_url, "verify": args.verify}
    info = common.machine()
    common.log(f"machine: {info}")
    samples: list[dict[str, Any]] = []
    root = Path(tempfile.mkdtemp(prefix="dq_bench_"))
    servers: list[subprocess.Popen] = []
    try:
        for rnd in range(args.repeat):
            common.stop_servers(servers)
            common.fresh_round(root, rnd, configs, "dq_bench", args.pg_url)
            for config in configs:
                if config["engine"] == "rest":
                    config["qdrant_url"] = common.start_rest_qdrant(servers)
            for scenario in scenarios:
                todo = [dict(c) for c in configs if c["system"] == "dq" or (c["system"] == "naive" and scenario in NAIVE_SCENARIOS)]
                if scenario == "fresh" and "encode" in systems:
                    todo.insert(0, {"system": "encode", "backend": "-", "engine": "-"})
                for config in todo:
                    spec = {**base, **config, "scenario": scenario, "round": rnd}
                    result = common.run_worker(sys.executable, Path(__file__), spec)
                    samples.append(result)
                    common.log(f"round {rnd} {scenario:9s} {config['system']:6s} {config['backend']:6s} {config['engine']:5s} "
                               + (f"ERROR {result['error']}" if "error" in result else
                                  f"{result['seconds']:9.3f}s embedded={result.get('embedded')} rss={result['peak_rss_mib']}MiB"))
                    if "error" in result and scenario == "fresh" and config["system"] != "encode":
                        raise SystemExit(f"fresh sync failed: {result['error']}")
    finally:
        common.stop_servers(servers)
        shutil.rmtree(root, ignore_errors=True)
    common.save(args.json_out, {"machine": info, "args": vars(args), "samples": samples})
    print(table(samples, info, args))


def table(samples: list[dict[str, Any]], info: dict[str, Any], args: argparse.Namespace) -> str:
    def med(system: str, backend: str, engine: str, scenario: str, key: str = "seconds") -> float | None:
        return common.median([s.get(key) for s in samples if (s["system"], s["backend"], s["engine"], s["scenario"]) == (system, backend, engine, scenario) and "error" not in s])

    encode = med("encode", "-", "-", "fresh")
    lines = [
        f"size={args.size} model={args.model} rounds={args.repeat} | {info['date']} | nproc={info['nproc']} RAM={info['ram_gib']}GiB | {info['cpu']}",
        "",
        "| system | record | qdrant | scenario | seconds (median) | x encode | x fresh | embedded | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    if encode is not None:
        lines.append(f"| encode | - | - | fresh | {encode:.3f} | 1.00 | | {med('encode', '-', '-', 'fresh', 'embedded'):.0f} | {med('encode', '-', '-', 'fresh', 'peak_rss_mib')} |")
    keys = sorted({(s["system"], s["backend"], s["engine"]) for s in samples if s["system"] != "encode"})
    for system, backend, engine in keys:
        fresh = med(system, backend, engine, "fresh")
        for scenario in SCENARIOS:
            seconds = med(system, backend, engine, scenario)
            if seconds is None:
                continue
            vs_encode = f"{seconds / encode:.3f}" if encode else ""
            vs_fresh = f"{seconds / fresh:.4f}" if fresh and scenario != "fresh" else ""
            embedded = med(system, backend, engine, scenario, "embedded")
            lines.append(f"| {system} | {backend} | {engine} | {scenario} | {seconds:.3f} | {vs_encode} | {vs_fresh} | "
                         f"{embedded:.0f} | {med(system, backend, engine, scenario, 'peak_rss_mib')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_worker":
        common.emit(worker(json.loads(sys.argv[2])))
    else:
        main()
