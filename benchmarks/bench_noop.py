"""A no-op `dq-pipeline sync` as a whole process (issue 13): unchanged catalogs, nothing to embed.

Builds a folder of `--entries` synthetic entries (`benchmarks/synthetic.py`, JSON Lines, split over
`--catalogs` files), syncs it once on the embedded default (SQLite + embedded Qdrant under a
private DQ_DATA_DIR, the bundled model unless `--model`), then times `--runs` unchanged syncs,
each a fresh process started as the `dq-pipeline` script starts (`dq_pipeline.cli.main`), and
says whether that process imported torch / sentence-transformers / transformers.

`--before REF` also measures the code of a git ref (a temporary `git worktree`) on the same stores
and folder, alternating with this checkout run by run, so both see the same machine load. Only the
code differs (PYTHONPATH); the interpreter and packages are this one's.

    python benchmarks/bench_noop.py --entries 5000 --runs 7 --before 5cbd7fa
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, median  # noqa: E402
from bench_memory import write_catalog  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "sentence_transformers", "transformers")
# What the `dq-pipeline` console script runs, plus a report of the heavy imports. The report is
# registered first, so it runs last of the atexit handlers, after the command's own.
WRAPPER = f"""
import atexit, json, os, sys
atexit.register(lambda: os.write(2, ("\\nHEAVY " + json.dumps([m for m in {HEAVY!r} if m in sys.modules]) + "\\n").encode()))
import dq_pipeline
os.write(2, ("ORIGIN " + dq_pipeline.__file__ + "\\n").encode())
from dq_pipeline.cli import main
sys.argv = ["dq-pipeline", *sys.argv[1:]]
sys.exit(main())
"""


def write_folder(folder: Path, entries: int, catalogs: int) -> None:
    per = -(-entries // catalogs)
    for n in range(catalogs):
        size = min(per, entries - n * per)
        path = folder / "warehouse" / (f"columns_{n:03d}.jsonl" if catalogs > 1 else "columns.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_catalog(path, size)


def sync(code: Path, env: dict[str, str], folder: Path) -> dict[str, object]:
    """One whole-process `dq-pipeline sync` with the code at `code`: wall and CPU seconds (the
    child's user + system time, from wait4: less at the mercy of a shared machine's load), exit
    code, heavy imports."""
    environment = {**env, "PYTHONPATH": str(code)}
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:  # files: a chatty child never blocks on a pipe
        # `python -c` puts its working folder first on sys.path, before PYTHONPATH: run it in the
        # work folder (no package there), or a checkout's own folder would decide the code.
        child = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, "sync", "--catalog-dir", str(folder)], env=environment, stdout=out, stderr=err, cwd=folder.parent
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: keep Popen from reaping it again
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    heavy = next((json.loads(line[6:]) for line in stderr.splitlines() if line.startswith("HEAVY ")), None)
    origin = next((line[7:] for line in stderr.splitlines() if line.startswith("ORIGIN ")), "")
    if not origin.startswith(str(code)):
        raise SystemExit(f"the child ran dq_pipeline from {origin or '?'}, not from {code}")
    return {
        "seconds": round(seconds, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3), "exit": child.returncode,
        "heavy": heavy, "out": stdout.strip().splitlines()[-1:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--catalogs", type=int, default=1, help="files the entries are split over (one Dagster run each)")
    parser.add_argument("--runs", type=int, default=5, help="unchanged syncs timed per configuration")
    parser.add_argument("--model", default="", help="DQ_EMBEDDING_MODEL (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--before", metavar="REF", help="also time this git ref's code, alternating with this checkout")
    parser.add_argument("--work", help="work folder to use and keep (a second run skips the embedding)")
    parser.add_argument("--json", dest="json_out", help="write the samples here")
    args = parser.parse_args()

    root = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="dq_noop_"))
    root.mkdir(parents=True, exist_ok=True)
    folder = root / "catalogs"
    worktree = root / "before"
    codes = {"after": REPO}
    try:
        if not folder.exists():
            write_folder(folder, args.entries, args.catalogs)
        if args.before:
            if worktree.exists():
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], check=False)
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), args.before], check=True, capture_output=True)
            codes = {"before": worktree, "after": REPO}
        env = {k: v for k, v in os.environ.items() if not k.startswith("DQ_") and k not in ("DAGSTER_HOME", "PYTHONPATH")}
        env.update(DQ_DATA_DIR=str(root / "data"), XDG_CACHE_HOME=str(root / "xdg-cache"))
        if args.model:
            env["DQ_EMBEDDING_MODEL"] = args.model
        load_at_start = [round(x, 2) for x in os.getloadavg()]
        started = time.perf_counter()
        first = sync(REPO, env, folder)
        print(json.dumps({"first_sync": first, "seconds": round(time.perf_counter() - started, 1)}), flush=True)
        if first["exit"] != 0:
            raise SystemExit(f"the first sync failed: {first}")
        for code in codes.values():
            sync(code, env, folder)  # warm the page cache and the digest cache; not counted
        samples: dict[str, list[dict[str, object]]] = {name: [] for name in codes}
        for run in range(args.runs):
            for name, code in (codes.items() if run % 2 == 0 else reversed(codes.items())):
                sample = sync(code, env, folder)
                samples[name].append(sample)
                print(json.dumps({"run": run, "code": name, **sample}), flush=True)
        summary = {
            name: {
                "median_s": median([float(s["seconds"]) for s in runs]),  # type: ignore[arg-type]
                "min_s": min(float(s["seconds"]) for s in runs),  # type: ignore[arg-type]
                "max_s": max(float(s["seconds"]) for s in runs),  # type: ignore[arg-type]
                "median_cpu_s": median([float(s["cpu_s"]) for s in runs]),  # type: ignore[arg-type]
                "all_exit_0": all(s["exit"] == 0 for s in runs),
                "heavy_imported": sorted({m for s in runs for m in (s["heavy"] or [])}),
            }
            for name, runs in samples.items()
        }
        result = {"entries": args.entries, "catalogs": args.catalogs, "runs": args.runs, "machine": machine(), "load_avg_at_start": load_at_start, "summary": summary}
        if args.json_out:
            Path(args.json_out).write_text(json.dumps({**result, "samples": samples}, indent=1))
        print(json.dumps(result, indent=2))
    finally:
        if args.before and worktree.exists():
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], check=False, capture_output=True)
        if not args.work:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
