"""The production layout of deploy/README.md, run for real: a code server (`dagster api grpc`), the
daemon (`dagster-daemon run`) and the webserver (`dagster-webserver`), each a process of its own,
on a Dagster instance whose dagster.yaml is deploy/dagster.yaml (storage in a PostgreSQL database of
the test's own, the queued run coordinator with its per-catalog limits), the system of record on
PostgreSQL and Qdrant over HTTP (the fake Qdrant REST server).

What it shows: a catalog file dropped into the folder is picked up by the catalog sensor's next
tick, the daemon launches the queued run, the run succeeds and both stores agree; a run launched
from the UI (GraphQL) while a run of the same catalog is in progress waits in the queue, the file
changes while it waits, and the catalog ends in sync with the file's latest content, never with
two of its runs in progress at once.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._grpc.client import DagsterGrpcClient

from dq_pipeline.catalog import current_source_digest, discover, parse_catalog
from dq_pipeline.defs.jobs import CATALOG_TAG, SYNC_JOB, TRIGGER_TAG
from dq_pipeline.defs.sensors import FOLDER_SENSOR, PARTITION_TAG, classify_failure, run_step_failures
from dq_pipeline.sync import SyncedStore, committed_source_digests, open_record

from .conftest import SAMPLE_CATALOGS, reset_postgres
from .dagster_layout import (
    BIN,
    LOCATION,
    REPOSITORY,
    Layout,
    dagster_database,
    dagster_home,
    free_port,
    graphql,
    graphql_or_none,
    process_env,
    reachable,
    workspace,
)
from .fake_qdrant import FakeQdrant

pytestmark = [pytest.mark.dagster, pytest.mark.postgres]

CATALOG = "sales/orders"
HASHING = "hashing:32"  # a fast stand-in model: what is tested is the layout, not the vectors
NEW_ROW = "orders,coupon_code,column,text,Code of the coupon applied,,,,false\n"
IN_PROGRESS = {DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING}
ENDED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}

WORKSPACE_QUERY = """
{ workspaceOrError { __typename
    ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename
            ... on RepositoryLocation { repositories { name jobs { name } sensors { name sensorState { status } } } }
            ... on PythonError { message } } } }
    ... on PythonError { message } } }
"""
TICKS_QUERY = """
query ($sensor: SensorSelector!) { sensorOrError(sensorSelector: $sensor) { __typename
    ... on Sensor { sensorState { status ticks(limit: 50) { status timestamp skipReason runIds error { message } } } } } }
"""
LAUNCH_MUTATION = """
mutation ($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } } } }
"""
SENSOR = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": "catalog_folder_sensor"}


@dataclass
class OneRunPerCatalog:
    """Reads the catalog's runs from the instance at every poll: two in progress at once is a
    violation; a run seen queued while another was in progress is one the limit held back."""

    instance: DagsterInstance
    catalog_id: str
    violations: list[str] = field(default_factory=list)
    held: set[tuple[str, str]] = field(default_factory=set)  # (queued run, the run in progress then)
    samples: int = 0

    def runs(self):
        return self.instance.get_runs(RunsFilter(tags={PARTITION_TAG: self.catalog_id}))

    def sample(self) -> None:
        runs = self.runs()
        self.samples += 1
        running = [r for r in runs if r.status in IN_PROGRESS]
        if len(running) > 1:
            self.violations.append(", ".join(f"{r.run_id} {r.status.value}" for r in running))
        for queued in (r for r in runs if r.status == DagsterRunStatus.QUEUED):
            for other in running:
                self.held.add((queued.run_id, other.run_id))


def _answers(client: DagsterGrpcClient) -> bool:
    try:
        client.ping("layout")
    except Exception:  # noqa: BLE001 - not serving yet, whatever the reason
        return False
    return True


def _ticks(port: int) -> list[dict]:
    data = graphql(port, TICKS_QUERY, {"sensor": SENSOR})["sensorOrError"]
    assert data["__typename"] == "Sensor", data
    return data["sensorState"]["ticks"]


def _outcome(instance: DagsterInstance, run_id: str) -> str:
    """SUCCESS, or FAILURE with the error kind its steps recorded (the sensor's own reading)."""
    run = instance.get_run_by_id(run_id)
    assert run is not None
    if run.status != DagsterRunStatus.FAILURE:
        return run.status.value
    return f"FAILURE ({classify_failure(run_step_failures(instance, run_id))[1]})"


def _run_failure_detail(instance: DagsterInstance, run_id: str) -> str:
    return "\n".join(
        f"  {e.dagster_event.step_key}: {e.dagster_event.step_failure_data.error.to_string() if e.dagster_event.step_failure_data and e.dagster_event.step_failure_data.error else e.message}"
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.dagster_event.is_failure
    )


def test_the_deploy_layout_syncs_a_dropped_file_and_runs_one_sync_per_catalog_at_a_time(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    began = time.monotonic()
    phases: dict[str, float] = {}
    reset_postgres(postgres_url)
    catalogs = tmp_path / "catalogs"
    catalogs.mkdir()
    with dagster_database(postgres_url) as dagster_pg, FakeQdrant() as qdrant:
        home = dagster_home(tmp_path)
        values = {
            **dagster_pg,
            "DAGSTER_HOME": str(home),
            "DQ_DATABASE_URL": postgres_url,
            "DQ_QDRANT_URL": qdrant.url,
            "DQ_CATALOG_DIR": str(catalogs),
            "DQ_EMBEDDING_MODEL": HASHING,
            "DQ_DATA_DIR": str(tmp_path / "data"),
        }
        for name, value in values.items():  # this process reads the same instance (deploy/dagster.yaml reads DAGSTER_PG_*)
            monkeypatch.setenv(name, value)
        grpc_port, web_port = free_port(), free_port()
        workspace_yaml = workspace(tmp_path, grpc_port)
        with Layout(tmp_path, process_env(values)) as layout, DagsterInstance.from_config(str(home)) as instance:
            layout.start("code_server", BIN / "dagster", "api", "grpc", "-m", "dq_pipeline.definitions", "-h", "127.0.0.1", "-p", str(grpc_port))
            client = DagsterGrpcClient(port=grpc_port, host="127.0.0.1")
            layout.wait_for(
                "code server answering on its port",
                lambda: reachable("127.0.0.1", grpc_port) and _answers(client),
                timeout=120,
            )
            layout.start("daemon", BIN / "dagster-daemon", "run", "-w", workspace_yaml)
            layout.start("webserver", BIN / "dagster-webserver", "-w", workspace_yaml, "-h", "127.0.0.1", "-p", str(web_port))
            watch = OneRunPerCatalog(instance, CATALOG)
            layout.extra_logs["runs of the catalog"] = lambda: "\n".join(
                f"{r.run_id} {r.job_name} {r.status.value} {dict(r.tags)}" for r in watch.runs()
            )

            # The instance is deploy/dagster.yaml's: PostgreSQL storage, queued runs, one per catalog.
            assert (home / "dagster.yaml").read_bytes() == (Path(__file__).resolve().parent.parent / "deploy" / "dagster.yaml").read_bytes()
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
            for tag in (PARTITION_TAG, CATALOG_TAG):
                assert {"key": tag, "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits, limits

            # The UI's GraphQL serves the code location from the code server; the catalog sensor is on
            # without anyone starting it (default_status=RUNNING), as README and deploy/README say.
            def location_loaded():
                data = graphql_or_none(web_port, WORKSPACE_QUERY)
                if data is None:
                    return None
                entries = data["workspaceOrError"].get("locationEntries") or []
                loaded = [e for e in entries if e["name"] == LOCATION and e["loadStatus"] == "LOADED"]
                return loaded[0]["locationOrLoadError"] if loaded else None

            location = layout.wait_for("webserver serving the code location", location_loaded, timeout=120)
            assert location["__typename"] == "RepositoryLocation", location
            (repository,) = location["repositories"]
            assert SYNC_JOB in {j["name"] for j in repository["jobs"]}
            sensors = {s["name"]: s["sensorState"]["status"] for s in repository["sensors"]}
            assert sensors["catalog_folder_sensor"] == "RUNNING" and sensors["auto_repair_sensor"] == "RUNNING", sensors
            phases["processes up"] = time.monotonic() - began

            # 1. The sensor ticks on an empty folder; a file dropped then is requested by a later tick.
            layout.wait_for("first tick of catalog_folder_sensor", lambda: _ticks(web_port), timeout=90)
            assert not any(t["runIds"] for t in _ticks(web_port))
            (catalogs / "sales").mkdir()
            (catalogs / "sales" / "orders.csv").write_bytes((SAMPLE_CATALOGS / "sales" / "orders.csv").read_bytes())
            first_entries = len(parse_catalog(discover(catalogs)[CATALOG]))
            first_digest = current_source_digest(catalogs, CATALOG)
            dropped = time.monotonic()
            tick = layout.wait_for(
                "catalog_folder_sensor tick requesting a run for the dropped file",
                lambda: next((t for t in _ticks(web_port) if t["runIds"]), None),
                timeout=90,
                interval=3,
            )
            assert tick["status"] == "SUCCESS", tick
            (first_id,) = tick["runIds"]
            first = instance.get_run_by_id(first_id)
            assert first is not None and first.job_name == SYNC_JOB
            assert first.tags[PARTITION_TAG] == CATALOG and first.tags[CATALOG_TAG] == CATALOG and first.tags[TRIGGER_TAG] == FOLDER_SENSOR
            phases["file dropped -> tick"] = time.monotonic() - dropped

            # 2. The daemon dequeues and launches it; meanwhile a run of the same catalog launched from
            # the UI is accepted into the queue, where the per-catalog limit holds it.
            layout.wait_for(
                "the daemon launching the sensor's run",
                lambda: instance.get_run_by_id(first_id).status not in (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED),
                timeout=90,
                on_poll=watch.sample,
            )
            launched = graphql(web_port, LAUNCH_MUTATION, {"params": {
                "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": SYNC_JOB},
                "runConfigData": {},
                "executionMetadata": {"tags": [{"key": PARTITION_TAG, "value": CATALOG}]},
            }})["launchRun"]
            assert launched["__typename"] == "LaunchRunSuccess", launched
            second_id = launched["run"]["runId"]
            assert launched["run"]["status"] == "QUEUED"

            layout.wait_for(
                f"the sensor's run {first_id} ending",
                lambda: instance.get_run_by_id(first_id).status in ENDED,
                timeout=240,
                on_poll=watch.sample,
            )
            assert instance.get_run_by_id(first_id).status == DagsterRunStatus.SUCCESS, (
                f"run {first_id}: {_outcome(instance, first_id)}\n{_run_failure_detail(instance, first_id)}\n{layout.tails()}"
            )
            phases["tick -> run succeeded"] = time.monotonic() - dropped - phases["file dropped -> tick"]
            lifecycle = [
                e.dagster_event.event_type
                for e in instance.all_logs(first_id)
                if e.dagster_event is not None and e.dagster_event.event_type in (DagsterEventType.RUN_ENQUEUED, DagsterEventType.RUN_STARTING)
            ]
            assert lifecycle == [DagsterEventType.RUN_ENQUEUED, DagsterEventType.RUN_STARTING], lifecycle  # queued, then dequeued
            with SyncedStore.open(postgres_url, qdrant_url=qdrant.url) as store:
                verification = store.verify(CATALOG)
                assert verification.in_sync and verification.pg == verification.qdrant == first_entries, verification.counts()
                assert committed_source_digests(store.engine)[CATALOG] == first_digest

            # 3. The file changes while the UI's run waits in the queue (or is just starting). The run
            # that parses the new version commits it; one that parsed the old version is refused at its
            # commit (StaleSource, I8) and the sensor requests the catalog again.
            changed_while = instance.get_run_by_id(second_id).status
            with (catalogs / "sales" / "orders.csv").open("a", encoding="utf-8") as f:
                f.write(NEW_ROW)
            changed = time.monotonic()
            latest_entries = len(parse_catalog(discover(catalogs)[CATALOG]))
            latest_digest = current_source_digest(catalogs, CATALOG)
            assert latest_entries == first_entries + 1

            record = open_record(postgres_url)
            try:
                layout.wait_for(
                    "the latest file content committed",
                    lambda: instance.get_run_by_id(second_id).status in ENDED
                    and committed_source_digests(record).get(CATALOG) == latest_digest,
                    timeout=300,
                    interval=2,
                    on_poll=watch.sample,
                )
            finally:
                record.dispose()
            phases["file changed -> latest committed"] = time.monotonic() - changed

            # Both stores agree on the latest content (the CLI's contract, another process).
            verify = subprocess.run(
                [str(BIN / "dq-pipeline"), "verify", "--json"], env=process_env(values), capture_output=True, text=True, timeout=120
            )
            assert verify.returncode == 0, verify.stdout + verify.stderr
            report = json.loads(verify.stdout)
            counts = report["catalogs"][CATALOG]
            assert report["in_sync"] is True and report["unattributed"] == 0, report
            assert counts["pg"] == counts["qdrant"] == latest_entries, counts
            assert counts["missing"] == counts["orphans"] == counts["mismatched"] == counts["pending_journal"] == 0, counts

            # Never two runs of the catalog in progress; the UI's run was held while the sensor's ran,
            # and started only after it ended. Every run ended well, or was refused for a stale parse.
            watch.sample()
            assert watch.violations == [], f"two runs of {CATALOG} in progress at once: {watch.violations}"
            assert (second_id, first_id) in watch.held, f"run {second_id} was never seen queued behind {first_id}"
            records = instance.get_run_records(RunsFilter(tags={PARTITION_TAG: CATALOG}), ascending=True)
            by_id = {r.dagster_run.run_id: r for r in records}
            assert by_id[second_id].start_time >= by_id[first_id].end_time
            spans = sorted((r.start_time, r.end_time or time.time(), r.dagster_run.run_id) for r in records if r.start_time)
            for (_, end, earlier), (start, _, later) in zip(spans, spans[1:], strict=False):
                assert start >= end, f"runs {earlier} and {later} of {CATALOG} overlapped"
            outcomes = {r.dagster_run.run_id: _outcome(instance, r.dagster_run.run_id) for r in records if r.dagster_run.status in ENDED}
            assert all(o in ("SUCCESS", "FAILURE (StaleSource)") for o in outcomes.values()), outcomes
            assert outcomes[first_id] == "SUCCESS"

            # The sensor itself never asked for the catalog while one of its runs was queued or in
            # flight: a tick that fell within a run's life requested nothing. (Whether a tick falls
            # there at all depends on the 30 s interval against how long the runs take.)
            lives = [(r.create_timestamp.timestamp(), r.end_time or time.time(), r.dagster_run.run_id) for r in records]
            for tick in _ticks(web_port):
                during = [run for created, ended, run in lives if created <= tick["timestamp"] <= ended]
                if during:
                    assert not tick["runIds"], f"tick at {tick['timestamp']} requested {tick['runIds']} while {during} was in flight"
    phases["total"] = time.monotonic() - began
    print(f"\nUI run {second_id} was {changed_while.value} when the file changed; runs: {outcomes}; "
          f"{watch.samples} samples of the run records")
    print("phases (s): " + ", ".join(f"{k} {v:.0f}" for k, v in phases.items()))
