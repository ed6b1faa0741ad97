"""Scale-out on Celery (DQ_EXECUTOR=celery): the deploy layout of test_production_layout.py with
dagster-celery's `celery_executor`, and two `celery -A dagster_celery.app worker` processes (broker
RabbitMQ, result backend Redis) that run the steps.

What it shows: several catalogs dropped together sync in parallel runs; every step of every run
runs in a Celery worker's process, never in the run worker; a step's catalog entries (the custom
IO manager's files under the instance storage, defs/io.py) reach the next step in another process;
both stores agree afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._grpc.client import DagsterGrpcClient

from dq_pipeline.catalog import discover, parse_catalog
from dq_pipeline.defs.jobs import SYNC_JOB
from dq_pipeline.defs.sensors import PARTITION_TAG

from .conftest import REPO, SAMPLE_CATALOGS, reset_postgres
from .dagster_layout import (
    BIN,
    Layout,
    dagster_database,
    dagster_home,
    free_port,
    process_env,
    reachable,
    require,
    workspace,
)
from .fake_qdrant import FakeQdrant

CATALOGS = {"sales/orders": "sales/orders.csv", "crm/customers": "crm/customers.yaml", "finance/ledger": "finance/ledger.json"}
HASHING = "hashing:32"
ENDED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
STEPS = ("catalog_entries", "catalog_embeddings", "catalog_index")
WORKERS = 2


@pytest.fixture
def celery_services() -> tuple[str, str]:
    """(broker, result backend): RabbitMQ and Redis, reachable and answering, and dagster-celery installed."""
    broker = os.environ.get("DQ_TEST_CELERY_BROKER_URL") or "amqp://guest:guest@127.0.0.1:5672//"
    backend = os.environ.get("DQ_TEST_CELERY_BACKEND_URL") or "redis://127.0.0.1:6379/0"
    try:
        import dagster_celery  # noqa: F401
        import redis
        from kombu import Connection
    except ImportError as exc:
        require("dagster-celery", f"the Celery test needs dagster-celery and redis (the dev extra: pip install -e '.[dev]'): {exc}")
    try:
        with Connection(broker, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the broker is the same finding
        require("RabbitMQ", f"RabbitMQ does not answer at DQ_TEST_CELERY_BROKER_URL={_masked(broker)}: {type(exc).__name__}: {exc}")
    try:
        redis.Redis.from_url(backend, socket_connect_timeout=5).ping()
    except Exception as exc:  # noqa: BLE001
        require("Redis", f"Redis does not answer at DQ_TEST_CELERY_BACKEND_URL={_masked(backend)}: {type(exc).__name__}: {exc}")
    return broker, backend


def _masked(url: str) -> str:
    from sqlalchemy.engine import make_url

    with contextlib.suppress(Exception):
        return make_url(url).render_as_string(hide_password=True)
    return "(unparseable URL)"


def _delete_queue(broker: str, queue: str) -> None:
    """The test's queue is its own: nothing else consumes it, so it goes with the test."""
    from kombu import Connection

    with contextlib.suppress(Exception), Connection(broker, connect_timeout=5) as conn:
        conn.default_channel.queue_delete(queue)


def _answers(client: DagsterGrpcClient) -> bool:
    try:
        client.ping("layout")
    except Exception:  # noqa: BLE001 - not serving yet
        return False
    return True


def test_dq_executor_picks_the_executor_and_binds_the_broker_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster._core.snap import JobSnap
    from dagster._core.system_config.objects import ResolvedRunConfig
    from dagster._serdes import serialize_value

    from dq_pipeline.definitions import build_definitions
    from dq_pipeline.errors import ConfigurationError

    monkeypatch.delenv("DQ_EXECUTOR", raising=False)
    assert build_definitions().resolve_job_def(SYNC_JOB).executor_def.name == "multi_or_in_process_executor"

    password = secrets.token_hex(8)
    monkeypatch.setenv("DQ_EXECUTOR", "celery")
    monkeypatch.setenv("DQ_CELERY_BROKER_URL", f"amqp://dq:{password}@broker.internal:5672//")
    monkeypatch.setenv("DQ_CELERY_BACKEND_URL", "redis://results.internal:6379/1")
    monkeypatch.setenv("DQ_CELERY_QUEUE", "dq-staging")
    defs = build_definitions()
    for name in (SYNC_JOB, "repair_catalog", "remove_catalog", "verify_all_catalogs"):
        assert defs.resolve_job_def(name).executor_def.name == "dq_celery_executor", name
    job = defs.resolve_job_def(SYNC_JOB)
    assert password not in serialize_value(JobSnap.from_job_def(job))  # what the instance stores of the job
    executor_config = ResolvedRunConfig.build(job, {}).execution.execution_engine_config  # read in the run worker
    assert executor_config["broker"] == f"amqp://dq:{password}@broker.internal:5672//"
    assert executor_config["backend"] == "redis://results.internal:6379/1"
    assert executor_config["config_source"] == {"task_default_queue": "dq-staging"}

    monkeypatch.setenv("DQ_EXECUTOR", "threads")
    with pytest.raises(ConfigurationError, match="DQ_EXECUTOR='threads' is not an executor"):
        build_definitions()


def test_the_workers_read_the_runs_broker_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/celery/dagster_celery_config.py, as `celery -A dagster_celery.app worker` loads it."""
    pytest.importorskip("dagster_celery")
    import sys

    monkeypatch.setenv("DQ_CELERY_BROKER_URL", "amqp://dq:pw@broker.internal:5672//")
    monkeypatch.setenv("DQ_CELERY_BACKEND_URL", "redis://results.internal:6379/1")
    monkeypatch.syspath_prepend(str(REPO / "deploy" / "celery"))
    monkeypatch.delitem(sys.modules, "dagster_celery_config", raising=False)
    from dagster_celery.make_app import make_app

    try:
        app = make_app()
    finally:
        sys.modules.pop("dagster_celery_config", None)  # read once, here; no other test sees it
    assert app.conf.broker_url == "amqp://dq:pw@broker.internal:5672//"
    assert app.conf.result_backend == "redis://results.internal:6379/1"
    assert app.conf.worker_prefetch_multiplier == 1
    assert "dq_pipeline.definitions" in app.conf.imports


@pytest.mark.dagster
@pytest.mark.postgres
def test_steps_run_on_celery_workers_and_catalogs_sync_in_parallel(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, celery_services: tuple[str, str]
) -> None:
    began = time.monotonic()
    broker, backend = celery_services
    queue = f"dq-test-{secrets.token_hex(6)}"  # never a queue another deployment's workers consume
    reset_postgres(postgres_url)
    catalogs = tmp_path / "catalogs"
    for relative in CATALOGS.values():
        (catalogs / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SAMPLE_CATALOGS / relative, catalogs / relative)
    expected = {cid: len(parse_catalog(file)) for cid, file in discover(catalogs).items()}
    assert set(expected) == set(CATALOGS)
    try:
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
                "DQ_EXECUTOR": "celery",
                "DQ_CELERY_BROKER_URL": broker,
                "DQ_CELERY_BACKEND_URL": backend,
                "DQ_CELERY_QUEUE": queue,
            }
            for name, value in values.items():
                monkeypatch.setenv(name, value)
            grpc_port = free_port()
            workspace_yaml = workspace(tmp_path, grpc_port)
            env = process_env(values)
            worker_env = process_env(values, python_path=[REPO / "deploy" / "celery"])  # the workers' dagster_celery_config
            with Layout(tmp_path, env) as layout, DagsterInstance.from_config(str(home)) as instance:
                layout.start("code_server", BIN / "dagster", "api", "grpc", "-m", "dq_pipeline.definitions", "-h", "127.0.0.1", "-p", str(grpc_port))
                nodes = [f"dq-{queue}-w{i}" for i in range(1, WORKERS + 1)]
                for i, node in enumerate(nodes, 1):
                    # One process per worker, a new one for every step: each step is a process of its
                    # own, so a step's input always comes from another process through the IO manager.
                    layout.start(
                        f"celery_worker_{i}", BIN / "celery", "-A", "dagster_celery.app", "worker", "-Q", queue, "-n", f"{node}@%h",
                        "-c", "1", "--max-tasks-per-child", "1", "-l", "info", "--without-gossip", "--without-mingle",
                        env=worker_env,
                    )
                client = DagsterGrpcClient(port=grpc_port, host="127.0.0.1")
                layout.wait_for("code server answering", lambda: reachable("127.0.0.1", grpc_port) and _answers(client), timeout=120)
                for i in range(1, WORKERS + 1):
                    layout.wait_for(f"celery_worker_{i} ready", lambda i=i: " ready." in layout.log(f"celery_worker_{i}"), timeout=120)
                up = time.monotonic() - began
                layout.start("daemon", BIN / "dagster-daemon", "run", "-w", workspace_yaml)

                def runs():
                    return [r for r in instance.get_runs(RunsFilter(job_name=SYNC_JOB)) if r.tags.get(PARTITION_TAG) in CATALOGS]

                layout.extra_logs["runs"] = lambda: "\n".join(f"{r.run_id} {r.tags.get(PARTITION_TAG)} {r.status.value}" for r in runs())
                layout.wait_for(
                    f"one ended sync run for each of {sorted(CATALOGS)}",
                    lambda: {r.tags[PARTITION_TAG] for r in runs() if r.status in ENDED} == set(CATALOGS),
                    timeout=300,
                    interval=2,
                )
                synced = time.monotonic() - began
                records = {r.dagster_run.tags[PARTITION_TAG]: r for r in instance.get_run_records(RunsFilter(job_name=SYNC_JOB))}
                failed = {cid: r.dagster_run.run_id for cid, r in records.items() if r.dagster_run.status != DagsterRunStatus.SUCCESS}
                assert not failed, f"runs not successful: {failed}\n{layout.tails()}"

                verify = subprocess.run(
                    [str(BIN / "dq-pipeline"), "verify", "--json"], env=env, capture_output=True, text=True, timeout=120
                )
                assert verify.returncode == 0, verify.stdout + verify.stderr
                report = json.loads(verify.stdout)
                assert report["in_sync"] is True and report["unattributed"] == 0, report
                for cid, entries in expected.items():
                    counts = report["catalogs"][cid]
                    assert counts["pg"] == counts["qdrant"] == entries, (cid, counts)
                    assert counts["missing"] == counts["orphans"] == counts["mismatched"] == counts["pending_journal"] == 0, (cid, counts)

                # Every step in a Celery worker's process: a fresh one per step, never the run worker.
                hosts: set[str] = set()
                step_spans: list[tuple[float, float, str]] = []
                for cid, record in records.items():
                    run_id = record.dagster_run.run_id
                    events = [e for e in instance.all_logs(run_id) if e.dagster_event is not None]
                    (run_start,) = [e for e in events if e.dagster_event.event_type == DagsterEventType.RUN_START]
                    run_worker = run_start.dagster_event.pid
                    assert not [e for e in events if e.dagster_event.event_type == DagsterEventType.STEP_WORKER_STARTING], (
                        f"{cid}: the multiprocess executor ran steps"
                    )
                    delegated = {
                        e.dagster_event.step_key: e.dagster_event.engine_event_data.metadata["Celery worker"].value
                        for e in events
                        if e.dagster_event.event_type == DagsterEventType.ENGINE_EVENT and "in celery worker" in (e.dagster_event.message or "")
                    }
                    assert set(delegated) == set(STEPS), (cid, delegated)
                    hosts |= set(delegated.values())
                    pids = {}
                    for e in events:
                        if e.dagster_event.event_type == DagsterEventType.STEP_START:
                            pids[e.dagster_event.step_key] = e.dagster_event.pid
                    assert set(pids) == set(STEPS), (cid, pids)
                    assert run_worker not in pids.values(), (cid, run_worker, pids)
                    assert len(set(pids.values())) == len(STEPS), f"{cid}: steps shared a process: {pids}"
                    loaded = {
                        e.dagster_event.step_key
                        for e in events
                        if e.dagster_event.event_type == DagsterEventType.LOADED_INPUT
                        and e.dagster_event.event_specific_data.input_name == "catalog_entries"
                    }
                    assert loaded == {"catalog_embeddings", "catalog_index"}, (cid, loaded)
                    starts = {e.dagster_event.step_key: e.timestamp for e in events if e.dagster_event.event_type == DagsterEventType.STEP_START}
                    ends = {e.dagster_event.step_key: e.timestamp for e in events if e.dagster_event.event_type == DagsterEventType.STEP_SUCCESS}
                    step_spans += [(starts[s], ends[s], f"{cid}:{s}") for s in STEPS]
                assert {h.split("@")[0] for h in hosts} == set(nodes), f"steps ran on {hosts}, workers {nodes}"

                # The catalogs synced in parallel: runs in progress at the same time.
                spans = sorted((r.start_time, r.end_time, cid) for cid, r in records.items())
                overlapping = [(a[2], b[2]) for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1]]
                assert overlapping, f"no two runs were in progress at once: {spans}"
                steps_together = sum(1 for a, b in zip(sorted(step_spans), sorted(step_spans)[1:], strict=False) if b[0] < a[1])

                # One kept entries file per catalog under the instance storage (defs/io.py).
                kept = sorted(p.relative_to(home / "storage").as_posix() for p in (home / "storage").rglob("*.entries.sqlite"))
                assert len(kept) == len(CATALOGS) and all(p.startswith("catalog_entries/") for p in kept), kept
    finally:
        _delete_queue(broker, queue)
    print(f"\nprocesses up {up:.0f}s, every catalog synced {synced:.0f}s, total {time.monotonic() - began:.0f}s; "
          f"overlapping runs {overlapping}; {steps_together} step pairs overlapped; worker nodes {sorted(hosts)}")
