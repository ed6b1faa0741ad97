"""One interleaved run of dq_pipeline, pure encoding, the naive recipe and LangChain's indexing API.

Within each round, every scenario is run for every configuration back to back (so a load change on
the shared machine hits all of them alike); each number reported is the median over the rounds,
and ratios are taken between medians of the same run. Workers are bench_sync.py's (this venv) and
bench_langchain.py's (the LangChain venv, --lc-python), each in its own process.

Configurations (comma list for --configs):
  encode                          the embedder alone on the same texts (the floor; `fresh` slot)
  dq-<pg|sqlite>[-<auto|edge|local>]       dq_pipeline (record store + embedded Qdrant engine)
  naive-<pg|sqlite>[-<engine>]             the original recipe (see bench_sync.py)
  lc-<incr-file|full|incr-entry>-<pg|sqlite>[-<local|edge>]   LangChain index() (see bench_langchain.py)

  python benchmarks/compare.py --size 10000 --repeat 3 \\
      --configs encode,dq-pg,dq-sqlite,lc-full-pg,lc-full-sqlite --scenarios fresh,unchanged,changed1
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

SCENARIOS = ["fresh", "unchanged", "changed1", "removed10", "force", "repair5"]
SUPPORTS = {
    "encode": {"fresh"},
    "dq": set(SCENARIOS),
    "naive": {"fresh", "unchanged", "changed1"},
    "lc": {"fresh", "unchanged", "changed1", "removed10", "force"},
}


def parse(name: str) -> dict[str, Any]:
    parts = name.split("-")
    if parts[0] == "encode":
        return {"name": name, "system": "encode", "backend": "-", "engine": "-"}
    if parts[0] in ("dq", "naive"):
        return {"name": name, "system": parts[0], "backend": parts[1], "engine": parts[2] if len(parts) > 2 else "auto"}
    if parts[0] == "lc":
        mode = "-".join(parts[1:3]) if parts[1] == "incr" else parts[1]
        rest = parts[3:] if parts[1] == "incr" else parts[2:]
        return {"name": name, "system": "lc", "mode": mode, "record": rest[0], "qdrant": rest[1] if len(rest) > 1 else "local"}
    raise SystemExit(f"unknown configuration {name!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--model", default="default", help="'default' (all-MiniLM-L6-v2) or 'hashing:64'")
    parser.add_argument("--configs", default="encode,dq-pg,dq-sqlite,naive-pg,lc-full-pg,lc-full-sqlite")
    parser.add_argument("--scenarios", default="fresh,unchanged,changed1,removed10,force,repair5")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch", type=int, default=256, help="dq_pipeline's Qdrant upsert batch size")
    parser.add_argument("--lc-python", default="/work/bench-venv/bin/python", help="python of the LangChain venv")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    configs = [parse(n) for n in args.configs.split(",")]
    scenarios = [s for s in args.scenarios.split(",") if s]
    base = {"size": args.size, "model": args.model, "seed": args.seed, "batch": args.batch, "pg_url": args.pg_url,
            "dq_root": str(common.HERE.parent), "verify": False}
    info = common.machine()
    common.log(f"machine: {info}")
    samples: list[dict[str, Any]] = []
    root = Path(tempfile.mkdtemp(prefix="dq_compare_"))
    try:
        for rnd in range(args.repeat):
            common.fresh_round(root, rnd, configs, "cmp_bench", args.pg_url)
            for scenario in scenarios:
                for config in configs:
                    if scenario not in SUPPORTS[config["system"]]:
                        continue
                    spec = {**base, **config, "scenario": scenario, "round": rnd}
                    if config["system"] == "lc":
                        result = common.run_worker(args.lc_python, common.HERE / "bench_langchain.py", spec)
                    else:
                        result = common.run_worker(sys.executable, common.HERE / "bench_sync.py", spec)
                    samples.append(result)
                    common.log(f"round {rnd} {scenario:9s} {config['name']:24s} "
                               + (f"ERROR {result['error']}" if "error" in result else
                                  f"{result['seconds']:9.3f}s embedded={result.get('embedded')} rss={result['peak_rss_mib']}MiB"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    common.save(args.json_out, {"machine": info, "args": vars(args), "samples": samples})
    print(table(samples, configs, info, args))


def table(samples: list[dict[str, Any]], configs: list[dict[str, Any]], info: dict[str, Any], args: argparse.Namespace) -> str:
    def med(name: str, scenario: str, key: str = "seconds") -> float | None:
        return common.median([s.get(key) for s in samples if s["name"] == name and s["scenario"] == scenario and "error" not in s])

    encode = med("encode", "fresh")
    lc_names = [c["name"] for c in configs if c["system"] == "lc"]
    lines = [
        f"size={args.size} model={args.model} rounds={args.repeat} | {info['date']} | nproc={info['nproc']} "
        f"RAM={info['ram_gib']}GiB | {info['cpu']} | load at start {info['load_avg']}",
        "",
        "| configuration | scenario | seconds (median) | x encode | x own fresh | embedded | deleted | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for config in configs:
        name = config["name"]
        fresh = med(name, "fresh")
        for scenario in SCENARIOS:
            seconds = med(name, scenario)
            if seconds is None:
                continue
            vs_encode = f"{seconds / encode:.3f}" if encode else ""
            vs_fresh = f"{seconds / fresh:.4f}" if fresh and scenario != "fresh" else ""
            embedded, deleted = med(name, scenario, "embedded"), med(name, scenario, "deleted")
            lines.append(f"| {name} | {scenario} | {seconds:.3f} | {vs_encode} | {vs_fresh} | "
                         f"{'' if embedded is None else f'{embedded:.0f}'} | {'' if deleted is None else f'{deleted:.0f}'} | "
                         f"{med(name, scenario, 'peak_rss_mib')} |")
    if lc_names:
        lines += ["", "| dq configuration | scenario | LangChain configuration | LangChain s / dq s |", "|---|---|---|---|"]
        for config in (c for c in configs if c["system"] == "dq"):
            for scenario in ("fresh", "unchanged", "changed1", "removed10"):
                ours = med(config["name"], scenario)
                for lc in lc_names:
                    theirs = med(lc, scenario)
                    if ours and theirs:
                        lines.append(f"| {config['name']} | {scenario} | {lc} | {theirs / ours:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
