"""Pushing metrics to a Prometheus Pushgateway (DQ_PUSHGATEWAY_URL) (no Dagster here).

Two kinds of group, both under `job="dq_pipeline"`:

* the stores' gauges (`metrics.py`, what `dq-pipeline metrics` prints), PUT to the group with no
  other label, so the group is exactly the latest collection (a removed catalog's series go with it);
* a run's own figures, PUT to the group `{catalog, dagster_job}` of that run, so the gateway keeps
  the last run of every catalog and job side by side:

    dq_run_success                  1 if the run succeeded
    dq_run_duration_seconds         from the run's start to its end
    dq_run_end_timestamp_seconds
    dq_run_embedded_entries         entries the run embedded (from its materializations' metadata)

The URL may hold credentials (`https://user:password@gateway:9091`, sent as basic auth, or a
proxy's token in its path): no log line or message carries it. Pushing never raises: a push that
fails or does not finish within its timeout is one redacted log line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, pushadd_to_gateway
from prometheus_client.exposition import basic_auth_handler, default_handler

from .alerts import url_secrets, within
from .errors import redact

log = logging.getLogger(__name__)
JOB = "dq_pipeline"
TIMEOUT_S = 5.0  # per push; see defs/metrics_push.py for the sensor evaluation's budget


def push(url: str, registry: CollectorRegistry, grouping_key: Mapping[str, str] | None = None, *,
         replace: bool = True, timeout: float = TIMEOUT_S) -> bool:
    """Send `registry` to the group; `replace` PUTs (the group becomes exactly these metrics), else
    POSTs (only the metrics of these names are replaced). True if the gateway accepted it within
    `timeout` seconds in all (the request runs in a daemon thread abandoned at the deadline: urllib's
    timeout bounds each socket operation, not the request)."""
    secrets = url_secrets(url)  # the password is added once parsed, so a failure's text never shows it

    def attempt() -> bool:
        gateway, handler, password = _gateway(url)
        secrets.append(password)
        send = push_to_gateway if replace else pushadd_to_gateway
        send(gateway, job=JOB, registry=registry, grouping_key=dict(grouping_key or {}), timeout=timeout, handler=handler)
        return True

    return within(timeout, "push the metrics to the Pushgateway", attempt, secrets, logger=log)


def _gateway(url: str) -> tuple[str, Callable[..., Callable[[], None]], str]:
    """The gateway without its user info, a handler sending that as basic auth, and the password.
    urllib would read `user:password@host` as a host with a port named `password@host`."""
    parts = urlsplit(url.strip() if "://" in url else f"http://{url.strip()}")
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("the Pushgateway URL is not an http(s) URL")
    if parts.username is None:
        return urlunsplit(parts), default_handler, ""
    username, password = parts.username, parts.password or ""
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

    def handler(url: str, method: str, timeout: float | None, headers: list, data: bytes) -> Callable[[], None]:
        return basic_auth_handler(url, method, timeout, headers, data, username, password)

    return bare, handler, password


def run_registry(*, success: bool, started: float | None, ended: float | None, embedded: int | None) -> CollectorRegistry:
    """One run's figures (module docstring); those not known are left out rather than sent as 0."""
    registry = CollectorRegistry()
    Gauge("dq_run_success", "1 if the run succeeded.", registry=registry).set(int(success))
    if started is not None and ended is not None:
        Gauge("dq_run_duration_seconds", "Seconds from the run's start to its end.", registry=registry).set(round(ended - started, 3))
    if ended is not None:
        Gauge("dq_run_end_timestamp_seconds", "Unix time the run ended.", registry=registry).set(ended)
    if embedded is not None:
        Gauge("dq_run_embedded_entries", "Entries the run embedded.", registry=registry).set(embedded)
    return registry


def busy_registry() -> CollectorRegistry:
    """`dq_store_busy 1` alone: POSTed, it marks the values on the gateway as from before, keeping them
    (as `dq-pipeline metrics --serve` keeps its last collection while a sync holds the store)."""
    registry = CollectorRegistry()
    Gauge("dq_store_busy", "1 if the last attempt found the embedded Qdrant held by a sync (values are from before).",
          registry=registry).set(1)
    return registry


class Coalescer:
    """Runs the latest requested work in one background thread at a time.

    A collection verifies every catalog, so it can take longer than a sensor evaluation may (60 s by
    default), and several runs ending together must not make as many collections. A request asks for
    a run of the work that started at or after `since` (the moment a run ended): one that already
    finished or is in progress answers it; otherwise the work starts, or runs once more after the one
    in progress. Only the request that started or re-armed the work waits for it, at most `wait_s`.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._work: Callable[[], Any] | None = None
        self._running_since: float | None = None  # start of the run in progress
        self._again = False
        self._done_since = float("-inf")  # start of the last finished run
        self._outcome: Any = None

    def request(self, since: float, work: Callable[[], Any], wait_s: float) -> tuple[bool, Any]:
        """(whether a run that started at or after `since` has finished, that run's outcome)."""
        with self._cond:
            self._work = work  # the latest: its resources and instance are the current ones
            if self._done_since >= since:
                return True, self._outcome
            if self._running_since is None:
                self._running_since = time.time()
                threading.Thread(target=self._loop, name="dq-metrics-collect", daemon=True).start()
            elif self._running_since < since and not self._again:
                self._again = True
            else:
                return False, None  # a run in progress, or one already due after it, answers this one
            self._cond.wait_for(lambda: self._done_since >= since, timeout=wait_s)
            return self._done_since >= since, self._outcome if self._done_since >= since else None

    def _loop(self) -> None:
        while True:
            with self._cond:
                started = self._running_since = time.time()
                self._again, work = False, self._work
            try:
                outcome = work() if work is not None else None
            except Exception as exc:  # the work logs its own failures; this is a last resort
                log.warning("collecting the metrics failed: %s", redact(f"{type(exc).__name__}: {exc}"))
                outcome = None
            with self._cond:
                self._done_since, self._outcome = started, outcome
                self._cond.notify_all()
                if not self._again:
                    self._running_since = None
                    return
