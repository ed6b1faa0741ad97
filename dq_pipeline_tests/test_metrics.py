"""`dq-pipeline metrics`: the real endpoint, scraped over HTTP by a separate process and parsed with
Prometheus' own text parser, says what verify proves: counts, a point deleted behind the
pipeline's back, a refused file, when each catalog last changed; a store that is down is `dq_up 0`
and exit 1, with no secret in what is printed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .cli_helpers import run, run_json

# slow: every test here runs the CLI and its HTTP endpoint in processes of their own (see conftest).
pytestmark = pytest.mark.slow

DQ_EXE = str(Path(sys.executable).with_name("dq-pipeline"))
HASHING = "hashing:32"


def _families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    return {
        family.name: {tuple(sorted(sample.labels.items())): sample.value for sample in family.samples}
        for family in text_string_to_metric_families(text)
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _scrape(url: str, deadline_s: float = 60.0) -> str:
    end = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def test_the_metrics_endpoint_tells_what_verify_proves(env: dict[str, str], catalog_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DQ_EMBEDDING_MODEL", HASHING)
    run("sync", "--catalog", "crm/customers", "--catalog", "sales/orders")
    from dq_pipeline.settings import Settings
    from dq_pipeline.sync import SyncedStore

    settings = Settings.from_env()
    with SyncedStore.open(settings.database_url, qdrant_path=settings.qdrant_path) as store:
        collection = store.index.collections()[0]
        victim = next(iter(store.index.points_of_catalog(collection, "crm/customers")))
        store.index.unguarded_delete(collection, [victim])
    (catalog_dir / "broken.csv").write_text('table,column,description\nt,c,"unclosed\n')
    run("sync", "--catalog", "broken", expect=1)
    before = time.time()

    port = _free_port()
    server = subprocess.Popen([DQ_EXE, "metrics", "--serve", str(port), "--interval", "0"], env=os.environ.copy(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        scraped = _families(_scrape(f"http://127.0.0.1:{port}/metrics"))
        # A sync between two scrapes: the exporter holds no store open (embedded Qdrant is one process).
        run("repair", "--catalog", "crm/customers")
        healed = _families(_scrape(f"http://127.0.0.1:{port}/metrics"))
    finally:
        server.terminate()
        server.wait(timeout=30)

    crm, orders, broken = (("catalog", "crm/customers"),), (("catalog", "sales/orders"),), (("catalog", "broken"),)
    assert scraped["dq_up"][()] == 1
    assert scraped["dq_catalog_entries"][crm] == 72 and scraped["dq_catalog_points"][crm] == 71
    assert scraped["dq_catalog_missing_points"][crm] == 1 and scraped["dq_catalog_in_sync"][crm] == 0
    assert scraped["dq_catalog_in_sync"][orders] == 1 and scraped["dq_catalog_entries"][orders] == 60
    assert scraped["dq_catalog_refused"][broken] == 1 and scraped["dq_refused_files"][()] >= 1
    assert scraped["dq_catalog_entries"][broken] == 0  # nothing written for it (I6)
    assert scraped["dq_catalog_last_sync_timestamp_seconds"][crm] <= before
    assert 0 <= scraped["dq_catalog_seconds_since_last_sync"][crm] < 3600
    assert broken not in scraped["dq_catalog_last_sync_timestamp_seconds"]  # never synced
    assert healed["dq_catalog_missing_points"][crm] == 0 and healed["dq_catalog_in_sync"][crm] == 1
    assert run_json("verify")["catalogs"]["crm/customers"]["missing"] == 0


def test_a_store_that_is_down_is_dq_up_zero_and_exit_one_without_secrets(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()  # nothing listens there
    monkeypatch.setenv("DQ_QDRANT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("DQ_QDRANT_API_KEY", "s3cr3t-api-key")
    done = subprocess.run([DQ_EXE, "metrics"], env=os.environ.copy(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "s3cr3t-api-key" not in done.stdout + done.stderr
    assert _families(done.stdout)["dq_up"][()] == 0 and done.stderr.startswith("error: ")


def test_an_embedded_qdrant_held_by_a_sync_is_busy_not_down(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A scrape while a sync holds the embedded Qdrant keeps the last values (dq_store_busy 1, dq_up
    1) instead of reading as down: an alert on dq_up must not fire during every ordinary sync."""
    from prometheus_client import generate_latest

    from dq_pipeline.errors import EmbeddedQdrantBusy
    from dq_pipeline.metrics import registry_for
    from dq_pipeline.settings import Settings
    from dq_pipeline.sync import SyncedStore

    monkeypatch.setenv("DQ_EMBEDDING_MODEL", HASHING)
    run("sync", "--catalog", "sales/orders")
    settings = Settings.from_env()
    opened = []

    def open_store():
        if opened:  # the second collection: a sync holds the folder now (fault injection)
            raise EmbeddedQdrantBusy("the embedded Qdrant folder is in use by another process")
        opened.append(1)
        return SyncedStore.open(settings.database_url, qdrant_path=settings.qdrant_path)

    registry, _ = registry_for(open_store, interval=0)
    first = _families(generate_latest(registry).decode())
    second = _families(generate_latest(registry).decode())
    orders = (("catalog", "sales/orders"),)
    assert first["dq_up"][()] == 1 and first["dq_store_busy"][()] == 0
    assert second["dq_up"][()] == 1 and second["dq_store_busy"][()] == 1
    assert second["dq_catalog_entries"][orders] == first["dq_catalog_entries"][orders] == 60
