"""The catalog folder sensor fails safe (issue 11): removal needs positive evidence, an unreadable
file is skipped, failed syncs and removals are driven again, companions and format overrides
re-sync what they change, a run never loses its partition, and only changed files are hashed.

Ticks go through `evaluate_tick` on a real instance (`instance_for_test`), runs through
`execute_in_process` with the tags the daemon would give them, against SQLite (and PostgreSQL for
the main flow) and embedded Qdrant. Unreadable folders and files are injected by failing
`os.scandir` / `open` for chosen paths: the tests run as root, whom `chmod 000` does not stop.
"""

import builtins
import io
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, build_sensor_context, instance_for_test
from dagster._core.test_utils import create_run_for_test
from qdrant_client import QdrantClient
from sqlalchemy import create_engine

from dq_pipeline.definitions import build_definitions, resources_for
from dq_pipeline.defs import sensors
from dq_pipeline.defs.folder_scan import sensor_files, sensor_meta
from dq_pipeline.defs.partitions import catalog_partitions
from dq_pipeline.defs.source_check import index_matches_source
from dq_pipeline.settings import Settings
from dq_pipeline.sync import SyncedStore

from .conftest import FIXTURES

pytestmark = [pytest.mark.dagster]

HASHING = "hashing:32"
SAMPLES = {"crm/customers", "data_quality/rules", "finance/ledger", "marketing/events", "sales/orders"}
RUNBOOK = (
    "table,column,kind,type,description\n"
    "incidents,,table,,One row per data incident.\n"
    "incidents,incident_id,column,bigint,Primary key of the incident.\n"
    "incidents,severity,column,varchar(8),Severity from sev1 to sev4.\n"
)


@pytest.fixture
def settings(database_url: str, tmp_path: Path, catalog_dir: Path) -> Settings:
    if not database_url.startswith("sqlite"):
        # The PostgreSQL database is shared by the session and its reset drops the record's tables,
        # not the sensor's: a test must not start from the previous test's per-file state.
        engine = create_engine(database_url)
        try:
            for table in (sensor_files, sensor_meta):
                table.drop(engine, checkfirst=True)
        finally:
            engine.dispose()
    return Settings.from_env(
        env={}, database_url=database_url, data_dir=str(tmp_path / "data"), catalog_dir=str(catalog_dir), embedding_model=HASHING
    )


@pytest.fixture
def instance():
    with instance_for_test() as inst:
        yield inst


class Harness:
    """A tick, and the daemon's part: apply partition requests, launch the requested runs."""

    def __init__(self, settings: Settings, instance: DagsterInstance):
        self.settings = settings
        self.instance = instance
        self.defs = build_definitions(resources_for(settings))
        self.cursor: str | None = None

    def tick(self):
        sensor = self.defs.resolve_sensor_def("catalog_folder_sensor")
        with build_sensor_context(
            instance_ref=self.instance.get_ref(), cursor=self.cursor, resources=self.defs.resources, definitions=self.defs
        ) as context:
            data = sensor.evaluate_tick(context)
        self.cursor = data.cursor
        for request in data.dynamic_partitions_requests or []:
            if type(request).__name__.startswith("Add"):
                self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            else:
                for key in request.partition_keys:
                    self.instance.delete_dynamic_partition(request.partitions_def_name, key)
        return data

    def launch(self, request, raise_on_error: bool = False):
        job = self.defs.resolve_job_def(request.job_name)
        return job.execute_in_process(
            run_config=request.run_config or None,
            partition_key=request.partition_key,
            tags=request.tags,
            instance=self.instance,
            raise_on_error=raise_on_error,
        )

    def launch_all(self, data) -> None:
        for request in data.run_requests:
            assert self.launch(request).success, request

    def stored(self, catalog_id: str) -> tuple[int, int]:
        with SyncedStore.open(self.settings.database_url, qdrant_path=self.settings.qdrant_path) as store:
            v = store.verify(catalog_id)
        assert v.in_sync
        return v.pg, v.qdrant

    def partitions(self) -> set[str]:
        return set(self.instance.get_dynamic_partitions(catalog_partitions.name))


def requested(data) -> dict[str, str]:
    """{catalog id: job} of a tick's run requests."""
    return {r.tags["dq/catalog"]: r.job_name for r in data.run_requests}


@pytest.fixture
def harness(settings: Settings, instance: DagsterInstance) -> Harness:
    h = Harness(settings, instance)
    first = h.tick()
    assert requested(first) == dict.fromkeys(SAMPLES, "sync_catalog")
    h.launch_all(first)
    settled = h.tick()
    assert not settled.run_requests and not settled.dynamic_partitions_requests, settled.skip_message
    return h


@contextmanager
def denied(*paths: Path):
    """Fault injection: `os.scandir` and `open` fail with PermissionError on these paths (what chmod 000
    does to anyone but root), as rglob, the walk and the hashing see it."""
    denied_paths = {str(p.resolve()) for p in paths}
    real_scandir, real_open, real_io_open = os.scandir, builtins.open, io.open

    def check(path) -> None:
        if isinstance(path, (str, os.PathLike)) and str(Path(os.fspath(path)).resolve()) in denied_paths:
            raise PermissionError(13, "Permission denied", os.fspath(path))

    def scandir(path="."):
        check(path)
        return real_scandir(path)

    def open_(file, *args, **kwargs):
        check(file)
        return real_open(file, *args, **kwargs)

    def io_open(file, *args, **kwargs):
        check(file)
        return real_io_open(file, *args, **kwargs)

    os.scandir, builtins.open, io.open = scandir, open_, io_open
    try:
        yield
    finally:
        os.scandir, builtins.open, io.open = real_scandir, real_open, real_io_open


# --- 1. no mass removal on an unreadable or empty folder; bulk removals held back -------------------


def test_unreadable_or_empty_folder_removes_nothing(harness: Harness, tmp_path: Path, monkeypatch) -> None:
    folder = harness.settings.catalog_dir
    with denied(folder):  # the whole folder unreadable
        data = harness.tick()
    assert not data.run_requests and not data.dynamic_partitions_requests
    assert "cannot be read" in data.skip_message and "removing nothing" in data.skip_message

    with denied(folder / "sales"):  # one subfolder unreadable: its catalog is not "removed"
        data = harness.tick()
    assert not data.run_requests and not data.dynamic_partitions_requests

    parked = tmp_path / "parked"
    shutil.move(folder, parked)
    folder.mkdir()  # an existing, empty folder: what an unmounted mount point looks like
    data = harness.tick()
    assert not data.run_requests and "is empty but 5 catalogs are recorded" in data.skip_message
    folder.rmdir()
    shutil.move(parked, folder)
    assert not harness.tick().run_requests

    (folder / "crm" / "customers.yaml").unlink()
    (folder / "finance" / "ledger.json").unlink()
    data = harness.tick()  # 2 of 5 in one tick: beyond the default share (25%, at least 1)
    assert not data.run_requests and "bulk removal held back: 2 of 5" in data.skip_message
    assert harness.partitions() == SAMPLES
    monkeypatch.setenv(sensors.MAX_REMOVAL_SHARE_ENV, "0.5")
    data = harness.tick()
    assert requested(data) == {"crm/customers": "remove_catalog", "finance/ledger": "remove_catalog"}
    harness.launch_all(data)
    assert harness.stored("crm/customers") == (0, 0)
    data = harness.tick()  # removed from the record: now the partitions go
    assert not data.run_requests
    assert harness.partitions() == SAMPLES - {"crm/customers", "finance/ledger"}


# --- 2. one unreadable file does not stop the sensor -----------------------------------------------


def test_an_unreadable_file_is_skipped_and_the_others_followed(harness: Harness) -> None:
    folder = harness.settings.catalog_dir
    (folder / "ops").mkdir()
    (folder / "ops" / "runbook.csv").write_text(RUNBOOK, encoding="utf-8")
    orders = folder / "sales" / "orders.csv"
    orders.write_text(orders.read_text(encoding="utf-8") + "\n", encoding="utf-8")  # changed, and unreadable
    with denied(orders):
        data = harness.tick()
    assert requested(data) == {"ops/runbook": "sync_catalog"}  # followed; sales/orders neither synced nor removed
    harness.launch_all(data)
    data = harness.tick()  # readable again: its change is seen
    assert requested(data) == {"sales/orders": "sync_catalog"}


# --- 3 and 4. failed removals and failed syncs are driven again; the check says "behind" -----------


def _later(monkeypatch, seconds: float) -> None:
    monkeypatch.setattr(sensors, "clock", lambda: time.time() + seconds)


def test_failed_sync_and_failed_removal_are_requested_again(harness: Harness, monkeypatch) -> None:
    folder = harness.settings.catalog_dir
    orders = folder / "sales" / "orders.csv"
    orders.write_text(orders.read_text(encoding="utf-8") + "orders,coupon,column,varchar(16),Coupon code.,,,,false\n", encoding="utf-8")
    rows_before = harness.stored("sales/orders")[0]
    data = harness.tick()
    (request,) = data.run_requests
    holder = QdrantClient(path=harness.settings.qdrant_path)  # another process holds embedded Qdrant
    try:
        assert not harness.launch(request).success
    finally:
        holder.close()
    check = _run_check(harness)
    assert not check.passed and check.metadata["behind"].value == 1  # the stores agree, but are behind

    waiting = harness.tick()  # transient: retried after a backoff, not at once
    assert not waiting.run_requests and "waiting" in waiting.skip_message
    _later(monkeypatch, sensors.RETRY_BASE_S + 1)
    again = harness.tick()
    (retry,) = again.run_requests
    assert retry.partition_key == "sales/orders" and retry.run_key != request.run_key
    harness.launch_all(again)
    assert harness.stored("sales/orders")[0] == rows_before + 1
    assert not harness.tick().run_requests
    assert _run_check(harness).passed

    _later(monkeypatch, 0)  # the clock back to now
    orders.unlink()
    data = harness.tick()
    (removal,) = data.run_requests
    assert removal.job_name == "remove_catalog"
    assert "sales/orders" in harness.partitions()  # kept until the catalog is gone from the record
    holder = QdrantClient(path=harness.settings.qdrant_path)
    try:
        assert not harness.launch(removal).success
    finally:
        holder.close()
    data = harness.tick()  # folds the failure in: the backoff counts from the failure
    assert not data.run_requests, data.skip_message
    _later(monkeypatch, sensors.RETRY_BASE_S + 1)
    data = harness.tick()
    (removal_again,) = data.run_requests
    assert removal_again.job_name == "remove_catalog" and removal_again.run_key != removal.run_key
    harness.launch_all(data)
    assert harness.stored("sales/orders") == (0, 0)
    harness.tick()
    assert "sales/orders" not in harness.partitions()
    assert _run_check(harness).passed


def _run_check(harness: Harness):
    from dagster import build_asset_check_context

    resources = harness.defs.resources
    return index_matches_source(
        build_asset_check_context(), catalog_folder=resources["catalog_folder"], store=resources["store"]
    )


# --- 5 and 6. companions both ways; .dq-formats.yaml ------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_dbt_catalog_json_is_resynced_when_a_manifest_appears_or_goes(harness: Harness) -> None:
    project = harness.settings.catalog_dir / "dbt"
    project.mkdir()
    shutil.copy(FIXTURES / "dbt" / "hubspot" / "catalog.json", project / "catalog.json")
    data = harness.tick()
    assert requested(data) == {"dbt/catalog": "sync_catalog"}
    harness.launch_all(data)
    alone = harness.stored("dbt/catalog")[0]
    assert alone > 0 and not harness.tick().run_requests

    shutil.copy(FIXTURES / "dbt" / "hubspot" / "manifest.json", project / "manifest.json")
    data = harness.tick()
    assert requested(data) == {"dbt/manifest": "sync_catalog", "dbt/catalog": "sync_catalog"}
    harness.launch_all(data)
    assert harness.stored("dbt/catalog") == (0, 0)  # no duplicates: the manifest's entries carry it
    assert not harness.tick().run_requests

    (project / "manifest.json").unlink()
    data = harness.tick()
    assert requested(data) == {"dbt/catalog": "sync_catalog", "dbt/manifest": "remove_catalog"}
    harness.launch_all(data)
    assert harness.stored("dbt/catalog")[0] == alone


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_editing_format_overrides_resyncs_the_files_it_matches(harness: Harness) -> None:
    folder = harness.settings.catalog_dir
    (folder / ".dq-formats.yaml").write_text('"finance/*.json": "no_such_format"\n', encoding="utf-8")
    data = harness.tick()
    assert requested(data) == {"finance/ledger": "sync_catalog"}  # only the file the pattern matches
    assert not harness.launch(data.run_requests[0]).success  # refused: unknown format (terminal)
    assert not harness.tick().run_requests  # terminal: not requested again until something changes
    (folder / ".dq-formats.yaml").write_text("{}\n", encoding="utf-8")
    data = harness.tick()
    assert requested(data) == {"finance/ledger": "sync_catalog"}
    harness.launch_all(data)


# --- 9. a run in flight never loses its partition ---------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_removal_waits_for_a_sync_in_flight_and_keeps_its_partition(harness: Harness) -> None:
    run = create_run_for_test(
        harness.instance,
        job_name="sync_catalog",
        status=DagsterRunStatus.STARTED,
        tags={"dq/catalog": "sales/orders", "dagster/partition": "sales/orders"},
    )
    (harness.settings.catalog_dir / "sales" / "orders.csv").unlink()
    data = harness.tick()
    assert not data.run_requests and not data.dynamic_partitions_requests
    assert "waiting" in data.skip_message and "sales/orders" in harness.partitions()
    harness.instance.report_run_failed(run)
    data = harness.tick()
    assert requested(data) == {"sales/orders": "remove_catalog"}
    assert "sales/orders" in harness.partitions()
    harness.launch_all(data)
    harness.tick()
    assert "sales/orders" not in harness.partitions()


# --- 10. hash only what changed; a cursor of a few bytes --------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_only_changed_files_are_hashed_and_the_cursor_stays_small(harness: Harness) -> None:
    data = harness.tick()
    assert "5 catalog files watched, 0 hashed" in data.skip_message
    assert len(harness.cursor) < 100
    ledger = harness.settings.catalog_dir / "finance" / "ledger.json"
    st = ledger.stat()
    os.utime(ledger, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched, same bytes
    data = harness.tick()
    assert "1 hashed" in data.skip_message and not data.run_requests


def test_the_sensors_discovery_from_its_walk_equals_discover(tmp_path: Path) -> None:
    root = tmp_path / "catalogs"
    shutil.copytree(Path(__file__).resolve().parent.parent / "catalogs", root)
    (root / "dup.csv").write_text(RUNBOOK, encoding="utf-8")
    (root / "dup.json").write_text("[]", encoding="utf-8")
    for name in ("trio.yaml", "trio.csv", "trio.json"):  # three files, one id: each later one refused
        (root / name).write_text(RUNBOOK, encoding="utf-8")
    (root / "trio.yml").symlink_to(root / "sales" / "orders.csv")
    (root / "sub dir").mkdir()
    (root / "sub dir" / "x.csv").write_text(RUNBOOK, encoding="utf-8")
    (root / "sub").mkdir()
    (root / "sub" / "x.csv").write_text(RUNBOOK, encoding="utf-8")
    (root / "sub" / "x.CSV.json").write_text("[]", encoding="utf-8")
    (root / "sub" / "X.CSV").write_text(RUNBOOK, encoding="utf-8")
    (root / "sub" / "bad\nline.csv").write_text(RUNBOOK, encoding="utf-8")
    (root / "bad...name.csv").write_text(RUNBOOK, encoding="utf-8")
    (root / "notes.txt").write_text("not a catalog", encoding="utf-8")
    (root / ".hidden.csv").write_text(RUNBOOK, encoding="utf-8")
    (root / ".git").mkdir()
    (root / ".git" / "x.csv").write_text(RUNBOOK, encoding="utf-8")
    (root / "deep" / "er").mkdir(parents=True)
    (root / "deep" / "er" / "t.yaml").write_text("tables: []\n", encoding="utf-8")
    outside = tmp_path / "outside.csv"
    outside.write_text(RUNBOOK, encoding="utf-8")
    (root / "link_out.csv").symlink_to(outside)
    (root / "link_in.csv").symlink_to(root / "sales" / "orders.csv")
    (root / "broken.csv").symlink_to(root / "missing.csv")
    (root / "linked_dir").symlink_to(root / "sales", target_is_directory=True)

    from dq_pipeline.catalog import discover
    from dq_pipeline.defs.folder_scan import discover_scanned, scan_folder

    def view(found):
        return {cid: (f.display, str(f.path), str(f.error) if f.error else None) for cid, f in found.items()}

    expected = view(discover(root))
    assert view(discover_scanned(scan_folder(root))) == expected
    assert expected["dup"][2] and expected["link_out"][2] and expected["broken"][2] and "linked_dir/orders" not in expected
    assert "trio.yaml and trio.yml" in expected["trio"][2] and "sub/x" in expected and "sub/X" in expected
