"""Attack on the operations change: metrics, alerts, CLI configuration errors."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from dq_pipeline import alerts
from dq_pipeline.sync.stores.database import make_engine, normalise_url

TOKEN = "T0ATTACK/B0ATTACK/SECRETxTOKENxATTACK"


def test_postgres_scheme_still_means_psycopg() -> None:
    # `postgres://` (Heroku, many hosted PostgreSQL providers) worked before 8b976bf: normalise_url maps it.
    assert normalise_url("postgres://u:pw@127.0.0.1:1/db").startswith("postgresql+psycopg://")
    engine = make_engine("postgres://u:pw@127.0.0.1:1/db")
    try:
        assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()


def test_a_webhook_url_without_scheme_neither_raises_nor_leaks_its_token(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    url = f"hooks.example.invalid/services/{TOKEN}"  # a copy-paste without https://
    monkeypatch.setenv("DQ_ALERT_WEBHOOK_URL", url)
    with caplog.at_level(logging.WARNING, logger="dq_pipeline.alerts"):
        assert alerts.post(url, alerts.message("t", catalog="c", error=None, run_id=None, job=None)) is False  # "posting never raises"
    assert "SECRET" not in caplog.text


class _Dripper:
    """A webhook that answers one byte of its status line every 0.3 s, for ever."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/services/{TOKEN}"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
                if self.stop.is_set():
                    break
                try:
                    conn.send(bytes([byte]))
                except OSError:
                    break
                time.sleep(0.3)
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def test_a_dripping_webhook_is_bounded_by_the_timeout() -> None:
    # TIMEOUT_S bounds each socket read, not the post: a receiver that keeps trickling holds a sensor
    # evaluation (Dagster's default budget 60 s) or the global check for as long as it likes.
    dripper = _Dripper()
    try:
        result: list[bool] = []
        poster = threading.Thread(target=lambda: result.append(alerts.post(dripper.url, {"text": "x"}, timeout=1.0)), daemon=True)
        poster.start()
        poster.join(8.0)
        assert not poster.is_alive(), "post() still running after 8 s with timeout=1"
    finally:
        dripper.close()
    assert result == [False]
