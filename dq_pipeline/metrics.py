"""Prometheus metrics of both stores: what `verify` proves, per catalog, as gauges (no Dagster here).

Every value is read from the stores themselves (the record and the index), never from run history,
so a scrape says what is true now, whoever wrote last (a Dagster run, the CLI, a repair):

    dq_up                                       1 if both stores answered the last collection
    dq_catalog_entries{catalog}                 rows in the system of record
    dq_catalog_points{catalog}                  points in Qdrant
    dq_catalog_missing_points{catalog}          rows without their point (I1)
    dq_catalog_orphan_points{catalog}           points no row or journal row names
    dq_catalog_mismatched_points{catalog}       payload or vector digest differs from the record
    dq_catalog_pending_journal_rows{catalog}    unfinished writes (a crash, Qdrant unreachable)
    dq_catalog_in_sync{catalog}                 1 if all of the above agree
    dq_catalog_refused{catalog}                 1 if the latest read of its file was refused
    dq_catalog_last_sync_timestamp_seconds{catalog}   when its last change committed
    dq_catalog_seconds_since_last_sync{catalog}
    dq_catalog_rejected_entries{catalog}        entries a reviewer rejected
    dq_unattributed_points                      points that name no catalog
    dq_refused_files                            catalog files whose latest read was refused
    dq_collect_seconds                          how long the last collection took
    dq_store_busy                               1 if a sync held the embedded Qdrant at the last attempt
                                                (the values are then the previous collection's)

A collection verifies every catalog (pages of both stores, memory bounded) and so costs as much as
`dq-pipeline verify`: `serve` collects at most once per `interval` seconds and answers scrapes from
the last collection. It opens the stores for each collection and closes them after, because an
embedded Qdrant admits one process at a time and a sync must be able to run in between.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .errors import EmbeddedQdrantBusy, one_line

PER_CATALOG = {
    "entries": ("dq_catalog_entries", "Rows of the catalog in the system of record."),
    "points": ("dq_catalog_points", "Points of the catalog in Qdrant."),
    "missing": ("dq_catalog_missing_points", "Rows whose point is missing from Qdrant."),
    "orphans": ("dq_catalog_orphan_points", "Points no committed row or pending journal row names."),
    "mismatched": ("dq_catalog_mismatched_points", "Points whose payload or vector digest differs from the record."),
    "pending_journal": ("dq_catalog_pending_journal_rows", "Unfinished writes in the journal."),
    "in_sync": ("dq_catalog_in_sync", "1 if both stores hold the same ids, payloads and vector digests."),
    "refused": ("dq_catalog_refused", "1 if the latest read of the catalog's file was refused."),
    "rejected": ("dq_catalog_rejected_entries", "Entries a reviewer rejected."),
    "last_sync": ("dq_catalog_last_sync_timestamp_seconds", "Unix time of the catalog's last committed change."),
    "since_last_sync": ("dq_catalog_seconds_since_last_sync", "Seconds since the catalog's last committed change."),
}


@dataclass
class Snapshot:
    """One collection: per catalog, the values named in PER_CATALOG."""

    catalogs: dict[str, dict[str, float]] = field(default_factory=dict)
    unattributed: int = 0
    refused_files: int = 0
    up: bool = True
    busy: bool = False  # an embedded Qdrant held by a sync: not down, just not readable right now
    error: str | None = None
    collected_at: float = 0.0
    seconds: float = 0.0


def collect(open_store: Callable[[], object]) -> Snapshot:
    """Verify every catalog both stores know of; a store that does not answer gives `up` = 0."""
    from .sync import refusals

    started = time.time()
    snapshot = Snapshot(collected_at=started)
    try:
        with open_store() as store:  # type: ignore[attr-defined]
            status = store.status()["catalogs"]
            refused = refusals.refused(store.engine)
            for catalog_id in sorted(set(store.known_catalogs()) | set(refused)):
                v = store.verify(catalog_id)
                info = status.get(catalog_id, {})
                values: dict[str, float] = {
                    "entries": v.live_rows,
                    "points": v.qdrant,
                    "missing": v.missing,
                    "orphans": v.orphans,
                    "mismatched": v.mismatched,
                    "pending_journal": v.pending_journal,
                    "in_sync": int(v.in_sync),
                    "refused": int(catalog_id in refused),
                    "rejected": info.get("rejected", 0),
                }
                last = _timestamp(info.get("last_change"))
                if last is not None:
                    values["last_sync"] = last
                    values["since_last_sync"] = max(0.0, started - last)
                snapshot.catalogs[catalog_id] = values
            snapshot.unattributed = store.verify_unattributed()[0]
            snapshot.refused_files = len(refused)
    except EmbeddedQdrantBusy as exc:
        snapshot.up, snapshot.busy, snapshot.error = False, True, one_line(exc)
    except Exception as exc:  # a store down is a value of the scrape (dq_up 0), not a crash of the exporter
        snapshot.up, snapshot.error = False, one_line(exc)
    snapshot.seconds = time.time() - started
    return snapshot


def _timestamp(iso: str | None) -> float | None:
    if not iso:
        return None
    from datetime import UTC, datetime

    moment = datetime.fromisoformat(iso)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class StoreCollector(Collector):
    """Serves the latest snapshot; collects a new one when the last is older than `interval` s."""

    def __init__(self, open_store: Callable[[], object], interval: float = 60.0):
        self._open_store = open_store
        self._interval = interval
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # registering must not collect (a collection verifies every catalog)

    def snapshot(self) -> Snapshot:
        with self._lock:  # one collection at a time, however many scrapes arrive
            if self._snapshot is None or time.time() - self._snapshot.collected_at >= self._interval:
                fresh = collect(self._open_store)
                if fresh.busy and self._snapshot is not None and self._snapshot.up:
                    # A sync holds the embedded Qdrant: keep the last values (marked busy) and try
                    # again at the next scrape, rather than read as down during every ordinary sync.
                    self._snapshot.busy = True
                    return self._snapshot
                self._snapshot = fresh
            return self._snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self.snapshot()
        yield GaugeMetricFamily("dq_up", "1 if both stores answered the last collection.", value=int(snap.up))
        yield GaugeMetricFamily("dq_collect_seconds", "Seconds the last collection took.", value=round(snap.seconds, 3))
        yield GaugeMetricFamily("dq_store_busy", "1 if the last attempt found the embedded Qdrant held by a sync (values are from before).", value=int(snap.busy))
        if not snap.up:
            return  # no per-catalog values rather than stale ones
        for key, (name, doc) in PER_CATALOG.items():
            family = GaugeMetricFamily(name, doc, labels=["catalog"])
            for catalog_id, values in snap.catalogs.items():
                if key in values:
                    family.add_metric([catalog_id], values[key])
            yield family
        yield GaugeMetricFamily("dq_unattributed_points", "Points of this namespace that name no catalog.", value=snap.unattributed)
        yield GaugeMetricFamily("dq_refused_files", "Catalog files whose latest read was refused.", value=snap.refused_files)


def registry_for(open_store: Callable[[], object], interval: float = 60.0) -> tuple[CollectorRegistry, StoreCollector]:
    registry = CollectorRegistry()
    collector = StoreCollector(open_store, interval)
    registry.register(collector)
    return registry, collector


def registry_of(snapshot: Snapshot) -> CollectorRegistry:
    """A registry that serves this one collection (what a push sends)."""
    registry, collector = registry_for(lambda: None, interval=float("inf"))
    collector._snapshot = snapshot
    return registry


def exposition_of(snapshot: Snapshot) -> bytes:
    """A collection in Prometheus' text format."""
    return generate_latest(registry_of(snapshot))


def serve(open_store: Callable[[], object], port: int, address: str = "127.0.0.1", interval: float = 60.0) -> None:
    """Serve /metrics on `address:port` until interrupted."""
    registry, _ = registry_for(open_store, interval)
    server, thread = start_http_server(port, addr=address, registry=registry)
    try:
        while thread.is_alive():
            thread.join(1.0)
    finally:
        server.shutdown()
