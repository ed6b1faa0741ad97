"""Entries on disk (catalog/spool.py, sync/write/plan.py, defs/io.py): a spooled parse refuses what a
list parse refuses, with the same words; a spool's file lives exactly as long as it should; and a
run whose steps are separate processes (the multiprocess executor, as the daemon runs it) hands the
entries from step to step, also to a re-execution of the write step alone."""

from __future__ import annotations

import gc
import pickle
from pathlib import Path

import pytest
from dagster import DagsterInstance, ReexecutionOptions, execute_job, instance_for_test, reconstructable

from dq_pipeline.catalog import CatalogError, Entry, EntrySpool, discover, parse_catalog, read_catalog
from dq_pipeline.catalog.spool import DuplicateEntryKey
from dq_pipeline.defs.partitions import catalog_partitions
from dq_pipeline.settings import Settings
from dq_pipeline.sync import SyncedStore

HASHING = "hashing:32"


def test_a_spooled_parse_refuses_duplicates_with_the_words_of_a_list_parse(tmp_path: Path) -> None:
    folder = tmp_path / "catalogs"
    folder.mkdir()
    rows = [f"t,c{i},text,column {i}" for i in range(5000)]
    rows.insert(4000, "t,c17,text,column 17 again")  # after the first spool flush: found on disk
    rows.insert(10, "t,c3,text,column 3 again")  # still in the write buffer
    (folder / "big.csv").write_text("table,column,type,description\n" + "\n".join(rows) + "\n")
    with pytest.raises(CatalogError) as listed:
        parse_catalog(discover(folder)["big"])
    with pytest.raises(CatalogError) as spooled:
        read_catalog(folder, "big")
    assert str(spooled.value) == str(listed.value)
    assert "duplicate entry key 't.c3' (first at line 5)" in str(spooled.value)
    assert "duplicate entry key 't.c17' (first at line 20)" in str(spooled.value)


def test_a_spooled_parse_reads_back_what_a_list_parse_returns(catalog_dir: Path) -> None:
    for catalog_id, file in discover(catalog_dir).items():
        parsed = read_catalog(catalog_dir, catalog_id)
        assert list(parsed.entries) == parse_catalog(file)
        assert [e.content_hash for e in parsed.entries] == [e.content_hash for e in parse_catalog(file)]
        assert parsed.entries[-1] == parse_catalog(file)[-1]


@pytest.mark.slow
def test_a_spool_file_lives_as_long_as_its_owner(tmp_path: Path) -> None:
    spool = EntrySpool.of([Entry("a", "column", "x"), Entry("b", "column", "y")])
    path = spool.path
    copy = pickle.loads(pickle.dumps(spool))  # a path, opened read-only: not an owner
    assert list(copy) == list(spool) and path.exists()
    copy.close()
    assert path.exists()
    del spool
    gc.collect()
    assert not path.exists()  # the owner is gone, and so is its file

    kept = EntrySpool.of([Entry("a", "column", "x")])
    kept.move_to(tmp_path / "kept.sqlite")
    del kept
    gc.collect()
    assert (tmp_path / "kept.sqlite").exists()  # handed over: kept where it was put
    assert [e.key for e in EntrySpool.open(tmp_path / "kept.sqlite")] == ["a"]

    with pytest.raises(DuplicateEntryKey):
        EntrySpool.of([Entry("a", "column", "x"), Entry("a", "column", "y")])


def sync_job():
    """The code location's sync job, as a step process rebuilds it (from DQ_* in its environment)."""
    from dq_pipeline.definitions import build_definitions

    return build_definitions().resolve_job_def("sync_catalog")


@pytest.mark.dagster
def test_steps_in_separate_processes_hand_the_entries_on(database_url: str, tmp_path: Path, catalog_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "DQ_DATABASE_URL": database_url,
        "DQ_QDRANT_PATH": str(tmp_path / "qdrant"),
        "DQ_DATA_DIR": str(tmp_path / "data"),
        "DQ_CATALOG_DIR": str(catalog_dir),
        "DQ_EMBEDDING_MODEL": HASHING,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "dagster_home").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        instance.add_dynamic_partitions(catalog_partitions.name, ["sales/orders"])
        first = _run(instance, catalog_dir)
        spools = sorted(Path(instance.storage_directory()).rglob("*.entries.sqlite"))
        assert len(spools) == 1  # kept beside the parse step's output, for later steps and re-executions

        # The write step alone, in a new run and new processes, from the first run's parse output.
        entries = len(parse_catalog(discover(catalog_dir)["sales/orders"]))
        again = execute_job(
            reconstructable(sync_job),
            instance=instance,
            tags={"dagster/partition": "sales/orders"},
            reexecution_options=ReexecutionOptions(parent_run_id=first.run_id, step_selection=["catalog_index"]),
        )
        assert again.success
        assert _written(again) == {"inserted": 0, "updated": 0, "deleted": 0, "unchanged": entries}

        with (catalog_dir / "sales" / "orders.csv").open("a") as f:
            f.write("orders,coupon_code,column,text,Code of the coupon applied,,,,false\n")
        assert _written(_run(instance, catalog_dir)) == {"inserted": 1, "updated": 0, "deleted": 0, "unchanged": entries}
        assert len(sorted(Path(instance.storage_directory()).rglob("*.entries.sqlite"))) == 1  # the earlier one went
    settings = Settings.from_env(env={}, **{k.removeprefix("DQ_").lower(): v for k, v in values.items()})
    with SyncedStore.open(settings.database_url, qdrant_path=settings.qdrant_path) as store:
        verification = store.verify("sales/orders")
        assert verification.in_sync and verification.pg == len(parse_catalog(discover(catalog_dir)["sales/orders"]))


def _run(instance: DagsterInstance, catalog_dir: Path):
    result = execute_job(reconstructable(sync_job), instance=instance, tags={"dagster/partition": "sales/orders"})
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    assert result.dagster_run.run_config.get("execution", {}).get("config", {}).get("in_process") is None
    return result


def _written(result) -> dict[str, int]:
    (materialization,) = [m for m in result.get_asset_materialization_events() if m.asset_key.path == ["catalog_index"]]
    metadata = materialization.materialization.metadata
    return {name: metadata[name].value for name in ("inserted", "updated", "deleted", "unchanged")}


def test_scratch_files_no_live_process_holds_are_swept(tmp_path: Path) -> None:
    """A kill -9 runs no clean-up: the next scratch file sweeps every file no live process holds,
    and never one a live process (here, another one) holds."""
    import subprocess
    import sys

    from dq_pipeline.catalog.spool import SCRATCH_PREFIX, scratch_file

    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sys, time\nfrom dq_pipeline.catalog.spool import scratch_file\nprint(scratch_file('entries', {str(tmp_path)!r}), flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        held = Path(holder.stdout.readline().strip())  # type: ignore[union-attr]
        abandoned = tmp_path / f"{SCRATCH_PREFIX}plan_left_by_a_kill.sqlite"
        abandoned.write_bytes(b"")
        fresh = scratch_file("entries", tmp_path)
        assert fresh.exists() and held.exists() and not abandoned.exists()
    finally:
        holder.kill()
        holder.wait()
    scratch_file("entries", tmp_path)
    assert not held.exists()  # its process is gone now


def test_a_spool_whose_path_holds_uri_characters_is_read(store: SyncedStore, embedder, tmp_path: Path) -> None:
    """The temporary folder or the Dagster storage folder may hold `#`, `?`, `%` and spaces: SQLite's
    URI parsing must not cut the path (it would open, or create, another file)."""
    odd = tmp_path / "a #b?c%41d"
    odd.mkdir()
    entries = [Entry(f"t.c{i}", "column", f"column {i}") for i in range(10)]
    spool = EntrySpool.create(odd)
    for entry in entries:
        spool.add(entry)
    spool.seal()
    again = EntrySpool.open(spool.path)
    assert list(again) == entries
    result = store.sync("odd", again, embedder)
    assert (result.inserted, store.verify("odd").in_sync) == (10, True)


def test_a_spool_that_is_gone_is_one_terminal_error(tmp_path: Path) -> None:
    """A step output whose spool file was deleted (the storage folder cleaned) loads as one clear,
    terminal error: retrying the step cannot bring the file back; a new run parses again."""
    from dq_pipeline.catalog.spool import SpoolGone
    from dq_pipeline.errors import is_transient

    spool = EntrySpool.of([Entry("a", "column", "x")])
    spool.move_to(tmp_path / "kept.sqlite")
    pickled = pickle.dumps(spool)  # what the IO manager stores beside the file
    (tmp_path / "kept.sqlite").unlink()
    with pytest.raises(SpoolGone, match="run the whole sync again") as gone:
        pickle.loads(pickled)
    assert not is_transient(gone.value)
