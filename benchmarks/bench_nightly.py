"""The nightly schedule over N unchanged catalogs (issue 13), end to end through a real Dagster instance.

    python benchmarks/bench_nightly.py [--catalogs 300] [--old 10] [--model NAME] [--work DIR] [--json FILE]

Builds N small synthetic CSV catalogs (10-20 entries each, 10 folders) in a fresh DAGSTER_HOME whose
dagster.yaml is the repository's root one (the embedded default: SQLite and embedded Qdrant under
DQ_DATA_DIR, the `dq_qdrant` pool limited to 1), adds their partitions and syncs them once (one
in-process batch run: this embeds every entry). Then it times what the nightly tick does with
nothing changed: the schedule's evaluation (`build_schedule_context`) and each run it requests,
executed as the daemon would with the product's executor (`execute_job` of the code location's
job: the multiprocess executor, each step its own process, the pool slot claimed). Every catalog
must come back as a `catalog_index` materialization of its partition with `embedded` 0.

The old path (one `sync_catalog` run per catalog, three step processes each) is timed on --old
catalogs, one run after another, and extrapolated linearly to N: the daemon may overlap the parse
and embed steps of up to max_concurrent_runs (4) runs, but the write step of each holds the one
pool slot, so the figure is an upper bound of roughly that factor.

--model defaults to the product's (the bundled all-MiniLM-L6-v2); the timed nightly run loads no
model either way (nothing to embed).
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine  # noqa: E402

WORDS = "order customer invoice ledger amount region product shipment status account balance event".split()


def build(folder: Path, catalogs: int, seed: int = 13) -> list[str]:
    rng = random.Random(seed)
    ids = []
    for i in range(catalogs):
        team = folder / f"team{i % 10:02d}"
        team.mkdir(parents=True, exist_ok=True)
        table = f"t{i}"
        rows = ["table,column,kind,type,description", f"{table},,table,,Table {i}: {' '.join(rng.sample(WORDS, 3))}."]
        for c in range(rng.randint(9, 19)):
            rows.append(f"{table},c{c},column,varchar(32),Column {c} of table {i}: {' '.join(rng.sample(WORDS, 4))}.")
        (team / f"catalog{i:04d}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        ids.append(f"team{i % 10:02d}/catalog{i:04d}")
    return sorted(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalogs", type=int, default=300)
    parser.add_argument("--old", type=int, default=10, help="catalogs synced one run each, for the old path's figure")
    parser.add_argument("--model", default=None, help="DQ_EMBEDDING_MODEL (default: the bundled model)")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="dq-bench-nightly-"))
    if work.exists():
        shutil.rmtree(work)
    home, data, folder = work / "dagster_home", work / "data", work / "catalogs"
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")  # the embedded default's instance settings
    ids = build(folder, args.catalogs)
    # Read when the code location loads, here and in every step process (they inherit the environment).
    os.environ.update({"DAGSTER_HOME": str(home), "DQ_DATA_DIR": str(data), "DQ_CATALOG_DIR": str(folder)})
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    if args.model:
        os.environ["DQ_EMBEDDING_MODEL"] = args.model

    from dagster import (
        AssetCheckKey,
        AssetKey,
        DagsterEventType,
        DagsterInstance,
        build_schedule_context,
        execute_job,
    )
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from dq_pipeline.definitions import defs
    from dq_pipeline.defs.batch import BATCH_JOB, BATCH_STEP
    from dq_pipeline.defs.jobs import CATALOG_TAG, SYNC_JOB, TRIGGER_TAG
    from dq_pipeline.defs.partitions import catalog_partitions

    recon = ReconstructableRepository.for_module("dq_pipeline.definitions", "defs", working_directory=str(REPO))
    result: dict = {"machine": machine(), "catalogs": args.catalogs, "model": args.model or "bundled all-MiniLM-L6-v2"}
    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(catalog_partitions.name, ids)
        started = time.perf_counter()
        first = defs.resolve_job_def(BATCH_JOB).execute_in_process(
            instance=instance, run_config={"ops": {BATCH_STEP: {"config": {"catalog_ids": ids}}}}
        )
        assert first.success, "the first sync failed"
        result["first_sync_s"] = round(time.perf_counter() - started, 1)
        print(f"first sync of {len(ids)} catalogs (embeds everything, in process): {result['first_sync_s']} s", flush=True)

        # The nightly tick, nothing changed: the schedule's evaluation and every run it requests.
        started = time.perf_counter()
        schedule = defs.resolve_schedule_def("sync_all_catalogs_schedule")
        with build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime.now(UTC),
            resources={"catalog_folder": defs.resources["catalog_folder"]},
        ) as context:
            requests = list(schedule.evaluate_tick(context).run_requests)
        tick_s = time.perf_counter() - started
        runs = []
        for request in requests:
            run = execute_job(
                recon.get_reconstructable_job(request.job_name or BATCH_JOB), instance, run_config=request.run_config, tags=request.tags
            )
            assert run.success, f"nightly run {run.run_id} failed"
            runs.append(run.run_id)
        nightly_s = time.perf_counter() - started
        materialized = {}
        for run_id in runs:
            for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records:
                m = record.event_log_entry.asset_materialization
                if m is not None and m.asset_key == AssetKey("catalog_index"):
                    materialized[m.partition] = int(m.metadata["embedded"].value)
        assert set(materialized) == set(ids) and not any(materialized.values()), "not every catalog materialized unchanged"
        checks = [
            r for r in instance.event_log_storage.get_asset_check_execution_history(
                AssetCheckKey(AssetKey("catalog_index"), "ids_match"), limit=len(ids) + 10
            ) if r.run_id in runs
        ]
        assert len(checks) == len(ids) and all(r.status.value == "SUCCEEDED" for r in checks), "an ids_match check is missing or failed"
        step_s = [
            (r.end_time or 0) - (r.start_time or 0) for r in (instance.get_run_record_by_id(run_id) for run_id in runs) if r is not None
        ]
        result.update(
            nightly_runs=len(runs), nightly_s=round(nightly_s, 1), tick_s=round(tick_s, 2),
            run_s=[round(s, 1) for s in step_s], per_catalog_ms=round(1000 * nightly_s / len(ids), 1),
        )
        print(f"nightly tick over {len(ids)} unchanged catalogs: {len(runs)} run(s), {result['nightly_s']} s end to end "
              f"(tick {result['tick_s']} s, run(s) {result['run_s']} s), checks {len(checks)} passed", flush=True)

        # The old path: one sync_catalog run per catalog, as the schedule requested them before.
        times = []
        for catalog_id in ids[: args.old]:
            started = time.perf_counter()
            run = execute_job(
                recon.get_reconstructable_job(SYNC_JOB), instance,
                tags={"dagster/partition": catalog_id, CATALOG_TAG: catalog_id, TRIGGER_TAG: "schedule"},
            )
            assert run.success, f"old-path run of {catalog_id} failed"
            times.append(time.perf_counter() - started)
        if times:
            mean = sum(times) / len(times)
            result.update(
                old_runs=len(times), old_run_s_mean=round(mean, 1), old_run_s_min=round(min(times), 1), old_run_s_max=round(max(times), 1),
                old_extrapolated_s=round(mean * len(ids)), speedup=round(mean * len(ids) / nightly_s, 1),
            )
            print(f"old path: {len(times)} runs of sync_catalog, {result['old_run_s_mean']} s each "
                  f"({result['old_run_s_min']}-{result['old_run_s_max']}); extrapolated to {len(ids)}: "
                  f"{result['old_extrapolated_s']} s ({result['old_extrapolated_s'] / 60:.0f} min), {result['speedup']}x the batched tick", flush=True)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
