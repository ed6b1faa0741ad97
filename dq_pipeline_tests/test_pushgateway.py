"""Pushgateway: after a real sync run ends (success or failure) the push sensors send the stores'
gauges and the run's own figures to a real local HTTP receiver standing in for the Pushgateway,
parsed here with Prometheus' own text parser; credentials in the URL go as basic auth and into
no log line; runs ending together share one collection; an unreachable gateway is one log line."""

from __future__ import annotations

import base64
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    SkipReason,
    build_run_status_sensor_context,
    instance_for_test,
)
from dagster._core.test_utils import create_run_for_test
from prometheus_client.parser import text_string_to_metric_families

from dq_pipeline.definitions import build_definitions, resources_for
from dq_pipeline.defs.metrics_push import push_metrics_on_failure_sensor, push_metrics_on_success_sensor
from dq_pipeline.defs.partitions import catalog_partitions
from dq_pipeline.pushgateway import Coalescer
from dq_pipeline.settings import Settings
from dq_pipeline.sync import SyncedStore

pytestmark = [pytest.mark.dagster]
HASHING = "hashing:32"
USER, PASSWORD = "pusher", "s3cr3t-push-password"
STORES = "/metrics/job/dq_pipeline"


class Gateway:
    """A Pushgateway stand-in: every PUT and POST under /metrics/job/, with its grouping key decoded."""

    def __init__(self) -> None:
        self.pushes: list[dict] = []
        received = self.pushes

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                received.append({"method": self.command, "path": self.path, "group": _group(self.path),
                                 "auth": self.headers.get("Authorization"), "families": _families(body)})
                self.send_response(200 if self.path.startswith("/metrics/job/") else 404)
                self.end_headers()

            do_PUT = do_POST = _record  # noqa: N815 - the http.server hooks' names

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://{USER}:{PASSWORD}@127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def to(self, path: str) -> list[dict]:
        return [p for p in self.pushes if p["path"] == path]

    def groups(self) -> list[dict]:
        return [p for p in self.pushes if p["path"] != STORES]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _group(path: str) -> dict[str, str]:
    """/metrics/job/J/k1/v1/k2@base64/V2 -> {"job": J, "k1": v1, "k2": decoded V2}."""
    parts = path.removeprefix("/metrics/").split("/")
    group = {}
    for name, value in zip(parts[::2], parts[1::2], strict=True):
        if name.endswith("@base64"):
            name, value = name.removesuffix("@base64"), base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        group[name] = value
    return group


def _families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    return {
        family.name: {tuple(sorted(sample.labels.items())): sample.value for sample in family.samples}
        for family in text_string_to_metric_families(text)
    }


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    g = Gateway()
    yield g
    g.close()


def _settings(tmp_path: Path, catalog_dir: Path) -> Settings:
    return Settings.from_env(
        database_url=f"sqlite:///{tmp_path / 'dq.sqlite3'}", data_dir=str(tmp_path / "data"), catalog_dir=str(catalog_dir), embedding_model=HASHING
    )


@pytest.fixture
def settings(tmp_path: Path, catalog_dir: Path, gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DQ_PUSHGATEWAY_URL", gateway.url)  # a secret: bound by EnvVar name
    return _settings(tmp_path, catalog_dir)


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as inst:
        inst.add_dynamic_partitions(catalog_partitions.name, ["sales/orders", "crm/customers"])
        yield inst


def _push(defs, instance: DagsterInstance, result):
    """What the daemon does when the run ends: the sensor of its end state, on that run."""
    success = result.success
    context = build_run_status_sensor_context(
        sensor_name="push_metrics_on_success_sensor" if success else "push_metrics_on_failure_sensor",
        dagster_event=result.get_run_success_event() if success else result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"store": defs.resources["store"], "pushgateway": defs.resources["pushgateway"]},
    )
    return (push_metrics_on_success_sensor if success else push_metrics_on_failure_sensor)(context)


def test_a_sync_and_a_failed_sync_each_push_the_stores_and_the_run(settings: Settings, instance: DagsterInstance, gateway: Gateway) -> None:
    defs = build_definitions(resources_for(settings))
    sync = defs.resolve_job_def("sync_catalog")
    synced = sync.execute_in_process(partition_key="sales/orders", instance=instance)
    assert _push(defs, instance, synced) is None

    (stores,) = gateway.to(STORES)
    orders = (("catalog", "sales/orders"),)
    assert stores["method"] == "PUT" and stores["auth"] == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert stores["families"]["dq_up"][()] == 1 and stores["families"]["dq_store_busy"][()] == 0
    assert stores["families"]["dq_catalog_entries"][orders] == 60 and stores["families"]["dq_catalog_points"][orders] == 60
    assert stores["families"]["dq_catalog_in_sync"][orders] == 1
    (run,) = gateway.groups()
    assert run["method"] == "PUT" and run["group"] == {"job": "dq_pipeline", "catalog": "sales/orders", "dagster_job": "sync_catalog"}
    record = instance.get_run_record_by_id(synced.run_id)
    assert run["families"]["dq_run_success"][()] == 1
    assert run["families"]["dq_run_duration_seconds"][()] == pytest.approx(record.end_time - record.start_time, abs=0.01)
    assert run["families"]["dq_run_embedded_entries"][()] == 60  # every entry was new

    (settings.catalog_dir / "sales" / "orders.csv").write_text("table,column\norders,id\norders,id\n", encoding="utf-8")
    refused = sync.execute_in_process(partition_key="sales/orders", instance=instance, raise_on_error=False)
    assert not refused.success
    assert _push(defs, instance, refused) is None  # the push succeeded; the run's failure is in the metrics

    after = gateway.to(STORES)[-1]["families"]
    assert after["dq_catalog_refused"][orders] == 1 and after["dq_refused_files"][()] == 1
    assert after["dq_catalog_entries"][orders] == 60 and after["dq_catalog_in_sync"][orders] == 1  # the served version, whole (I5)
    failed = gateway.groups()[-1]
    assert failed["group"]["catalog"] == "sales/orders" and failed["families"]["dq_run_success"][()] == 0
    assert "dq_run_embedded_entries" not in failed["families"]  # refused at the parse: no embedding step materialized
    assert len(gateway.to(STORES)) == 2


def test_runs_ending_together_share_one_collection(settings: Settings, instance: DagsterInstance, gateway: Gateway) -> None:
    defs = build_definitions(resources_for(settings))
    sync = defs.resolve_job_def("sync_catalog")
    first = sync.execute_in_process(partition_key="sales/orders", instance=instance)
    second = sync.execute_in_process(partition_key="crm/customers", instance=instance)
    assert _push(defs, instance, first) is None
    assert _push(defs, instance, second) is None  # the collection made for the first began after both ended
    (stores,) = gateway.to(STORES)
    assert stores["families"]["dq_catalog_entries"] == {(("catalog", "crm/customers"),): 72, (("catalog", "sales/orders"),): 60}
    assert sorted(p["group"]["catalog"] for p in gateway.groups()) == ["crm/customers", "sales/orders"]


def test_with_embedded_qdrant_a_run_in_progress_defers_the_store_push(settings: Settings, instance: DagsterInstance, gateway: Gateway) -> None:
    defs = build_definitions(resources_for(settings))
    synced = defs.resolve_job_def("sync_catalog").execute_in_process(partition_key="sales/orders", instance=instance)
    create_run_for_test(instance, job_name="sync_catalog", status=DagsterRunStatus.STARTED)  # may open the embedded Qdrant any moment
    skipped = _push(defs, instance, synced)
    assert isinstance(skipped, SkipReason) and "deferred" in skipped.skip_message
    assert gateway.to(STORES) == [] and len(gateway.groups()) == 1  # the run's own figures still went


def test_a_store_held_by_a_sync_marks_the_gateway_busy_and_keeps_its_values(settings: Settings, instance: DagsterInstance, gateway: Gateway) -> None:
    defs = build_definitions(resources_for(settings))
    sync = defs.resolve_job_def("sync_catalog")
    assert _push(defs, instance, sync.execute_in_process(partition_key="sales/orders", instance=instance)) is None
    again = sync.execute_in_process(partition_key="sales/orders", instance=instance)
    with SyncedStore.open(settings.database_url, qdrant_path=settings.qdrant_path):  # a sync holding the embedded Qdrant
        skipped = _push(defs, instance, again)
    assert isinstance(skipped, SkipReason) and "marked on the gateway" in skipped.skip_message
    first, busy = gateway.to(STORES)
    assert busy["method"] == "POST" and busy["families"] == {"dq_store_busy": {(): 1.0}}  # only this series is replaced
    assert first["method"] == "PUT" and first["families"]["dq_catalog_entries"][(("catalog", "sales/orders"),)] == 60


def test_an_unreachable_gateway_logs_one_redacted_line_and_raises_nothing(
    tmp_path: Path, catalog_dir: Path, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens
    monkeypatch.setenv("DQ_PUSHGATEWAY_URL", f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/push/token-{PASSWORD}")
    settings = _settings(tmp_path, catalog_dir)
    defs = build_definitions(resources_for(settings))
    synced = defs.resolve_job_def("sync_catalog").execute_in_process(partition_key="sales/orders", instance=instance)
    with caplog.at_level(logging.WARNING, logger="dq_pipeline.pushgateway"):
        skipped = _push(defs, instance, synced)
    assert isinstance(skipped, SkipReason) and "NOT pushed" in skipped.skip_message
    lines = [r.getMessage() for r in caplog.records if r.name == "dq_pipeline.pushgateway"]
    assert len(lines) == 2 and all(line.startswith("could not push the metrics to the Pushgateway: ") for line in lines)  # run, stores
    assert all(PASSWORD not in line and "token" not in line for line in lines), lines
    assert PASSWORD not in skipped.skip_message


def test_the_coalescer_answers_a_request_with_a_collection_that_began_after_it() -> None:
    coalescer, started, release = Coalescer(), [], threading.Event()

    def work() -> int:
        started.append(time.time())
        release.wait(10)
        return len(started)

    assert coalescer.request(0.0, work, wait_s=0.2) == (False, None)  # started; still running when the wait ends
    later = time.time() + 0.001  # a run that ended while that collection ran
    assert coalescer.request(later, work, wait_s=0.2) == (False, None)  # re-armed: one more after it
    assert coalescer.request(later, work, wait_s=0.2) == (False, None)  # already due: answered by that one
    release.set()
    deadline = time.time() + 10
    while coalescer.request(later, work, wait_s=0.5)[0] is False and time.time() < deadline:
        pass
    assert coalescer.request(later, work, wait_s=0.2) == (True, 2)  # the second collection answers it
    assert len(started) == 2 and started[1] >= later  # never a third
