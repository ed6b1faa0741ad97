"""The deploy layout (deploy/README.md) as real processes, for the tests that run it.

`Layout` starts each process in a session (process group) of its own, with its output in a log file
the failure messages quote, and ends every process it started and everything they started (run
workers, step processes, Celery pool children) however the test ends. `dagster_database` gives
Dagster's storage a database of its own beside the system of record's, as deploy/README.md asks,
and `dagster_home` puts deploy/dagster.yaml, unchanged, in a DAGSTER_HOME.

Needed services that are missing (RabbitMQ, Redis, dagster-celery) skip these tests, or fail them
with DQ_REQUIRE_POSTGRES=1 (`.ci/run`), as a missing PostgreSQL does (conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from .conftest import REPO, service_unavailable

DEPLOY_YAML = REPO / "deploy" / "dagster.yaml"
BIN = Path(sys.executable).parent  # the virtualenv's dagster, dagster-daemon, dagster-webserver, celery
LOCATION = "dq_pipeline"
REPOSITORY = "__repository__"  # what Dagster names the repository of a Definitions object

T = TypeVar("T")


def require(service: str, reason: str) -> NoReturn:
    """A service these tests need is missing: fail with DQ_REQUIRE_POSTGRES=1 (as in .ci/run), else skip."""
    service_unavailable(service, reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- Dagster's storage


@contextlib.contextmanager
def dagster_database(record_url: str) -> Iterator[dict[str, str]]:
    """A new database on the record's server for Dagster's own storage, dropped after; yields the
    DAGSTER_PG_* variables deploy/dagster.yaml reads."""
    url = make_url(record_url)
    if not url.host:
        require("PostgreSQL over TCP", f"the test PostgreSQL server has no TCP address ({url.render_as_string(hide_password=True)}); Dagster's storage needs host and port")
    name = f"dq_test_{secrets.token_hex(8)}"  # the name pattern pg_server.py creates and drops
    conninfo = psycopg.conninfo.make_conninfo(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password or None, dbname=url.database, connect_timeout=10
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield {
            "DAGSTER_PG_HOST": url.host,
            "DAGSTER_PG_PORT": str(url.port or 5432),
            "DAGSTER_PG_USER": url.username or "postgres",
            "DAGSTER_PG_PASSWORD": url.password or "",
            "DAGSTER_PG_DB": name,
        }
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def dagster_home(root: Path) -> Path:
    """A DAGSTER_HOME whose dagster.yaml is deploy/dagster.yaml, byte for byte."""
    home = root / "dagster_home"
    home.mkdir(parents=True)
    shutil.copyfile(DEPLOY_YAML, home / "dagster.yaml")
    return home


def workspace(root: Path, grpc_port: int) -> Path:
    """The workspace.yaml of deploy/README.md: webserver and daemon load the code server's location."""
    path = root / "workspace.yaml"
    path.write_text(
        "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
        f"      port: {grpc_port}\n      location_name: {LOCATION}\n",
        encoding="utf-8",
    )
    return path


def process_env(values: dict[str, str], python_path: list[Path] | None = None) -> dict[str, str]:
    """The environment of a layout process: this one's, without any DQ_* or DAGSTER_* of the person
    running the tests (their stores are not the test's), plus `values`; the checkout first on
    PYTHONPATH, so every process runs this tree's code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DQ_", "DAGSTER_"))}
    paths = [str(p) for p in [*(python_path or []), REPO]]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"  # logs are read while the processes run
    env.update(values)
    return env


# --------------------------------------------------------------------------- processes


class Layout:
    """Processes started for one test; `stop()` ends them all (a `with` block calls it)."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root = root
        self.env = env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.extra_logs: dict[str, Callable[[], str]] = {}

    def __enter__(self) -> Layout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, name: str, *argv: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("wb")
        try:
            proc = subprocess.Popen(
                [str(a) for a in argv],
                cwd=self.root,
                env=env or self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: ended as a whole
            )
        finally:
            log.close()
        self.processes[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def tails(self, lines: int = 40) -> str:
        parts = []
        for name in self.processes:
            tail = "\n".join(self.log(name).splitlines()[-lines:])
            parts.append(f"----- {name} (last {lines} lines of {self.root / (name + '.log')}) -----\n{tail}")
        for name, extra in self.extra_logs.items():
            with contextlib.suppress(Exception):
                parts.append(f"----- {name} -----\n{extra()}")
        return "\n".join(parts)

    def check_alive(self, what: str) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited (code {proc.returncode}) while waiting for {what}\n{self.tails()}")

    def wait_for(self, what: str, check: Callable[[], T | None], timeout: float, interval: float = 1.0,
                 on_poll: Callable[[], None] | None = None) -> T:
        """The first truthy value of `check()`; an AssertionError naming `what`, with every log, after
        `timeout` seconds or when a process of the layout exits."""
        deadline = time.monotonic() + timeout
        while True:
            if on_poll is not None:
                on_poll()
            value = check()
            if value:
                return value
            self.check_alive(what)
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout:.0f}s\n{self.tails()}")
            time.sleep(interval)

    def stop(self) -> None:
        """SIGTERM to each process group, SIGKILL to whatever is left after a few seconds, and to every
        descendant found before (a run worker or a pool child may sit in a group of its own). The
        daemon goes first, so that it launches nothing while the others end."""
        mine = os.getpgid(0)
        order = sorted(self.processes.values(), key=lambda p: 0 if "daemon" in " ".join(map(str, p.args)) else 1)
        descendants: set[int] = set()
        for proc in order:
            descendants |= _descendants(proc.pid)
            _signal_group(proc.pid, signal.SIGTERM, mine)
        deadline = time.monotonic() + 5
        for proc in order:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in order:
            descendants |= _descendants(proc.pid)
            _signal_group(proc.pid, signal.SIGKILL, mine)
        for pid in descendants:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(pid) != mine:
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)
        for proc in order:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid`, from /proc (a process that outlived its parent is found only
    while that parent lives, so this is read before anything is killed)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _signal_group(pid: int, sig: int, mine: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) != mine:
            os.killpg(pid, sig)


# --------------------------------------------------------------------------- the webserver's GraphQL


def graphql(port: int, query: str, variables: dict[str, Any] | None = None, timeout: float = 30) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        json.dumps({"query": query, "variables": variables or {}}).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = json.load(response)
    if body.get("errors"):
        raise AssertionError(f"GraphQL errors: {body['errors']}")
    return body["data"]


def graphql_or_none(port: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """None while the webserver does not answer yet."""
    try:
        return graphql(port, query, variables, timeout=10)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
