"""Peak memory of `dq-pipeline sync`, `verify` and `repair` on one large catalog, through the CLI
(the sync is the Dagster job, run in process), each command in its own process.

The model is the hashing stand-in (`hashing:32`): the figure is the pipeline's own memory, not the
model's. The record is SQLite, or `--database-url` for PostgreSQL. Qdrant is `--qdrant edge`
(the default: Qdrant Edge embedded in the measured process; qdrant-client's local mode holds every
point in memory by design and is meant for development sizes) or `--qdrant rest`: served over HTTP
from another process (the server layout), so the figure is the pipeline's memory alone. No Qdrant
server binary exists on these machines: `rest` is the test suite's REST stand-in
(dq_pipeline_tests/fake_qdrant.py, in memory); its seconds say nothing about a real server's speed.

    python benchmarks/bench_memory.py --entries 1000000
    python benchmarks/bench_memory.py --entries 100000 --qdrant rest --database-url postgresql://postgres@127.0.0.1:5432/postgres

Peak RSS is the child's own `ru_maxrss` from wait4 (this parent stays small, so nothing is carried
over across exec). Besides the fresh sync: `repair` after deleting 1% of the points behind the
pipeline's back, and a sync with 1% of the entries changed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import drop_pg, machine, reset_pg, start_rest_qdrant, stop_servers  # noqa: E402
from synthetic import entries  # noqa: E402

DQ = str(Path(sys.executable).with_name("dq-pipeline"))


def write_catalog(path: Path, size: int, changed_every: int = 0) -> None:
    """A JSON Lines catalog, written a line at a time (this process never holds it)."""
    with path.open("w", encoding="utf-8") as out:
        for i, e in enumerate(entries(size)):
            text = e.text + (" Revised." if changed_every and i % changed_every == 0 else "")
            out.write(json.dumps({"key": e.key, "kind": e.kind, "description": text, **e.payload}) + "\n")


def run(env: dict[str, str], *args: str) -> dict[str, object]:
    started = time.perf_counter()
    with tempfile.TemporaryFile() as output:  # a file, not a pipe: a chatty child never blocks on a full pipe
        child = subprocess.Popen([DQ, *args], env=env, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: keep Popen from reaping it again
        output.seek(0)
        text = output.read()
    code = child.returncode
    return {
        "command": " ".join(args),
        "exit": code,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "tail": text.decode(errors="replace").strip().splitlines()[-1:] if code else [],
    }


def delete_some_points(env: dict[str, str], share: float) -> int:
    """Damage the index behind the pipeline's back (in a child: embedded Qdrant is one process; or over HTTP)."""
    code = f"""
import os
from dq_pipeline.settings import Settings
from dq_pipeline.sync import SyncedStore
s = Settings.from_env()
with SyncedStore.open(s.database_url, qdrant_url=s.qdrant_url, qdrant_api_key=s.qdrant_api_key,
                      qdrant_path=s.qdrant_path, embedded_engine=s.qdrant_engine) as store:
    collection = store.index.collections()[0]
    doomed = []
    for page in store.index.pages_of_collection(collection):
        doomed += [pid for pid, _ in page][: max(1, int(len(page) * {share}))]
    store.index.unguarded_delete(collection, doomed)
    print(len(doomed))
"""
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="a PostgreSQL admin URL (a fresh database is made); default SQLite")
    parser.add_argument("--qdrant", choices=("edge", "rest"), default="edge",
                        help="edge: embedded in the measured process (default); rest: a REST stand-in in another process")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (and the PostgreSQL database)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still runs the clean-up below

    root = Path(tempfile.mkdtemp(prefix="dq_memory_"))
    catalogs = root / "catalogs"
    catalogs.mkdir()
    servers: list[subprocess.Popen] = []
    database = f"dq_memory_{os.getpid()}" if args.database_url else None
    made_database = False  # dropped at the end only once made
    try:
        started = time.perf_counter()
        write_catalog(catalogs / "big.jsonl", args.entries)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DQ_") and k != "DAGSTER_HOME"}
        env.update(DQ_DATA_DIR=str(root / "data"), DQ_CATALOG_DIR=str(catalogs), DQ_EMBEDDING_MODEL="hashing:32")
        if args.qdrant == "rest":
            env["DQ_QDRANT_URL"] = start_rest_qdrant(servers)
        else:
            env["DQ_QDRANT_ENGINE"] = "edge"
        if database:
            reset_pg(args.database_url, database)
            made_database = True
            env["DQ_DATABASE_URL"] = args.database_url.rsplit("/", 1)[0] + f"/{database}"
        results = {"entries": args.entries, "qdrant": args.qdrant, "record": "postgresql" if database else "sqlite",
                   "machine": machine(), "catalog_written_s": round(time.perf_counter() - started, 1), "runs": []}
        steps = [("sync", "--json"), ("verify", "--json"), ("sync", "--json")]
        for step in steps:
            results["runs"].append(run(env, *step))
            print(json.dumps(results["runs"][-1]), flush=True)
        results["damaged_points"] = delete_some_points(env, 0.01)
        for step in (("verify", "--json"), ("repair", "--json")):
            results["runs"].append(run(env, *step))
            print(json.dumps(results["runs"][-1]), flush=True)
        write_catalog(catalogs / "big.jsonl", args.entries, changed_every=100)
        results["runs"].append(run(env, "sync", "--json"))
        print(json.dumps(results["runs"][-1]), flush=True)
        print(json.dumps(results, indent=2))
    finally:
        stop_servers(servers)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
            if made_database:
                drop_pg(args.database_url, database)


if __name__ == "__main__":
    main()
