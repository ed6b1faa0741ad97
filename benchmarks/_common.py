"""Helpers shared by the benchmark scripts: machine facts, worker subprocesses, medians, tables."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    mem_kib = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "ram_gib": round(mem_kib / 2**20, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB.

    VmHWM rather than ru_maxrss: Linux carries the launching process's peak into ru_maxrss across
    exec, so a worker started from a large parent would report the parent's peak.
    """
    with open("/proc/self/status") as status:
        kib = next((int(line.split()[1]) for line in status if line.startswith("VmHWM:")), None)
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / 1024, 1)


def reset_pg(pg_url: str, name: str, create: bool = True) -> None:
    """Drop and create a benchmark's own database on the server of `pg_url` (any SQLAlchemy or libpq URL).

    psycopg is imported here because both virtualenvs (the project's and LangChain's) have it.
    """
    import psycopg
    from psycopg import sql

    with psycopg.connect(re.sub(r"^postgresql\+\w+://", "postgresql://", pg_url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if create:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_pg(pg_url: str, name: str) -> None:
    """Drop a benchmark's own database (made by `reset_pg`)."""
    reset_pg(pg_url, name, create=False)


def start_rest_qdrant(servers: list[subprocess.Popen]) -> str:
    """The REST Qdrant stand-in (the test suite's fake server) in its own process, on a free port;
    appended to `servers` (stop them with `stop_servers`). Returns its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    servers.append(subprocess.Popen([sys.executable, "-m", "dq_pipeline_tests.fake_qdrant", "--port", str(port)], cwd=HERE.parent,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the REST Qdrant stand-in did not start")


def stop_servers(servers: list[subprocess.Popen]) -> None:
    for server in servers:
        server.kill()
        server.wait()
    servers.clear()


def fresh_round(root: Path, rnd: int, configs: list[dict[str, Any]], db_prefix: str, pg_url: str) -> None:
    """Fresh state for every configuration of a round: an empty work folder (`workdir`) and, for the
    ones that record to PostgreSQL (`backend` or `record` "pg"), an empty database (`pg_db`)."""
    for number, config in enumerate(configs):
        config["workdir"] = str(root / f"r{rnd}c{number}")
        shutil.rmtree(config["workdir"], ignore_errors=True)
        Path(config["workdir"]).mkdir(parents=True)
        config["pg_db"] = f"{db_prefix}_c{number}"
        if "pg" in (config.get("backend"), config.get("record")):
            reset_pg(pg_url, config["pg_db"])


def run_worker(python: str, script: Path, spec: dict[str, Any], timeout: float = 7200) -> dict[str, Any]:
    """Run one measurement in a fresh process (so its peak RSS is its own); returns its JSON line."""
    proc = subprocess.run(
        [python, str(script), "_worker", json.dumps(spec)], capture_output=True, text=True, timeout=timeout, env=_worker_env()
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {**spec, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return {**spec, **json.loads(lines[-1])}


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def save(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=1))
        log(f"raw results: {path}")
