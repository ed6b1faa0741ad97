"""Adversarial review of b16b1b1 (a parse's circumstances in the source digest; run outcomes folded
by request tag).

Each test reproduced one defect (it failed on b16b1b1 and passes since the fix): real sensor ticks (`evaluate_tick` on
`instance_for_test`), real runs (`execute_in_process`), SQLite + embedded Qdrant, the hashing
embedder. Mocks only inject faults (a denied path, a file moved away and back during a parse) or
stand in for the daemon's run-key bookkeeping (`_daemon_would_launch`).
"""

import shutil
import time
from pathlib import Path

import pytest
from dagster import DagsterRunStatus
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG
from dagster._core.test_utils import create_run_for_test
from sqlalchemy import create_engine, text

from dq_pipeline import catalog as catalog_module
from dq_pipeline.catalog import read_catalog
from dq_pipeline.defs import sensors

from .conftest import FIXTURES
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

NEW_ROW = "orders,coupon,column,varchar(16),Coupon code.,,,,false\n"
SENSOR_NAME = "catalog_folder_sensor"


def _later(monkeypatch, seconds: float) -> None:
    monkeypatch.setattr(sensors, "clock", lambda: time.time() + seconds)


def _launch_as_daemon(h: Harness, request):
    """Launch a request with the tags the sensor daemon adds (run key, sensor name)."""
    job = h.defs.resolve_job_def(request.job_name)
    return job.execute_in_process(
        run_config=request.run_config or None,
        partition_key=request.partition_key,
        tags={**request.tags, RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: SENSOR_NAME},
        instance=h.instance,
        raise_on_error=False,
    )


def _daemon_would_launch(h: Harness, request) -> bool:
    """The daemon's run-key check (dagster/_daemon/sensor.py fetch_existing_runs and
    _get_or_create_sensor_run): a request whose run key already has a run of this sensor that is
    not NOT_STARTED is skipped ("already completed with run keys")."""
    from dagster import RunsFilter

    for run in h.instance.get_runs(RunsFilter(tags={RUN_KEY_TAG: request.run_key})):
        if run.tags.get(SENSOR_NAME_TAG) == SENSOR_NAME and run.status != DagsterRunStatus.NOT_STARTED:
            return False
    return True


# --- A. a stale parse is requested again under the run key of the run that failed ------------------


@SQLITE
def test_stale_source_retry_reuses_the_failed_run_key_and_is_never_launched(
    harness: Harness, monkeypatch, tmp_path: Path
) -> None:
    """After a StaleSource failure the sensor resets `attempts` to 0 and asks again at once, but the
    run key is `<id>:<fp>@<generation>.<attempts>`: the very key of the run that just failed. The
    daemon skips a request whose run key already has a run, so the catalog is never synced again
    (until its bytes change), and each tick folds that same failed run in again (it carries the
    request tag the row now holds once more), logging "requesting it again" every 30 s."""
    orders = harness.settings.catalog_dir / "sales" / "orders.csv"
    orders.write_text(orders.read_text(encoding="utf-8") + NEW_ROW, encoding="utf-8")
    (request,) = harness.tick().run_requests

    from dq_pipeline.defs import assets

    def flapping(folder, catalog_id):  # rsync / an editor: the file moved away and back during the parse
        shutil.move(orders, tmp_path / "orders.csv")
        try:
            return read_catalog(folder, catalog_id)
        finally:
            shutil.move(tmp_path / "orders.csv", orders)

    monkeypatch.setattr(assets, "read_catalog", flapping)
    result = _launch_as_daemon(harness, request)
    monkeypatch.setattr(assets, "read_catalog", read_catalog)
    assert not result.success
    assert sensors.classify_failure(sensors.run_step_failures(harness.instance, result.run_id))[1] == "StaleSource"

    for _ in range(3):  # a few ticks: the catalog must get a run the daemon will launch
        data = harness.tick()
        again = [r for r in data.run_requests if r.tags["dq/catalog"] == "sales/orders"]
        if again and _daemon_would_launch(harness, again[0]):
            break
    else:
        pytest.fail(
            f"sales/orders re-requested only under run key {request.run_key!r}, which the daemon skips "
            "(a run with that key exists): the stale parse is never retried"
        )


# --- B. a manifest rewritten in place: the sensor's digest of catalog.json goes stale ---------------


def _dbt_project(h: Harness) -> Path:
    project = h.settings.catalog_dir / "dbt"
    project.mkdir()
    shutil.copy(FIXTURES / "dbt" / "hubspot" / "catalog.json", project / "catalog.json")
    shutil.copy(FIXTURES / "dbt" / "hubspot" / "manifest.json", project / "manifest.json")
    h.launch_all(h.tick())
    assert not h.tick().run_requests
    assert _run_check(h).passed
    return project


@SQLITE
def test_manifest_rewritten_in_place_as_other_json_loops_successful_runs_of_catalog_json(harness: Harness) -> None:
    """catalog.json's digest now depends on whether manifest.json beside it is a manifest, but the
    sensor re-hashes catalog.json only when its own stamp or its folder's mtime changes; rewriting
    manifest.json in place (dbt, an editor, `cp` onto it) changes neither. The manifest no longer
    reads catalog.json as a companion, so catalog.json's fingerprint changes and it is synced
    (with the stale cached digest in the sensor's row); the run commits the true digest, which
    differs from the row's, so every following tick requests catalog.json again: an endless loop
    of runs that succeed while the sensor still says "behind"."""
    project = _dbt_project(harness)
    manifest = project / "manifest.json"
    with open(manifest, "r+b") as handle:  # in place: same inode, the folder's mtime unchanged
        handle.write(b'[{"table": "notes", "description": "Not a dbt artifact any more."}]\n')
        handle.truncate()
    data = harness.tick()
    assert "dbt/catalog" in requested(data), data.skip_message
    for request in data.run_requests:
        harness.launch(request)
    for _attempt in range(3):
        data = harness.tick()
        if "dbt/catalog" not in requested(data):
            break
        assert harness.launch([r for r in data.run_requests if r.tags["dq/catalog"] == "dbt/catalog"][0]).success
    else:
        pytest.fail("dbt/catalog requested on every tick although each of its runs succeeded (stale digest in the sensor)")
    assert _run_check(harness).passed


@SQLITE
def test_manifest_becoming_a_manifest_in_place_leaves_the_check_red_for_good(harness: Harness) -> None:
    """The other direction: a JSON beside catalog.json named manifest.json becomes a dbt manifest in
    place. The run syncs catalog.json to nothing (correct) and commits the new digest, the sensor
    keeps its stale digest; sensor and check disagree about dbt/catalog from then on."""
    project = harness.settings.catalog_dir / "dbt"
    project.mkdir()
    shutil.copy(FIXTURES / "dbt" / "hubspot" / "catalog.json", project / "catalog.json")
    manifest = project / "manifest.json"
    manifest.write_text('[{"table": "notes", "description": "Not a dbt artifact yet."}]\n', encoding="utf-8")
    harness.launch_all(harness.tick())
    assert not harness.tick().run_requests and _run_check(harness).passed
    real = (FIXTURES / "dbt" / "hubspot" / "manifest.json").read_bytes()
    with open(manifest, "r+b") as handle:  # in place
        handle.write(real)
        handle.truncate()
    for _ in range(4):
        data = harness.tick()
        if not data.run_requests:
            break
        for request in data.run_requests:
            harness.launch(request)
    else:
        pytest.fail(f"the sensor never settles: requests {requested(data)} on every tick")
    assert harness.stored("dbt/catalog") == (0, 0)
    check = _run_check(harness)
    assert check.passed, f"sensor quiet, check red: {check.description}"


# --- C. .dq-formats.yaml: an edit seen while a matched file could not be read is lost --------------


@SQLITE
def test_override_edit_is_lost_for_a_file_unreadable_on_that_tick(harness: Harness) -> None:
    """The tick that sees .dq-formats.yaml change stores the new text in dq_sensor_meta at once, even
    for the matched files it could not describe (unreadable now: 'looking again next tick'). Next
    tick the text equals the stored one, the file's stamp is unchanged: it takes the plain path with
    its old digest. The new column mapping is never applied; the check says behind forever."""
    folder = harness.settings.catalog_dir
    orders = folder / "sales" / "orders.csv"
    (folder / ".dq-formats.yaml").write_text(
        '"sales/orders.csv":\n  format: csv\n  columns: {description: owner}\n', encoding="utf-8"
    )
    with denied(orders):  # an NFS hiccup on exactly that tick
        data = harness.tick()
    assert "cannot be read now" in data.skip_message
    data = harness.tick()  # readable again, nothing else changed
    assert requested(data) == {"sales/orders": "sync_catalog"}, (
        f"the override edit was never applied to sales/orders: {data.skip_message}; "
        f"check passed={_run_check(harness).passed}"
    )


def as_described_by_an_older_version(h: Harness) -> None:
    """The sensor's rows as an older version left them: another regime in each stamp."""
    engine = create_engine(h.settings.database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE dq_sensor_files SET stamp = REPLACE(stamp, '|regime:', '|old-regime:')"))
    engine.dispose()


# --- D. upgrade: a file matched by .dq-formats.yaml gets a new digest the sensor never computes -----


@SQLITE
def test_upgrade_leaves_override_matched_catalog_red_in_the_check_while_the_sensor_is_quiet(
    harness: Harness, monkeypatch
) -> None:
    """Before b16b1b1 every digest was the sha256 of the file's bytes (and companions). A file a
    .dq-formats.yaml pattern matches now has another digest, but the sensor's stamp cache keeps the
    old one (the plain path never re-hashes an unchanged file), so it requests nothing, while
    index_matches_source recomputes the digest and reports the catalog behind -- forever, until
    the file or the override file is touched."""
    folder = harness.settings.catalog_dir
    monkeypatch.setattr(catalog_module, "_parse_circumstances", lambda file: "")  # the digest of the old version
    (folder / ".dq-formats.yaml").write_text('"sales/*.csv": csv\n', encoding="utf-8")  # what detection gives anyway
    harness.tick()  # old version: the override changes no digest and no format, nothing to do
    assert _run_check(harness).passed
    as_described_by_an_older_version(harness)
    monkeypatch.undo()  # the upgrade
    data = harness.tick()
    check = _run_check(harness)
    assert check.passed or requested(data) == {"sales/orders": "sync_catalog"}, (
        f"sensor requests nothing ({data.skip_message}) while the check says: {check.description}"
    )


# --- E. a run the daemon created but never launched (NOT_STARTED) blocks its catalog for good -------


@SQLITE
def test_not_started_run_blocks_its_catalog_forever(harness: Harness) -> None:
    """The daemon creates a run, then launches it; a daemon that dies in between leaves it NOT_STARTED
    and launches it only when the sensor requests the same run key again (_get_or_create_sensor_run).
    The sensor counts NOT_STARTED as in flight and never requests the catalog: it waits forever."""
    orders = harness.settings.catalog_dir / "sales" / "orders.csv"
    orders.write_text(orders.read_text(encoding="utf-8") + NEW_ROW, encoding="utf-8")
    (request,) = harness.tick().run_requests
    create_run_for_test(
        harness.instance,
        job_name=request.job_name,
        status=DagsterRunStatus.NOT_STARTED,
        tags={**request.tags, RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: SENSOR_NAME},
    )
    for _ in range(3):
        data = harness.tick()
    assert requested(data) == {"sales/orders": "sync_catalog"}, data.skip_message


# --- F. upgrade on PostgreSQL: two processes adding the `requested` column at once ------------------


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_processes_upgrading_the_sensor_table_at_once_one_fails(harness: Harness) -> None:
    """`_create_tables` inspects the columns, then ALTERs without IF NOT EXISTS and outside any lock:
    the first sensor tick after the upgrade and an index_matches_source check (`load_done`), or two
    code servers, both see the column missing; on PostgreSQL both ALTERs queue behind any open
    transaction on the table, the second then fails with DuplicateColumn."""
    import threading

    from sqlalchemy import create_engine, text

    from dq_pipeline.defs.folder_scan import _create_tables

    engine = create_engine(harness.settings.database_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE dq_sensor_files DROP COLUMN requested"))  # the table of the old version
    holder = engine.connect()
    holder.begin()
    holder.execute(text("SELECT count(*) FROM dq_sensor_files"))  # a tick or check reading the table
    errors: list[BaseException] = []

    def upgrade() -> None:
        own = create_engine(harness.settings.database_url)
        try:
            _create_tables(own)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=upgrade) for _ in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.time() + 20
    with engine.connect() as probe:
        while time.time() < deadline:
            waiting = probe.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE dq_sensor_files%'")
            ).scalar()
            if waiting == 2:
                break
            time.sleep(0.05)
    holder.rollback()
    holder.close()
    for thread in threads:
        thread.join(30)
    engine.dispose()
    assert not errors, f"an upgrading process failed: {errors[0]!r}"
