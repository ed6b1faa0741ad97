"""Size limits of parsing: a million tiny rows, a giant field, and hostile files (issue 12: deep
nesting, a YAML alias bomb, a 38 MB GeoJSON value), each measured in a fresh process.

    python benchmarks/hostile_input.py                 # 1,000,000 rows and a 5 MB description
    python benchmarks/hostile_input.py --rows 200000   # a smaller run
    python benchmarks/hostile_input.py --hostile-only  # only the issue 12 cases (seconds)

Prints, per case, the entries parsed, the seconds to parse and hash them, and the peak resident
memory of the process that did it (`VmHWM`; `ru_maxrss` would include the launching process's peak,
which Linux carries across exec). The CI test (test_hostile_input.py) runs 100,000
rows with bounds; this is the full-size figure recorded in docs/RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

MEASURE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from dq_pipeline.catalog import CatalogError, read_catalog
started = time.perf_counter()
try:
    parsed_catalog = read_catalog(Path(sys.argv[1]), sys.argv[2])
    entries, outcome = parsed_catalog.entries, {"warnings": len(parsed_catalog.warnings)}
except CatalogError as exc:
    entries, outcome = [], {"refused": str(exc).splitlines()[1].strip()[:160]}
parsed = time.perf_counter() - started
hashes = {e.content_hash for e in entries}
print(json.dumps({"entries": len(entries), "unique_hashes": len(hashes), "parse_s": round(parsed, 3),
                  "parse_and_hash_s": round(time.perf_counter() - started, 3), **outcome,
                  "max_rss_mb": round(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024)}))
"""


def measure(root: Path, catalog_id: str) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE, str(root), catalog_id, str(REPO)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout)


RUN = "[" * 100_000 + "]" * 100_000  # the 200 KB file of issue 12


def _alias_bomb() -> str:
    lines = ["version: 2", "models:", "  - name: m", "    meta:", "      l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"      l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


HOSTILE = {
    "deep.json": ("deep/deep.json", lambda: RUN),
    "datapackage.json": ("dp/datapackage.json", lambda: RUN),
    "data.json": ("dcat/data.json", lambda: RUN),
    "deep.yaml": ("yaml/deep.yaml", lambda: RUN),
    "deep.jsonl": ("jsonl/deep.jsonl", lambda: '{"key": "a"}\n' + RUN + "\n"),
    "400-deep children": (
        "om/tables.json",
        lambda: '{"tables": [{"name": "t", "columns": [' + '{"name": "c", "dataType": "STRUCT", "children": [' * 400 + "]}" * 400 + "]}]}",
    ),
    "alias bomb (415 B class)": ("dbt/schema.yml", _alias_bomb),
    "38 MB DCAT spatial": (
        "geo/data.json",
        lambda: json.dumps({"conformsTo": "https://project-open-data.cio.gov/v1.1/schema", "dataset": [{
            "identifier": "geo", "title": "Parcels", "description": "City parcels.",
            "spatial": {"type": "Polygon", "coordinates": [[[round(i * 1e-6, 6), 40.0] for i in range(1_900_000)]]},
        }]}),
    ),
}


def hostile(root: Path) -> None:
    for name, (relative, content) in HOSTILE.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content(), encoding="utf-8")
        size = path.stat().st_size
        print(f"{name} ({size:,} bytes): {json.dumps(measure(root, relative.rsplit('.', 1)[0]))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--field-mb", type=int, default=5)
    parser.add_argument("--hostile-only", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dq_hostile_") as tmp:
        root = Path(tmp)
        hostile(root)
        if args.hostile_only:
            return
        with (root / "many.csv").open("w", encoding="utf-8") as handle:
            handle.write("table,column\n")
            handle.writelines(f"t{i // 100},c{i}\n" for i in range(args.rows))
        size_mb = (root / "many.csv").stat().st_size / 1e6
        many = measure(root, "many")
        print(f"{args.rows:,} tiny rows ({size_mb:.1f} MB CSV): {json.dumps(many)}")
        giant = "lorem ipsum dolor sit amet " * (args.field_mb * 1024 * 1024 // 27)
        (root / "giant.jsonl").write_text(json.dumps({"key": "huge", "description": giant}) + "\n", encoding="utf-8")
        print(f"one {args.field_mb} MB description: {json.dumps(measure(root, 'giant'))}")


if __name__ == "__main__":
    main()
