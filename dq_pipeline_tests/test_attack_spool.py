"""Attacks on entries on disk (catalog/spool.py, catalog/builder.py, sync/write/plan.py, defs/io.py).

Each test names what it breaks; real stores and real Dagster runs, no mocks.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from dagster import instance_for_test

from dq_pipeline.catalog import CatalogError, discover, parse_catalog, read_catalog
from dq_pipeline.catalog.builder import PAYLOAD_MAX_BYTES
from dq_pipeline.defs.partitions import catalog_partitions
from dq_pipeline.embedding import HashingEmbedder
from dq_pipeline.runner import run_sync
from dq_pipeline.settings import Settings
from dq_pipeline.sync import SyncedStore

HASHING = "hashing:32"


def _csv(path: Path, n: int, extra: str = "") -> None:
    path.write_text("table,column,type,description\n" + "".join(f"t,c{i},text,column {i}{extra}\n" for i in range(n)))


@pytest.mark.dagster
def test_a_parse_of_one_catalog_keeps_the_spool_of_a_catalog_whose_id_extends_it(tmp_path: Path) -> None:
    """defs/io.py deletes "the partition's earlier spool files" with the glob `<name>.*.entries.sqlite`,
    which also matches the spool of catalog `<name>.<anything>` (a dot is allowed in an id): parsing
    `sales` deleted the kept spool of `sales.v2`, so a later step or a re-execution of `sales.v2`
    (its pickle still there) cannot load its input."""
    folder = tmp_path / "catalogs"
    folder.mkdir()
    _csv(folder / "sales.v2.csv", 5)
    _csv(folder / "sales.csv", 3)
    settings = Settings.from_env(
        env={},
        database_url=f"sqlite:///{tmp_path / 'dq.sqlite3'}",
        qdrant_path=str(tmp_path / "qdrant"),
        data_dir=str(tmp_path / "data"),
        catalog_dir=str(folder),
        embedding_model=HASHING,
    )
    (tmp_path / "dagster_home").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        instance.add_dynamic_partitions(catalog_partitions.name, ["sales", "sales.v2"])
        assert run_sync(settings, ["sales.v2"], instance=instance)["sales.v2"]["status"] == "ok"
        storage = Path(instance.storage_directory())
        pickled = storage / "catalog_entries" / "sales.v2"
        assert pickled.is_file()
        assert run_sync(settings, ["sales"], instance=instance)["sales"]["status"] == "ok"
        parsed = pickle.loads(pickled.read_bytes())  # what the IO manager loads for sales.v2's next step
        assert len(parsed.entries) == 5
        assert len(list(storage.rglob("*.entries.sqlite"))) == 2  # one kept spool per partition


@pytest.mark.slow
def test_a_spooled_parse_reports_a_duplicate_of_a_refused_entry_as_a_list_parse_does(tmp_path: Path) -> None:
    """The builder remembers a key's hash before it refuses the entry (payload over PAYLOAD_MAX_BYTES),
    but the refused entry never reaches the spool: on the duplicate the hash hits, the spool lookup
    finds nothing, and the duplicate goes unreported. A list parse reports it: the refusal's words
    differ between `parse_catalog` and `read_catalog` (the sync)."""
    folder = tmp_path / "catalogs"
    folder.mkdir()
    with (folder / "big.jsonl").open("w") as f:
        f.write(json.dumps({"key": "a", "kind": "table", "description": "d", "blob": "x" * (PAYLOAD_MAX_BYTES + 10)}) + "\n")
        f.write(json.dumps({"key": "a", "kind": "table", "description": "again"}) + "\n")
        f.write(json.dumps({"key": "b", "kind": "table", "description": "fine"}) + "\n")
    with pytest.raises(CatalogError) as listed:
        parse_catalog(discover(folder)["big"])
    with pytest.raises(CatalogError) as spooled:
        read_catalog(folder, "big")
    assert "duplicate entry key 'a' (first at line 1)" in str(listed.value)
    assert str(spooled.value) == str(listed.value)


@pytest.mark.parametrize("folder_name", ["run#1", "50%41off", "a?b"])
def test_a_spool_in_a_folder_whose_name_holds_uri_characters_plans_and_reads(
    tmp_path: Path, folder_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spools are opened and ATTACHed as `file:{path}?mode=ro` URIs, unescaped: a `#` in the path
    (TMPDIR, the Dagster storage folder under DAGSTER_HOME) cuts the path there, so the plan
    attaches a new empty database (created beside it) and fails with "no such table: src.entry";
    a `%41` is decoded to `A` (no such file); a `?` starts the query string."""
    import tempfile

    from dq_pipeline.catalog import Entry, EntrySpool

    folder = tmp_path / folder_name
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    spool = EntrySpool.of([Entry(f"k{i}", "column", f"text {i}") for i in range(5)])
    assert str(spool.path).startswith(str(folder))
    spool.move_to(folder / "kept.entries.sqlite")  # as the IO manager keeps it, then opened from its path
    opened = EntrySpool.open(folder / "kept.entries.sqlite")
    with SyncedStore.open(f"sqlite:///{tmp_path / 'dq.sqlite3'}", qdrant_path=str(tmp_path / "qdrant")) as store:
        result = store.sync("c", opened, HashingEmbedder())
        assert result.inserted == 5
        assert store.verify("c").in_sync
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["dq.sqlite3"]  # no stray file where the path was cut


def test_a_write_step_that_loaded_its_spool_survives_a_newer_parse_deleting_it(tmp_path: Path) -> None:
    """defs/io.py: "a step that already opened an earlier file keeps reading it (POSIX)". It does not:
    `EntrySpool.open` holds a connection, but `plan_sync` (and `new_contents`) ATTACH the file by its
    path. Two runs of one partition (the sensor and a manual run, or a retry beside a new run): run B's
    parse step deletes run A's spool after A's write step loaded its input, and A fails with
    `sqlite3.OperationalError: unable to open database` (not a DqError: no retry classification)."""
    import os

    from dq_pipeline.catalog import Entry, EntrySpool

    spool = EntrySpool.of([Entry(f"k{i}", "column", f"text {i}") for i in range(5)])
    spool.move_to(tmp_path / "a.entries.sqlite")
    loaded = pickle.loads(pickle.dumps(EntrySpool.open(tmp_path / "a.entries.sqlite")))  # run A's write step loads its input
    assert len(loaded) == 5
    os.unlink(tmp_path / "a.entries.sqlite")  # run B's parse output of the same partition deletes the earlier file
    assert len(list(loaded)) == 5  # the open connection still reads it
    with SyncedStore.open(f"sqlite:///{tmp_path / 'dq.sqlite3'}", qdrant_path=str(tmp_path / "qdrant")) as store:
        assert store.sync("c", loaded, HashingEmbedder()).inserted == 5


@pytest.mark.slow
def test_a_killed_process_leaves_no_entry_spool_behind_after_the_next_sync(tmp_path: Path) -> None:
    """A spool is deleted by a finalizer, and a plan by `close`: a SIGKILL (OOM killer, the crash
    test's kills) runs neither. Measured with `dq-pipeline sync` killed mid-write on 30k entries:
    the plan file and the ephemeral instance's kept spool stay in TMPDIR after a successful rerun."""
    import os
    import subprocess
    import sys

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    killed = subprocess.run(
        [sys.executable, "-c", "import os, signal\nfrom dq_pipeline.catalog import Entry, EntrySpool\n"
         "s = EntrySpool.of([Entry(f'k{i}', 'column', 't') for i in range(3000)])\nos.kill(os.getpid(), signal.SIGKILL)"],
        env=env,
    )
    assert killed.returncode == -9
    assert [p.name.startswith("dq_scratch_entries_") for p in scratch.iterdir()] == [True]
    later = subprocess.run(
        [sys.executable, "-c", "from dq_pipeline.catalog import Entry\nfrom dq_pipeline.sync import SyncedStore\n"
         "from dq_pipeline.embedding import HashingEmbedder\n"
         f"with SyncedStore.open('sqlite:///{tmp_path / 'dq.sqlite3'}', qdrant_path='{tmp_path / 'qdrant'}') as store:\n"
         "    assert store.sync('c', [Entry('a', 'column', 'x')], HashingEmbedder()).inserted == 1"],
        env=env,
    )
    assert later.returncode == 0
    assert list(scratch.iterdir()) == []  # the next sync swept what the killed one left
