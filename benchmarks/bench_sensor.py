"""The catalog folder sensor at scale: N catalog files (default 100,000), one tick's time and cursor.

    python benchmarks/bench_sensor.py [--files 100000] [--changed 100] [--work DIR]

Builds N small CSV catalogs in 1,000 folders, a SQLite system of record that holds every catalog
at its current digest (as after a full sync; rows written directly, no embedding), and a Dagster
test instance with the partitions. Then times real `evaluate_tick` calls of the code location's
sensor: the first tick (every file hashed once, the per-file state written to the record), an
unchanged tick, a tick after touching files (same bytes: stat changed, hash again, no run), and a
tick after changing files (hash them, request their runs). Targets (issue 11): a tick <= 10 s and
a cursor <= 64 KB at 100,000 files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dagster import build_sensor_context, instance_for_test  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from dq_pipeline.catalog import discover, source_digest  # noqa: E402
from dq_pipeline.definitions import build_definitions, resources_for  # noqa: E402
from dq_pipeline.defs.partitions import catalog_partitions  # noqa: E402
from dq_pipeline.settings import Settings  # noqa: E402
from dq_pipeline.sync import open_record  # noqa: E402
from dq_pipeline.sync.schema import catalogs  # noqa: E402

CSV = "table,column,kind,type,description\nt{i},,table,,Table number {i}.\nt{i},id,column,bigint,Key of table {i}.\n"


def build(root: Path, files: int) -> list[Path]:
    paths = []
    for i in range(files):
        folder = root / f"team{i % 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"catalog{i:06d}.csv"
        path.write_text(CSV.format(i=i), encoding="utf-8")
        paths.append(path)
    return paths


def tick(defs, instance, cursor):
    sensor = defs.resolve_sensor_def("catalog_folder_sensor")
    started = time.perf_counter()
    with build_sensor_context(instance_ref=instance.get_ref(), cursor=cursor, resources=defs.resources, definitions=defs) as ctx:
        data = sensor.evaluate_tick(ctx)
    return data, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_sensor_"))
    shutil.rmtree(work, ignore_errors=True)
    root = work / "catalogs"
    started = time.perf_counter()
    paths = build(root, args.files)
    print(f"built {args.files} files in {time.perf_counter() - started:.1f}s under {root}")

    database_url = f"sqlite:///{work / 'record.db'}"
    settings = Settings.from_env(env={}, database_url=database_url, data_dir=str(work / "data"), catalog_dir=str(root), embedding_model="hashing:32")
    engine = open_record(database_url)
    started = time.perf_counter()
    files = discover(root)
    now = datetime.now(UTC)
    rows = [
        {"catalog_id": cid, "entry_count": 2, "last_run_id": None, "last_synced_at": now, "source_digest": source_digest(f)}
        for cid, f in files.items()
    ]
    with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(insert(catalogs), rows[start : start + 5000])
    engine.dispose()
    print(f"recorded {len(rows)} catalogs at their digests in {time.perf_counter() - started:.1f}s")

    defs = build_definitions(resources_for(settings))
    results = []
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(catalog_partitions.name, sorted(files))
        first, seconds = tick(defs, instance, None)
        results.append(("first tick (hash every file, write state)", seconds, first))
        second, seconds = tick(defs, instance, first.cursor)
        results.append(("unchanged", seconds, second))
        for path in paths[: args.changed]:
            st = path.stat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        touched, seconds = tick(defs, instance, second.cursor)
        results.append((f"{args.changed} touched (same bytes)", seconds, touched))
        for path in paths[args.changed : 2 * args.changed]:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write("tX,extra,column,text,Added.\n")
        changed, seconds = tick(defs, instance, touched.cursor)
        results.append((f"{args.changed} changed", seconds, changed))

    print(f"\n{args.files} catalog files")
    print(f"{'tick':45s} {'seconds':>8s} {'runs':>6s} {'cursor bytes':>13s}")
    for name, seconds, data in results:
        print(f"{name:45s} {seconds:8.2f} {len(data.run_requests):6d} {len(data.cursor or ''):13d}")
        if data.skip_message:
            print(f"    {data.skip_message[:160]}")
    worst = max(s for n, s, _ in results[1:])
    cursor = max(len(d.cursor or "") for _, _, d in results)
    print(f"\nsteady-state ticks: max {worst:.2f}s (target <= 10 s); cursor max {cursor} bytes (target <= 65536)")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
