"""Adversarial review of beacdcf (the fixes of test_attack_orchestration_2.py).

Each test reproduced one defect in a fix (it failed on beacdcf and passes since): real sensor ticks (`evaluate_tick`
on `instance_for_test`), real runs (`execute_in_process`), SQLite + embedded Qdrant, the hashing
embedder, PostgreSQL where named. Mocks only inject faults (a denied path) or stand in for the
old version of the code (its digest, its missing digest version).
"""

import re
import threading
import time

import pytest
from sqlalchemy import create_engine, text

from dq_pipeline import catalog as catalog_module

from .test_attack_orchestration_2 import as_described_by_an_older_version
from .test_sensors_folder import (  # noqa: F401  (fixtures)
    Harness,
    _run_check,
    denied,
    harness,
    instance,
    requested,
    settings,
)

pytestmark = [pytest.mark.dagster]
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _settle(h: Harness, ticks: int = 3):
    data = None
    for _ in range(ticks):
        data = h.tick()
        for request in data.run_requests:
            h.launch(request)
    return data


def _hashed(data) -> int:
    message = data.skip_message or ""
    found = re.search(r"(\d+) hashed", message)
    assert found, message
    return int(found.group(1))


# --- A. an override edit applied to some files, then taken back, while another was unreadable -------


@SQLITE
def test_override_edit_half_applied_then_taken_back_leaves_a_catalog_behind(harness: Harness) -> None:
    """The tick that sees an edit E1 with one matched file unreadable keeps the stored text E0, but it
    already described (and requested) the other files E1 matches under E1. When the text becomes E0
    again (the edit taken back, or any E2 that no longer names those files), the next tick compares
    E0 with E0 (or E2): nothing forced; the files described under E1 keep E1's digest in the sensor's
    row, and E1's commit. The sensor is quiet for good while the check says behind."""
    folder = harness.settings.catalog_dir
    overrides = folder / ".dq-formats.yaml"
    overrides.write_text('"sales/orders.csv": csv\n"crm/customers.yaml": yaml\n', encoding="utf-8")
    with denied(folder / "sales" / "orders.csv"):  # an NFS hiccup on exactly that tick
        data = harness.tick()
    assert requested(data) == {"crm/customers": "sync_catalog"}, data.skip_message
    harness.launch_all(data)  # crm/customers committed under E1
    overrides.unlink()  # the edit taken back (the text the sensor stored)
    data = _settle(harness)
    check = _run_check(harness)
    assert check.passed, f"sensor quiet ({data.skip_message}), check red: {check.description}"


# --- B. an override edit seen while the matched file's FOLDER could not be listed ---------------------


@SQLITE
def test_override_edit_is_lost_when_the_matched_files_folder_is_unreadable_on_that_tick(harness: Harness) -> None:
    """fix (3) keeps the edit unsettled only for files it could not *read*; a file in a folder the walk
    could not list is not in this tick's files at all, so it is neither forced nor unreadable, and the
    edit is stored as seen. Next tick the folder is readable, the text equals the stored one, the
    file's stamp is unchanged: it keeps its old digest, the new mapping is never applied."""
    folder = harness.settings.catalog_dir
    (folder / ".dq-formats.yaml").write_text(
        '"sales/orders.csv":\n  format: csv\n  columns: {description: owner}\n', encoding="utf-8"
    )
    with denied(folder / "sales"):  # the folder cannot be listed on exactly that tick
        data = harness.tick()
    assert "sales/orders" not in requested(data)
    data = harness.tick()  # readable again, nothing else changed
    assert requested(data) == {"sales/orders": "sync_catalog"}, (
        f"the override edit was never applied to sales/orders: {data.skip_message}; "
        f"check passed={_run_check(harness).passed}"
    )


# --- C. the upgrade's full re-describe misses the files of a folder unreadable on that tick ----------


@SQLITE
def test_upgrade_redescribe_skips_files_of_a_folder_unreadable_on_that_tick(harness: Harness, monkeypatch) -> None:
    """fix (4): `digest_version` is stored unless a file was unreadable; files of a folder the walk
    could not list are not files of the tick at all, so the version is stored although they were
    never described again. They keep the digest of the old version for good (the scenario of
    test_attack_orchestration_2 D, with one folder unlistable on the upgrade tick)."""
    folder = harness.settings.catalog_dir
    monkeypatch.setattr(catalog_module, "_parse_circumstances", lambda file: "")  # the digest of the old version
    (folder / ".dq-formats.yaml").write_text('"sales/*.csv": csv\n', encoding="utf-8")
    harness.tick()
    assert _run_check(harness).passed
    as_described_by_an_older_version(harness)
    monkeypatch.undo()  # the upgrade
    with denied(folder / "sales"):
        harness.tick()  # the upgrade tick: one folder cannot be listed
    data = harness.tick()
    check = _run_check(harness)
    assert check.passed or requested(data) == {"sales/orders": "sync_catalog"}, (
        f"sensor requests nothing ({data.skip_message}) while the check says: {check.description}"
    )


# --- D. one file that stays unreadable: every tick describes every file again ----------------------


@SQLITE
def test_one_unreadable_file_makes_every_tick_after_an_upgrade_hash_every_file(harness: Harness) -> None:
    """fix (4) + (3): after an upgrade (or any .dq-formats.yaml edit it cannot parse, or one matching
    `*`), the version is stored only once no file is unreadable. A file that stays unreadable (mode
    0600 of another user, a broken NFS inode: the tick already reports it as 'cannot be read now')
    keeps it unstored, so every tick hashes the whole folder again, forever: at 100,000 files every
    30 s tick reads every byte of the catalog folder."""
    as_described_by_an_older_version(harness)
    with denied(harness.settings.catalog_dir / "sales" / "orders.csv"):
        first = harness.tick()
        assert _hashed(first) == 4  # the upgrade: every readable file described again (expected once)
        later = [_hashed(harness.tick()) for _ in range(3)]
    assert later == [0, 0, 0], f"files hashed on each later tick with nothing changed: {later}"


# --- E. a fresh install: two processes creating the sensor's tables at once --------------------------


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_processes_creating_the_sensor_tables_at_once_one_fails(harness: Harness) -> None:
    """fix (6) made the ALTER tolerate a concurrent one, but `create_all(checkfirst=True)` right before
    it has the same race: on a fresh database the first tick and a check (`load_done`), or two code
    servers, both see no table and both CREATE it; on PostgreSQL the second waits for the first's
    transaction, then fails (UniqueViolation on pg_type / DuplicateTable)."""
    from dq_pipeline.defs.folder_scan import _create_tables, sensor_files, sensor_meta

    engine = create_engine(harness.settings.database_url)
    for table in (sensor_files, sensor_meta):
        table.drop(engine, checkfirst=True)  # a database the sensor never ran on
    holder = engine.connect()
    holder.begin()  # the other process, inside its create_all
    sensor_files.create(holder)
    sensor_meta.create(holder)
    errors: list[BaseException] = []

    def create() -> None:
        own = create_engine(harness.settings.database_url)
        try:
            _create_tables(own)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            own.dispose()

    thread = threading.Thread(target=create)
    thread.start()
    deadline = time.time() + 20
    with engine.connect() as probe:
        while time.time() < deadline:
            waiting = probe.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'CREATE TABLE%'")
            ).scalar()
            if waiting:
                break
            time.sleep(0.05)
    holder.commit()
    holder.close()
    thread.join(30)
    engine.dispose()
    assert not errors, f"a process creating the sensor's tables failed: {errors[0]!r}"


# --- F. a NOT_STARTED run of a version that is no longer wanted is never launched, yet holds on -------


@SQLITE
def test_orphaned_not_started_run_keeps_a_gone_catalogs_partition_and_row_forever(harness: Harness) -> None:
    """fix (5) lets a NOT_STARTED run launch by requesting its key again, but only while its key is
    still the one wanted. Once the file is gone (or changed) its key is never requested again, so the
    run stays NOT_STARTED for good, and `in_flight_catalogs` (which still counts NOT_STARTED) keeps
    the catalog's partition and state row from being forgotten, forever."""
    from dagster import DagsterRunStatus
    from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG
    from dagster._core.test_utils import create_run_for_test

    folder = harness.settings.catalog_dir
    extra = folder / "sales" / "returns.csv"
    extra.write_text((folder / "sales" / "orders.csv").read_text(encoding="utf-8"), encoding="utf-8")
    data = harness.tick()
    (request,) = [r for r in data.run_requests if r.tags["dq/catalog"] == "sales/returns"]
    create_run_for_test(  # the daemon created the run, then died before launching it
        harness.instance,
        job_name=request.job_name,
        status=DagsterRunStatus.NOT_STARTED,
        tags={**request.tags, RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: "catalog_folder_sensor"},
    )
    extra.unlink()  # never synced, now gone: nothing to remove
    for _ in range(3):
        data = harness.tick()
    assert "sales/returns" not in harness.partitions(), (
        f"the partition of a catalog with no file and no record is kept for a run nobody will launch: {data.skip_message}"
    )
