"""The catalog folder sensor at scale: N catalog files (default 100,000), one tick's time and cursor.

    python benchmarks/bench_sensor.py [--files 100000] [--changed 100] [--work DIR] [--compare REF] [--repeat N]

Builds N small CSV catalogs in 1,000 folders, a SQLite system of record that holds every catalog
at its current digest (as after a full sync; rows written directly, no embedding), and a Dagster
test instance with the partitions. Then times real `evaluate_tick` calls of the code location's
sensor: the first tick (every file hashed once, the per-file state written to the record), an
unchanged tick, a tick after touching files (same bytes: stat changed, hash again, no run), and a
tick after changing files (hash them, request their runs). Targets (issue 11): a tick <= 10 s and
a cursor <= 64 KB at 100,000 files.

--compare REF (a git revision, e.g. HEAD~1) also times the code of REF on the same folder, record
and instance: right after the first tick, unchanged ticks of REF's sensor and of this tree's
alternate (--repeat N rounds), each in a fresh process (`git archive REF` into the work folder;
the second tick of each process is taken, so imports and first-use caches count for neither).
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
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("DQ_BENCH_CODE") or str(REPO))  # --compare: the code of another revision

from dagster import build_sensor_context, instance_for_test  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from dq_pipeline.catalog import discover, source_digest  # noqa: E402
from dq_pipeline.definitions import build_definitions, resources_for  # noqa: E402
from dq_pipeline.defs.partitions import catalog_partitions  # noqa: E402
from dq_pipeline.settings import Settings  # noqa: E402
from dq_pipeline.sync import open_record  # noqa: E402
from dq_pipeline.sync.stores.schema import catalogs  # noqa: E402

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


def settings_for(work: Path) -> Settings:
    return Settings.from_env(
        env={}, database_url=f"sqlite:///{work / 'record.db'}", data_dir=str(work / "data"),
        catalog_dir=str(work / "catalogs"), embedding_model="hashing:32",
    )


def steady_ticks(work: Path, cursor: str | None, count: int) -> list[float]:
    """`count` unchanged ticks in this process, on the folder, record and instance under `work`."""
    defs = build_definitions(resources_for(settings_for(work)))
    seconds = []
    with instance_for_test(temp_dir=str(work / "dagster")) as instance:
        for _ in range(count):
            data, elapsed = tick(defs, instance, cursor)
            assert not data.run_requests, data.skip_message
            seconds.append(elapsed)
    return seconds


def steady_tick_in_process(work: Path, cursor: str | None, code: Path) -> float:
    """The second unchanged tick of a fresh process running the sensor code under `code`."""
    env = dict(os.environ, DQ_BENCH_CODE=str(code))
    out = subprocess.run(
        [sys.executable, __file__, "--steady-ticks", str(work), "--cursor", cursor or ""],
        env=env, check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])[-1]


def compare(work: Path, ref: str, cursor: str | None, rounds: int) -> list[tuple[str, float, float]]:
    baseline = work / "baseline"
    shutil.rmtree(baseline, ignore_errors=True)
    baseline.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True)
    rows = []
    for i in range(rounds):
        old = steady_tick_in_process(work, cursor, baseline)
        new = steady_tick_in_process(work, cursor, REPO)
        rows.append((f"unchanged, round {i + 1}", old, new))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--compare", metavar="REF", default=None, help="also time the sensor of this git revision")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of --compare")
    parser.add_argument("--steady-ticks", type=Path, default=None, help=argparse.SUPPRESS)  # --compare's child
    parser.add_argument("--cursor", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steady_ticks is not None:
        print(json.dumps(steady_ticks(args.steady_ticks, args.cursor or None, 2)))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_sensor_"))
    shutil.rmtree(work, ignore_errors=True)
    root = work / "catalogs"
    started = time.perf_counter()
    paths = build(root, args.files)
    print(f"built {args.files} files in {time.perf_counter() - started:.1f}s under {root}")

    settings = settings_for(work)
    engine = open_record(settings.database_url)
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
    compared = []
    (work / "dagster").mkdir()
    with instance_for_test(temp_dir=str(work / "dagster")) as instance:
        instance.add_dynamic_partitions(catalog_partitions.name, sorted(files))
        first, seconds = tick(defs, instance, None)
        results.append(("first tick (hash every file, write state)", seconds, first))
        if args.compare:
            compared = compare(work, args.compare, first.cursor, args.repeat)
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
    if compared:
        print(f"\n{'tick (fresh process each, 2nd tick)':45s} {args.compare:>10s} {'this tree':>10s}")
        for name, old, new in compared:
            print(f"{name:45s} {old:10.2f} {new:10.2f}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
