"""Alerts (issue 14): a failed sync, a failed global check and the auto-repair bound each post one
message to the webhook, received here by a real local HTTP server; the message names the catalog,
the error and the run, and holds no secret (the webhook's token, a database password)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    RunRequest,
    SkipReason,
    build_run_status_sensor_context,
    instance_for_test,
)

from dq_pipeline.definitions import build_definitions, resources_for
from dq_pipeline.defs.alerts import alert_on_failure_sensor
from dq_pipeline.defs.partitions import catalog_partitions
from dq_pipeline.defs.sensors import MAX_AUTO_REPAIRS
from dq_pipeline.settings import Settings
from dq_pipeline.sync import SyncedStore

pytestmark = [pytest.mark.dagster]
HASHING = "hashing:32"
TOKEN = "T00000000/B00000000/XXXXsecretXXXXtokenXXXX"


class Receiver:
    """A webhook receiver: every POSTed JSON body, in order."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server hook's name
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/{TOKEN}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def settings(tmp_path: Path, catalog_dir: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DQ_ALERT_WEBHOOK_URL", receiver.url)  # a secret: bound by EnvVar name
    return Settings.from_env(
        database_url=f"sqlite:///{tmp_path / 'dq.sqlite3'}", data_dir=str(tmp_path / "data"), catalog_dir=str(catalog_dir), embedding_model=HASHING
    )


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as inst:
        inst.add_dynamic_partitions(catalog_partitions.name, ["sales/orders"])
        yield inst


def _alert(defs, instance: DagsterInstance, failed):
    context = build_run_status_sensor_context(
        sensor_name="alert_on_failure_sensor",
        dagster_event=failed.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=failed.dagster_run,
        resources={"alerts": defs.resources["alerts"]},
    ).for_run_failure()
    return alert_on_failure_sensor(context)


def _no_secret(body: dict) -> None:
    text = json.dumps(body)
    assert "secret" not in text.lower() and "XXXX" not in text


def test_a_failed_sync_posts_one_message_naming_catalog_error_and_run(settings: Settings, instance: DagsterInstance, receiver: Receiver) -> None:
    defs = build_definitions(resources_for(settings))
    sync = defs.resolve_job_def("sync_catalog")
    (settings.catalog_dir / "sales" / "orders.csv").write_text("table,column\norders,id\norders,id\n", encoding="utf-8")
    refused = sync.execute_in_process(partition_key="sales/orders", instance=instance, raise_on_error=False)
    assert not refused.success
    assert _alert(defs, instance, refused) is None
    (body,) = receiver.bodies
    assert body["dq"]["catalog"] == "sales/orders" and body["dq"]["run_id"] == refused.run_id and body["dq"]["job"] == "sync_catalog"
    assert "duplicate entry key 'orders.id'" in body["dq"]["error"] and "not repaired automatically" in body["dq"]["next_step"]
    assert body["text"].startswith("dq_pipeline: sync_catalog failed") and refused.run_id in body["text"]
    _no_secret(body)


def test_the_auto_repair_bound_and_a_failed_global_check_are_alerts(settings: Settings, instance: DagsterInstance, receiver: Receiver) -> None:
    defs = build_definitions(resources_for(settings))
    sync = defs.resolve_job_def("sync_catalog")
    assert sync.execute_in_process(partition_key="sales/orders", instance=instance).success
    with SyncedStore.open(settings.database_url, qdrant_path=settings.qdrant_path) as store:  # a point vanishes
        collection = store.index.collections()[0]
        store.index.unguarded_delete(collection, list(store.index.points_of_catalog(collection, "sales/orders"))[:1])

    verified = defs.resolve_job_def("verify_all_catalogs").execute_in_process(instance=instance, raise_on_error=False)
    assert any(e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed for e in verified.all_events)
    (checked,) = receiver.bodies  # a failed check does not fail its run: the check itself posts
    assert checked["dq"]["title"] == "check all_catalogs_in_sync failed" and "sales/orders" in checked["dq"]["catalog"]
    assert "'missing': 1" in checked["dq"]["error"] and checked["dq"]["run_id"] == verified.run_id

    broken = sync.execute_in_process(partition_key="sales/orders", instance=instance, raise_on_error=False)
    assert not broken.success  # the blocking ids_match check
    assert _alert(defs, instance, broken) is None
    assert receiver.bodies[-1]["dq"]["next_step"] == "auto-repair requested"

    repair = defs.resolve_job_def("repair_catalog")
    request = defs.resolve_sensor_def("auto_repair_sensor")(
        build_run_status_sensor_context(
            sensor_name="auto_repair_sensor", dagster_event=broken.get_run_failure_event(), dagster_instance=instance, dagster_run=broken.dagster_run
        ).for_run_failure()
    )
    assert isinstance(request, RunRequest)
    for _ in range(MAX_AUTO_REPAIRS):  # what the daemon would launch
        assert repair.execute_in_process(run_config=request.run_config, tags=request.tags, instance=instance).success
    assert _alert(defs, instance, broken) is None
    bounded = receiver.bodies[-1]
    assert bounded["dq"]["title"] == "auto-repair bound reached" and bounded["dq"]["catalog"] == "sales/orders"
    assert bounded["dq"]["run_id"] == broken.run_id
    for body in receiver.bodies:
        _no_secret(body)


def test_an_unreachable_webhook_never_fails_the_sensor(tmp_path: Path, catalog_dir: Path, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens
    monkeypatch.setenv("DQ_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{port}/services/{TOKEN}")
    settings = Settings.from_env(
        database_url=f"sqlite:///{tmp_path / 'dq.sqlite3'}", data_dir=str(tmp_path / "data"), catalog_dir=str(catalog_dir), embedding_model=HASHING
    )
    defs = build_definitions(resources_for(settings))
    (settings.catalog_dir / "sales" / "orders.csv").write_text("table,column\norders,id\norders,id\n", encoding="utf-8")
    refused = defs.resolve_job_def("sync_catalog").execute_in_process(partition_key="sales/orders", instance=instance, raise_on_error=False)
    skipped = _alert(defs, instance, refused)
    assert isinstance(skipped, SkipReason) and "could not be delivered" in skipped.skip_message
