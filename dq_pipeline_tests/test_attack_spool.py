"""Attacks on entries on disk (catalog/spool.py, catalog/builder.py, sync/plan.py, defs/io.py).

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
