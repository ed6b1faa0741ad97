"""Alerts: one Slack-compatible message per event to a configured webhook (no Dagster here).

The message is `{"text": ...}`, which Slack, Mattermost, Rocket.Chat and Microsoft Teams' incoming
webhooks all accept, plus a `dq` object with the same facts as fields for other receivers. Its
error text passes through `errors.redact` (known secrets, URL passwords); the webhook's own URL,
itself a credential, is never in it. Posting never raises: an alert that cannot be delivered is
logged (redacted), and what failed is still in the Dagster run.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from .errors import redact

log = logging.getLogger(__name__)
TIMEOUT_S = 10.0


def message(title: str, *, catalog: str | None, error: str | None, run_id: str | None, job: str | None, **facts: Any) -> dict[str, Any]:
    error = redact(error) if error else None
    lines = [f"dq_pipeline: {title}"]
    if catalog:
        lines.append(f"catalog: {catalog}")
    if job or run_id:
        lines.append(f"run: {job or '?'} {run_id or ''}".rstrip())
    if error:
        lines.append(f"error: {error}")
    lines += [f"{name.replace('_', ' ')}: {value}" for name, value in facts.items() if value is not None]
    return {"text": "\n".join(lines), "dq": {"title": title, "catalog": catalog, "error": error, "run_id": run_id, "job": job, **facts}}


def post(url: str, body: dict[str, Any], timeout: float = TIMEOUT_S) -> bool:
    """POST the message as JSON; True if the receiver answered 2xx within `timeout` seconds in all.

    urllib's timeout bounds each socket operation, not the request: a receiver that trickles bytes
    would hold the caller (a sensor evaluation, the global check) indefinitely, so the request runs in
    a daemon thread that is abandoned at the deadline. No error text carries the URL (its path is the
    webhook's token)."""

    def attempt() -> bool:
        if not url.lower().startswith(("http://", "https://")):
            raise ValueError("the webhook URL is not an http(s) URL")
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the configured webhook (http or https)
            return 200 <= response.status < 300

    return within(timeout, "post the alert to the webhook", attempt, url_secrets(url))


def within(timeout: float, what: str, attempt: Callable[[], bool], secrets: Sequence[str] = (), logger: logging.Logger = log) -> bool:
    """`attempt()` in a daemon thread abandoned after `timeout` seconds; its answer, or False (one
    warning line on `logger`, redacted) if it raised or did not finish in time. Never raises."""
    outcome: list[bool] = []

    def run() -> None:
        try:
            outcome.append(bool(attempt()))
        except Exception as exc:
            logger.warning("could not %s: %s", what, redact(f"{type(exc).__name__}: {exc}", secrets))
            outcome.append(False)

    worker = threading.Thread(target=run, name=f"dq-{what.split()[0]}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        logger.warning("could not %s: no complete answer within %g s", what, timeout)
        return False
    return bool(outcome and outcome[0])


def url_secrets(url: str) -> list[str]:
    """The URL and its path and query, each a secret (http.client errors quote the path alone)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return [url, parts.path, parts.query, url.strip()]
    except Exception:
        return [url]
