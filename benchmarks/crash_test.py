"""Crash test: real `dq-pipeline` processes killed with SIGKILL, on PostgreSQL, embedded and server Qdrant.

The protocol under test (docs/DESIGN.md, "The write protocol"; hook points in this order):
``locked`` -> ``journal_written`` -> ``qdrant_batch`` (before each upsert batch) -> ``qdrant_written``
-> [one fenced commit transaction: ``pg_flushed`` (rows applied) -> ``before_commit``] ->
``committed`` -> ``retired``. The journal row exists from ``journal_written`` to ``retired``: the
protocol window.

Two worlds, each with its own fresh PostgreSQL database, run side by side (``--sequential``: one
after the other):

**embedded** (embedded Qdrant, one process at a time). Each kill point runs one operation in a
child and kills it, either at a protocol step (a failpoint ``<point>[:<n>]``, injected into the child
by a process hook: it SIGKILLs itself there) or at a random moment (from the parent, three quarters
of them while the catalog's journal row exists, i.e. inside the protocol window; the summary says
where each landed):

* ``sync``             the big catalog edited (updates, deletes, inserts), then ``dq-pipeline sync``
* ``sync --force``     ``dq-pipeline sync --force`` (rewrites the points committed rows use)
* ``cleanup-rejected`` entries rejected first (not killed), then ``dq-pipeline cleanup-rejected``
* ``removal``          a catalog file deleted (or restored), then ``dq-pipeline sync``

**server** (a Qdrant REST server: the test suite's stand-in, dq_pipeline_tests/fake_qdrant.py,
in its own process, so two children can use it at once): lock-loss kill points. Run A
(``sync --catalog`` of the big catalog, 60% of it edited) is paused at a protocol step (a gate, as
test_reliability.py's GATED_CLI does it) or caught at a random moment of its window; its
advisory-lock session is terminated (``pg_terminate_backend``: what a connection killer, failover or
restart does); run B takes the lock over (a sync of the same version, a sync of a newer edit of
the file, or ``repair``); A's gate opens at a random moment; A, B, both (often while both are
alive) or neither are SIGKILLed at random moments.

After each kill point, with every child dead, this process opens the stores and checks, for every
catalog:

* I3  PostgreSQL holds exactly the old or a new version ({entry_key: content_hash}), never a mix
      (with two runs: the old version, A's or B's);
* I1  every row's point is in Qdrant with the row's payload and vector (else it is *lost*);
* I2  every Qdrant point that no row references is listed in a journal row of its catalog
      (leftovers are recorded, not guessed: else an *unrecorded orphan*).

Then it recovers with the next ``dq-pipeline sync`` (the same command again: the new version) or
``dq-pipeline repair`` (the surviving version), and checks that both stores are in sync. Sometimes
(embedded world) it does not recover and kills the next operation too, so recovery itself gets killed.

    python benchmarks/crash_test.py --kills 240 --lock-loss 60 --seed 1 --database-url postgresql://postgres@127.0.0.1:5432/postgres

``--database-url`` names a PostgreSQL server (an admin URL): fresh ``dq_crash_<hex>`` databases are
created there and dropped at the end (``--keep`` keeps them and the work folder). ``--minutes``
stops trying new kill points once the budget is spent (the summary says how many ran). Exit status
0 iff no outcome was divergent or lost, no leftover was unrecorded and every recovery ended in sync.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BIG = "warehouse/columns"  # CSV, `--entries` entries: the wide protocol window
SMALL = "crm/contacts"  # JSON Lines, a few dozen entries
SCRATCH = "scratch/notes"  # YAML, removed and restored
MODEL = "hashing:32"  # the deterministic stand-in: no torch model load in the children
# The protocol's hook points in the order `protocol._write` reaches them (points first, then one
# short fenced commit transaction: `pg_flushed` and `before_commit` are inside it).
PROTOCOL_POINTS = ("locked", "journal_written", "qdrant_batch", "qdrant_written", "pg_flushed", "before_commit", "committed", "retired")
# A kill after one of these (and before `retired`) lands while the run's journal row exists.
IN_WINDOW = frozenset(PROTOCOL_POINTS[1:-1])
UPSERT_BATCH = 256  # SyncedStoreResource's default; the big catalog spans many batches


# --------------------------------------------------------------------------- the catalog folder


class Catalogs:
    """The catalog files, generated from a model this script mutates deterministically."""

    def __init__(self, root: Path, entries: int, rng: random.Random):
        self.root = root
        self.rng = rng
        self.version = 0
        self.big: dict[str, dict[str, str]] = {}
        self.next_column = 0
        tables = max(1, entries // 30)
        for i in range(entries):
            self._add_big(f"t{i % tables:04d}")
        self.small = {f"contact_{i:03d}": 0 for i in range(40)}
        self.present = {BIG: True, SMALL: True, SCRATCH: True}
        self.write_all()

    def _add_big(self, table: str) -> None:
        column = f"c{self.next_column:06d}"
        self.next_column += 1
        self.big[f"{table}.{column}"] = {"table": table, "column": column, "version": str(self.version)}

    def path(self, catalog_id: str) -> Path:
        return self.root / (catalog_id + {BIG: ".csv", SMALL: ".jsonl", SCRATCH: ".yaml"}[catalog_id])

    def write_all(self) -> None:
        for catalog_id in (BIG, SMALL, SCRATCH):
            self.write(catalog_id)

    def write(self, catalog_id: str) -> None:
        path = self.path(catalog_id)
        if not self.present[catalog_id]:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name("." + path.name + ".tmp")  # hidden while written, then renamed into place
        if catalog_id == BIG:
            with tmp.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["table", "column", "kind", "type", "description", "tags", "rules"])
                for key, e in self.big.items():
                    writer.writerow(
                        [
                            e["table"],
                            e["column"],
                            "column",
                            "numeric(18,2)",
                            f"Column {key}, revision {e['version']}: amount in the reporting currency, "
                            "converted at the daily rate; null when not captured, \"quoted\", and, commas.",
                            "finance|kpi",
                            "not_null|non_negative",
                        ]
                    )
        elif catalog_id == SMALL:
            with tmp.open("w", encoding="utf-8") as handle:
                for key, version in self.small.items():
                    handle.write(json.dumps({"key": key, "kind": "table", "description": f"{key} revision {version}"}) + "\n")
        else:
            lines = ["entries:"]
            for i in range(20):
                lines += [f"  - key: note_{i:02d}", "    kind: rule", f"    description: scratch note {i}, generation {self.version}"]
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.replace(path)

    def edit_big(self, share: float) -> None:
        """Update `share` of the big catalog's entries, delete ~3%, insert ~3%."""
        self.version += 1
        self.present[BIG] = True
        keys = list(self.big)
        for key in self.rng.sample(keys, max(1, int(len(keys) * share))):
            self.big[key]["version"] = str(self.version)
        for key in self.rng.sample(keys, max(1, len(keys) // 33)):
            del self.big[key]
        tables = sorted({e["table"] for e in self.big.values()})
        for _ in range(max(1, len(keys) // 33)):
            self._add_big(self.rng.choice(tables))
        self.write(BIG)

    def edit_small(self) -> None:
        self.present[SMALL] = True
        for key in self.rng.sample(list(self.small), 10):
            self.small[key] += 1
        self.write(SMALL)

    def toggle(self, catalog_id: str) -> None:
        """Remove a present catalog file, or restore a removed one."""
        self.present[catalog_id] = not self.present[catalog_id]
        self.write(catalog_id)


# --------------------------------------------------------------------------- the stores, as seen after a kill


@dataclass
class Row:
    content_hash: str
    point_id: str
    collection: str
    status: str
    vector: bytes


@dataclass
class Snapshot:
    rows: dict[str, dict[str, Row]]  # catalog -> key -> row
    journal: dict[str, list[dict[str, Any]]]  # catalog -> journal rows
    points: dict[str, dict[tuple[str, str], tuple[dict[str, Any], list[float]]]]  # catalog -> (collection, id) -> (payload, vector)
    rejections: dict[str, set[tuple[str, str]]]

    def state(self, catalog_id: str) -> dict[str, str]:
        return {k: r.content_hash for k, r in self.rows.get(catalog_id, {}).items()}

    def catalogs(self) -> set[str]:
        return set(self.rows) | set(self.journal) | set(self.points)


def snapshot(database_url: str, qdrant_path: str | None = None, qdrant_url: str | None = None) -> Snapshot:
    """Both stores, read in this process (call only while no child holds embedded Qdrant)."""
    from sqlalchemy import select

    from dq_pipeline.sync import SyncedStore
    from dq_pipeline.sync.stores.schema import entries, journal, rejections

    with SyncedStore.open(database_url, qdrant_path=qdrant_path, qdrant_url=qdrant_url) as store:
        rows: dict[str, dict[str, Row]] = {}
        jrows: dict[str, list[dict[str, Any]]] = {}
        rejected: dict[str, set[tuple[str, str]]] = {}
        with store.engine.connect() as conn:
            columns = (entries.c.catalog_id, entries.c.entry_key, entries.c.content_hash, entries.c.point_id, entries.c.collection, entries.c.status, entries.c.vector)
            for r in conn.execute(select(*columns)):
                rows.setdefault(r.catalog_id, {})[r.entry_key] = Row(r.content_hash, r.point_id, r.collection, r.status, r.vector)
            for r in conn.execute(select(journal)):
                jrows.setdefault(r.catalog_id, []).append(dict(r._mapping))
            for r in conn.execute(select(rejections.c.catalog_id, rejections.c.entry_key, rejections.c.content_hash)):
                rejected.setdefault(r.catalog_id, set()).add((r.entry_key, r.content_hash))
        points: dict[str, dict[tuple[str, str], tuple[dict[str, Any], list[float]]]] = {}
        client = store.index.client
        for collection in store.index.collections():
            offset = None
            while True:
                records, offset = client.scroll(collection, limit=2000, offset=offset, with_payload=True, with_vectors=True)
                for rec in records:
                    payload = dict(rec.payload or {})
                    points.setdefault(str(payload.get("catalog_id")), {})[(collection, str(rec.id))] = (payload, rec.vector)  # type: ignore[assignment]
                if offset is None:
                    break
    return Snapshot(rows, jrows, points, rejected)


def journal_summary(snap: Snapshot) -> list[str]:
    return [
        f"{cid}:{j['run_id'][:8]}:{j['phase']}:new={sum(len(v) for v in j['new_points'].values())}"
        f":retired={sum(len(_journaled_ids(v)) for v in j['retired_points'].values())}:{j['created_at']:%H:%M:%S.%f}"
        for cid, rows in sorted(snap.journal.items())
        for j in rows
    ]


def violations(snap: Snapshot, catalog_id: str) -> tuple[list[str], list[str]]:
    """(lost: rows whose point is missing or differs (I1), unrecorded: orphans no journal row lists (I2))."""
    lost: list[str] = []
    points = snap.points.get(catalog_id, {})
    for key, row in snap.rows.get(catalog_id, {}).items():
        found = points.get((row.collection, row.point_id))
        if found is None:
            lost.append(f"{catalog_id}:{key}: point {row.point_id} missing")
            continue
        payload, vector = found
        if (payload.get("entry_key"), payload.get("content_hash")) != (key, row.content_hash):
            lost.append(f"{catalog_id}:{key}: point {row.point_id} has payload {payload}")
        elif not np.allclose(np.asarray(vector, dtype=np.float32), np.frombuffer(row.vector, dtype="<f4"), atol=1e-5):
            lost.append(f"{catalog_id}:{key}: point {row.point_id} has another vector")
    referenced = {(r.collection, r.point_id) for r in snap.rows.get(catalog_id, {}).values()}
    recorded = {
        (collection, pid)
        for j in snap.journal.get(catalog_id, [])
        for column in ("new_points", "retired_points")
        for collection, ids in j[column].items()
        for pid in _journaled_ids(ids)
    }
    unrecorded = [f"{catalog_id}:{c}/{p}" for c, p in sorted(set(points) - referenced - recorded)]
    return lost, unrecorded


def _journaled_ids(ids: Any) -> list[str]:
    """A journal row's ids of one collection: a list, or (retired points) lists by writer."""
    return [pid for group in ids.values() for pid in group] if isinstance(ids, dict) else list(ids)


def expected_after_sync(catalogs_root: Path, catalog_id: str, old: Snapshot) -> dict[str, str]:
    """What a completed sync of the catalog folder holds for one catalog: the file's entries, except
    versions a reviewer rejected whose row was cleaned up (they stay out until their content changes)."""
    from dq_pipeline.catalog import load_catalog

    wanted = load_catalog(catalogs_root, catalog_id)
    rows, rejected = old.rows.get(catalog_id, {}), old.rejections.get(catalog_id, set())
    return {e.key: e.content_hash for e in wanted if e.key in rows or (e.key, e.content_hash) not in rejected}


# --------------------------------------------------------------------------- running the command


CHILDREN: set[subprocess.Popen[str]] = set()  # killed if this script is interrupted

# Every child runs the real CLI (`dq_pipeline.cli.main`, what the `dq-pipeline` script calls) with a
# process hook (`hooks.install_process_hook`, which the package never sets itself): each point reached
# is appended to $DQ_CRASH_TRACE (so the parent knows where a kill landed), at $DQ_CRASH_GATE
# (`<point>[:<n>]`, the n-th time) the child pauses until the parent creates `<token>.open` in
# $DQ_CRASH_GATE_DIR (it announces `<token>.at_gate`), and at the failpoint given as its first argument
# (`<point>[:<n>]`, the n-th time one run reaches it; `-` for none) it SIGKILLs itself, after the trace
# line is written, so a failpoint kill is traced too. The gate is the mechanism of test_reliability.py's
# GATED_CLI; the failpoint that of dq_pipeline_tests/failpoint_cli.py.
CHILD = r"""
import json, os, signal, sys, time
from pathlib import Path
from dq_pipeline.sync.write import hooks

trace = os.environ.get("DQ_CRASH_TRACE", "")
gate, _, nth = os.environ.get("DQ_CRASH_GATE", "").partition(":")
nth = int(nth or 1)
token = os.environ.get("DQ_CRASH_TOKEN", str(os.getpid()))
gate_dir = Path(os.environ.get("DQ_CRASH_GATE_DIR", "."))
failpoint, _, kill_nth = ("" if sys.argv[1] == "-" else sys.argv[1]).partition(":")
kill_nth = int(kill_nth or 1)
assert not failpoint or failpoint in hooks.POINTS, f"unknown failpoint {failpoint!r}"
assert sys.argv[2] == "--"
seen = {}

def traced(point, reached, info):
    seen[point] = seen.get(point, 0) + 1
    if trace:
        with open(trace, "a") as log:
            log.write(json.dumps([point, seen[point], time.time()]) + "\n")
    if gate and point == gate and seen[point] == nth:
        (gate_dir / f"{token}.at_gate").touch()
        deadline = time.time() + 180
        while not (gate_dir / f"{token}.open").exists() and time.time() < deadline:
            time.sleep(0.005)
    if failpoint and point == failpoint and reached == kill_nth:  # counted per run, as before
        os.kill(os.getpid(), signal.SIGKILL)

hooks.install_process_hook(traced)
from dq_pipeline.cli import main
sys.argv = ["dq-pipeline", *sys.argv[3:]]
main()
"""

def trace_of(path: Path) -> list[tuple[str, int, float]]:
    """The hook points a child reached, in order (a line cut by the kill is skipped)."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                point, n, t = json.loads(line)
                found.append((point, n, t))
    return found


def landing(path: Path) -> str:
    """Where a killed child was: after its last hook point (`qdrant_batch` numbered), or `startup`."""
    points = trace_of(path)
    if not points:
        return "startup"
    point, n, _ = points[-1]
    return f"{point}:{n}" if point == "qdrant_batch" else point


def zone(landed: str) -> str:
    """startup / before-journal (lock, recovery, plan, embed) / window (the journal row exists) / after."""
    point = landed.split(":")[0]
    return "window" if point in IN_WINDOW else "after" if point == "retired" else "startup" if point == "startup" else "before-journal"


STOPPING = threading.Event()  # set once the script is ending: no new children


def kill_children() -> None:
    STOPPING.set()
    for child in list(CHILDREN):
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()


@dataclass
class Step:
    op: str  # sync | force | cleanup | removal
    kill: str  # "fp:<point>[:<n>]" | "window" | "anywhere"
    recovery: str  # rerun | repair | chain (no recovery: the next step's run recovers)
    everything: bool = False  # sync every catalog (no --catalog): other catalogs must stay exactly as they were
    share: float | None = None  # share of the big catalog's entries a `sync` step edits (default: random)
    # Lock loss (op "lockloss"): run A of the big catalog is paused at `gate` (or, with gate
    # "running", caught at a random moment of its journal window), its advisory-lock session is
    # terminated, then run B (`second`: sync of the same version, sync of a `newer` edit, or
    # `repair`) takes the lock over; `victims` (A, B, both, none) are SIGKILLed at random moments.
    gate: str = ""
    second: str = ""
    victims: str = ""


@dataclass
class Outcome:
    step: Step
    target: str
    result: str  # old | new | old+pending-journal | new+committed-journal | ... | finished-before-kill
    exit: int | None
    seconds: float
    problems: list[str] = field(default_factory=list)
    landed: str = ""  # where the kill landed (the last hook point the killed child reached)
    world: str = "embedded"  # embedded | server (the Qdrant the children used)
    kills: int = 0  # SIGKILLs that hit a live child
    notes: list[str] = field(default_factory=list)  # facts worth reading that break no invariant


class World:
    def __init__(self, database_url: str, workdir: Path, entries: int, seed: int, log: Any = print, qdrant_url: str | None = None):
        self.database_url = database_url
        self.workdir = workdir
        self.rng = random.Random(seed)
        self.log = log
        self.catalog_dir = workdir / "catalogs"
        self.qdrant_url = qdrant_url  # a Qdrant server (two children can be alive at once), else embedded
        self.qdrant_path = None if qdrant_url else str(workdir / "qdrant")
        self.kind = "server" if qdrant_url else "embedded"
        self.catalogs = Catalogs(self.catalog_dir, entries, random.Random(seed + 1))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DQ_") and k != "DAGSTER_HOME"}
        self.env.update(
            {
                "DQ_DATABASE_URL": database_url,
                "DQ_DATA_DIR": str(workdir / "data"),
                "DQ_CATALOG_DIR": str(self.catalog_dir),
                "DQ_EMBEDDING_MODEL": MODEL,
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env.update({"DQ_QDRANT_URL": qdrant_url} if qdrant_url else {"DQ_QDRANT_PATH": str(self.qdrant_path)})
        self.exe = shutil.which("dq-pipeline", path=str(Path(sys.executable).parent)) or "dq-pipeline"
        self.gates = workdir / "gates"
        self.gates.mkdir(parents=True, exist_ok=True)
        self.spawned = 0
        self.window_s = 1.0  # the journal row's lifetime in a full write; calibrated by setup()
        self.run_s = 6.0
        # Per operation, measured on the unkilled reruns: the journal row's lifetime and the whole run.
        self.windows: dict[str, float] = {}
        self.runs: dict[str, float] = {}
        # A window kill's delay is drawn from [0, window * scale]; the scale shrinks when a kill landed
        # after the window (or the run finished first) and grows when it landed inside, so that the
        # random kills keep landing mostly inside the protocol window whatever the run's size.
        self.window_scale: dict[str, float] = {}

    def window_delay(self, op: str) -> float:
        return self.rng.uniform(0, self.windows.get(op, self.window_s) * self.window_scale.get(op, 1.0))

    def aimed(self, op: str, landed: str | None) -> None:
        """Adjust the window scale of `op` after a window kill that landed at `landed` (None: the run finished)."""
        where = zone(landed) if landed else "after"
        factor = 1.1 if where == "window" else 0.6 if where == "after" else 1.0
        self.window_scale[op] = min(1.5, max(0.05, self.window_scale.get(op, 1.0) * factor))

    # -- children

    def command(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """The installed `dq-pipeline`, unkilled (kills go through `spawn`)."""
        return subprocess.run([self.exe, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False)

    def snap(self) -> Snapshot:
        return snapshot(self.database_url, qdrant_path=self.qdrant_path, qdrant_url=self.qdrant_url)

    def spawn(self, *args: str, failpoint: str | None = None, gate: str = "") -> subprocess.Popen[str]:
        """A traced child (see CHILD); its trace is `child.trace`, its gate token `child.token`."""
        if STOPPING.is_set():
            raise RuntimeError("the crash test is stopping")
        self.spawned += 1
        token = f"c{self.spawned:05d}"
        trace = self.gates / f"{token}.trace"
        env = dict(self.env, DQ_CRASH_TRACE=str(trace), DQ_CRASH_TOKEN=token, DQ_CRASH_GATE_DIR=str(self.gates), DQ_CRASH_GATE=gate)
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, failpoint or "-", "--", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        child.trace = trace  # type: ignore[attr-defined]
        child.token = token  # type: ignore[attr-defined]
        CHILDREN.add(child)
        return child

    def at_gate(self, child: subprocess.Popen[str]) -> bool:
        return (self.gates / f"{child.token}.at_gate").exists()  # type: ignore[attr-defined]

    def open_gate(self, child: subprocess.Popen[str]) -> None:
        (self.gates / f"{child.token}.open").touch()  # type: ignore[attr-defined]

    def terminate_lock_sessions(self) -> int:
        """End every session holding an advisory lock in this database (what a connection killer,
        a failover or a server restart does to the lock's session); returns how many."""
        with contextlib.closing(self._journal_probe()) as probe:
            rows = probe.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND pid <> pg_backend_pid()"
            ).fetchall()
        return sum(1 for (ok,) in rows if ok)

    def _journal_probe(self):  # -> psycopg.Connection
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(self.database_url)
        return psycopg.connect(
            host=url.host, port=url.port, user=url.username, password=url.password, dbname=url.database, autocommit=True
        )

    def setup(self) -> Snapshot:
        """The first full sync, timed: how long a full write of the big catalog keeps its journal row."""
        started = time.monotonic()
        child = self.spawn("sync")
        seen = self._watch_journal(child, BIG, stop_when_gone=True)
        out, err = child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"the initial sync failed (exit {child.returncode}): {err.strip() or out.strip()}")
        self.run_s = time.monotonic() - started
        if seen:
            self.window_s = max(0.05, seen[1] - seen[0])
        self.log(f"setup: full sync {self.run_s:.1f}s, journal window of {BIG} {self.window_s:.2f}s")
        state = self.snap()
        problems = self.check_in_sync(state, "setup")
        if problems:
            raise RuntimeError(f"the initial sync left the stores out of sync: {problems}")
        return state

    def _watch_journal(
        self, child: subprocess.Popen[str], catalog_id: str, stop_when_gone: bool, ignore: frozenset[str] = frozenset()
    ) -> tuple[float, float] | None:
        """Poll PostgreSQL until the child's journal row of the catalog appears (then return), or is gone again.

        `ignore`: run ids of rows an earlier (killed) run left, which are not this child's.
        """
        appeared = None
        with contextlib.closing(self._journal_probe()) as probe:
            while child.poll() is None:
                try:
                    found = probe.execute("SELECT run_id FROM dq_journal WHERE catalog_id = %s", (catalog_id,)).fetchall()
                    count = len({run_id for (run_id,) in found} - ignore)
                except Exception:  # the table may not exist yet
                    count = 0
                now = time.monotonic()
                if count and appeared is None:
                    appeared = now
                    if not stop_when_gone:
                        return appeared, appeared
                elif not count and appeared is not None:
                    return appeared, now
                time.sleep(0.003)
        return (appeared, time.monotonic()) if appeared else None

    # -- one kill point

    def prepare(self, step: Step, before: Snapshot) -> tuple[list[str], str, dict[str, dict[str, str]], Snapshot]:
        """Change the folder or the record for the step; returns (command, target, expected new states, old stores)."""
        new: dict[str, dict[str, str]] = {}
        if step.op == "sync":
            self.catalogs.edit_big(step.share or self.rng.choice((0.1, 0.3, 0.6)))
            if step.everything:
                self.catalogs.edit_small()
            target, args = BIG, ["sync"]
        elif step.op == "force":
            target, args = BIG, ["sync", "--force"]
        elif step.op == "removal":
            target = self.rng.choice((BIG, SCRATCH)) if step.everything else SCRATCH
            self.catalogs.toggle(target)
            args = ["sync"]
        elif step.op == "cleanup":
            target, args = BIG, ["cleanup-rejected"]
            active = [k for k, r in sorted(before.rows.get(BIG, {}).items()) if r.status == "active"]
            keys = self.rng.sample(active, min(len(active), self.rng.choice((5, 40, 150, 1000))))
            if keys:
                done = self.command("reject", "--catalog", BIG, *keys, "--by", "crash-test")
                if done.returncode != 0:
                    raise RuntimeError(f"reject failed: {done.stderr.strip()}")
                before = self.snap()
            new[BIG] = {k: r.content_hash for k, r in before.rows.get(BIG, {}).items() if r.status != "rejected"}
        else:
            raise ValueError(step.op)
        if not step.everything:
            args += ["--catalog", target]
        for catalog_id in before.catalogs() | {BIG, SMALL, SCRATCH}:
            if catalog_id in new:
                continue
            syncs_it = args[0] == "sync" and (step.everything or catalog_id == target)
            new[catalog_id] = expected_after_sync(self.catalog_dir, catalog_id, before) if syncs_it else before.state(catalog_id)
        return args, target, new, before

    def kill_point(self, step: Step, current: Snapshot | None = None) -> tuple[Outcome, Snapshot]:
        """One kill point; `current`: the stores as the previous one left them (read again if None)."""
        args, target, new, before = self.prepare(step, current or self.snap())
        old = {cid: before.state(cid) for cid in new}

        started = time.monotonic()
        failpoint = step.kill[3:] if step.kill.startswith("fp:") else None
        child = self.spawn(*args, failpoint=failpoint)
        if failpoint is None:
            if step.kill == "window":
                left = frozenset(j["run_id"] for j in before.journal.get(target, []))
                self._watch_journal(child, target, stop_when_gone=False, ignore=left)
                delay = self.window_delay(step.op)
            else:
                delay = self.rng.uniform(0, self.runs.get(step.op, self.run_s))
            deadline = time.monotonic() + delay
            while child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
        out, err = child.communicate(timeout=600)
        seconds = time.monotonic() - started
        killed = child.returncode == -signal.SIGKILL
        if step.kill == "window":
            self.aimed(step.op, landing(child.trace) if killed else None)  # type: ignore[attr-defined]

        after = self.snap()
        problems: list[str] = []
        if not killed and child.returncode != 0:
            problems.append(f"the run ended with exit {child.returncode} instead of being killed: {(err or out).strip()[:300]}")
        result = ""
        for catalog_id in sorted(new):
            state = after.state(catalog_id)
            phases = sorted({j["phase"] for j in after.journal.get(catalog_id, [])})
            if state == old[catalog_id] and state == new[catalog_id]:
                label = "unchanged"
            elif state == old[catalog_id]:
                label = "old"
            elif state == new[catalog_id]:
                label = "new"
            else:
                label = "DIVERGENT"
                extra = sorted(set(state.items()) ^ set(new[catalog_id].items()))[:3]
                problems.append(
                    f"divergent: {catalog_id} holds {len(state)} rows, old {len(old[catalog_id])}, new {len(new[catalog_id])} (e.g. {extra})"
                )
            lost, unrecorded = violations(after, catalog_id)
            problems += [f"lost: {x}" for x in lost[:5]] + [f"unrecorded orphan: {x}" for x in unrecorded[:5]]
            if len(lost) > 5 or len(unrecorded) > 5:
                problems.append(f"... {len(lost)} lost, {len(unrecorded)} unrecorded in {catalog_id}")
            if catalog_id == target:
                result = label + (f"+{'+'.join(phases)}-journal" if phases else "")
        if not killed:
            result = "finished-before-kill" if failpoint is None else f"failpoint-not-reached ({result})"
        outcome = Outcome(
            step, target, result, child.returncode, round(seconds, 2), problems,
            landed=landing(child.trace) if killed else "", world=self.kind, kills=int(killed),  # type: ignore[attr-defined]
        )

        if step.recovery == "chain":
            return outcome, after
        survived = {cid: after.state(cid) for cid in new}
        done = self.rerun(step.op, args, target, after) if step.recovery == "rerun" else self.command("repair")
        if done.returncode != 0:
            problems.append(f"{step.recovery} exited {done.returncode}: {(done.stderr or done.stdout).strip()[:300]}")
        final = self.snap()
        # A command limited to one catalog (--catalog) recovers that one; a leftover of an earlier
        # chained kill in another catalog waits for that catalog's next run (or repair).
        scope = None if step.recovery == "repair" or step.everything else {target}
        unsynced = self.check_in_sync(final, step.recovery, only=scope)
        if unsynced:  # what is needed to investigate
            unsynced.append(f"journal after the kill: {journal_summary(after)}; after {step.recovery}: {journal_summary(final)}")
            unsynced.append(f"{step.recovery} output: {(done.stdout + done.stderr).strip()[-600:]}")
        problems += unsynced
        wanted = new if step.recovery == "rerun" else survived
        for catalog_id, state in wanted.items():
            if final.state(catalog_id) != state:
                problems.append(f"after {step.recovery}: {catalog_id} holds {len(final.state(catalog_id))} rows, expected {len(state)}")
        return outcome, final

    # -- one lock-loss kill point

    def lock_loss(self, step: Step, current: Snapshot | None = None) -> tuple[Outcome, Snapshot]:
        """Run A of the big catalog loses its lock mid-protocol, run B takes over, A and/or B are killed.

        Then, with both dead: I3 (the record holds the old version or one of the two runs' new
        versions, never a mix), I1 and I2 (every leftover named by a journal row) for every
        catalog; then recovery (the same sync again, or repair) must end in sync.
        """
        before = current or self.snap()
        self.catalogs.edit_big(step.share or self.rng.choice((0.3, 0.6)))
        versions = {"old": before.state(BIG), "A": expected_after_sync(self.catalog_dir, BIG, before)}
        old = {cid: before.state(cid) for cid in before.catalogs() | {BIG, SMALL, SCRATCH}}
        args_a = ["sync", "--catalog", BIG]
        started = time.monotonic()
        timeline: list[str] = []

        def mark(event: str) -> None:
            timeline.append(f"{time.monotonic() - started:.2f}s {event}")

        gate = "" if step.gate == "running" else step.gate
        a = self.spawn(*args_a, gate=gate)
        b: subprocess.Popen[str] | None = None
        problems: list[str] = []
        notes: list[str] = []
        kills = 0
        # 1. A reaches its gate (or, running, some moment of its journal window).
        deadline = time.monotonic() + 300
        if gate:
            while not self.at_gate(a) and a.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            reached = self.at_gate(a)
        else:
            left = frozenset(j["run_id"] for j in before.journal.get(BIG, []))
            self._watch_journal(a, BIG, stop_when_gone=False, ignore=left)
            until = time.monotonic() + self.window_delay("lockloss")
            while a.poll() is None and time.monotonic() < until:
                time.sleep(0.002)
            reached = a.poll() is None
            self.aimed("lockloss", landing(a.trace) if reached else None)  # type: ignore[attr-defined]
        landed_a = landing(a.trace)  # type: ignore[attr-defined]
        mark(f"A at {landed_a}" + ("" if reached else f" (exited {a.returncode} first)"))
        # 2. A's lock session ends; 3. B takes the lock over.
        terminated = self.terminate_lock_sessions() if a.poll() is None else 0
        mark(f"terminated {terminated} advisory-lock session(s)")
        if a.poll() is None and terminated == 0:
            notes.append(f"A held no advisory lock at {landed_a}")
        versions["B"] = versions["A"]
        if step.second == "newer":  # the file changes again: A's parse is now stale (I8)
            self.catalogs.edit_big(0.1)
            versions["B"] = expected_after_sync(self.catalog_dir, BIG, before)
        args_b = ["repair", "--catalog", BIG] if step.second == "repair" else ["sync", "--catalog", BIG]
        b = self.spawn(*args_b)
        mark(f"B spawned: {' '.join(args_b)}")
        # 4. Release A at a random moment, and SIGKILL the victims at random moments.
        horizon = self.runs.get("B", self.run_s)  # B's own run, as measured when it was not killed
        now = b_started = time.monotonic()
        actions: list[tuple[float, str]] = []
        if gate:
            actions.append((now + self.rng.uniform(0, horizon), "open"))
        if step.victims in ("A", "both"):
            actions.append((now + self.rng.uniform(0, horizon), "kill A"))
        if step.victims in ("B", "both"):
            actions.append((now + self.rng.uniform(0, horizon), "kill B"))
        actions.sort()
        deadline = time.monotonic() + 300
        while (a.poll() is None or b.poll() is None) and time.monotonic() < deadline:
            while actions and actions[0][0] <= time.monotonic():
                _, action = actions.pop(0)
                if action == "open":
                    if a.poll() is None:
                        self.open_gate(a)
                        mark("A's gate opened")
                    continue
                child = a if action == "kill A" else b
                if child.poll() is None:
                    where = landing(child.trace)  # type: ignore[attr-defined]
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
                    kills += 1
                    other = b if child is a else a
                    mark(f"{action} after {where}" + (" (the other alive)" if other.poll() is None else ""))
                    if child is a:
                        landed_a = where
            time.sleep(0.002)
        for name, child in (("A", a), ("B", b)):
            if child.poll() is None:
                problems.append(f"hung: {name} still running after 300 s (killed)")
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        out_a, err_a = a.communicate()
        out_b, err_b = b.communicate()
        if b.returncode == 0:
            self.runs["B"] = time.monotonic() - b_started if b.poll() is not None else horizon
        for name, child, err in (("A", a, err_a), ("B", b, err_b)):
            if child.returncode != -signal.SIGKILL:
                mark(f"{name} exited {child.returncode} after {landing(child.trace)}" + (f": {err.strip().splitlines()[-1][:200]}" if err.strip() and child.returncode else ""))  # type: ignore[attr-defined]
                if child.returncode not in (0, 1) or "Traceback" in err:
                    problems.append(f"the run ended with exit {child.returncode} ({name}): {err.strip()[-300:]}")
        if b.returncode == 1 and step.second != "repair":
            notes.append(f"B (which held the lock) failed: {err_b.strip().splitlines()[-1][:200] if err_b.strip() else '?'}")
        seconds = time.monotonic() - started

        # 5. The invariants, with both children dead.
        after = self.snap()
        state = after.state(BIG)
        names = [n for n in ("old", "A", "B") if versions[n] == state]
        label = "=".join(names) if names else "DIVERGENT"
        if not names:
            extra = sorted(set(state.items()) ^ set(versions["B"].items()))[:3]
            problems.append(f"divergent: {BIG} holds {len(state)} rows, old {len(versions['old'])}, A {len(versions['A'])}, B {len(versions['B'])} (e.g. {extra})")
        for catalog_id in sorted(after.catalogs() | set(old)):
            if catalog_id != BIG and after.state(catalog_id) != old.get(catalog_id, {}):
                problems.append(f"divergent: {catalog_id} changed although only {BIG} was synced")
            lost, unrecorded = violations(after, catalog_id)
            problems += [f"lost: {x}" for x in lost[:5]] + [f"unrecorded orphan: {x}" for x in unrecorded[:5]]
            if len(lost) > 5 or len(unrecorded) > 5:
                problems.append(f"... {len(lost)} lost, {len(unrecorded)} unrecorded in {catalog_id}")
        phases = sorted({j["phase"] for j in after.journal.get(BIG, [])})
        exits = "/".join(f"{n}={'killed' if c.returncode == -signal.SIGKILL else c.returncode}" for n, c in (("A", a), ("B", b)))
        result = f"{label}{'+' + '+'.join(phases) + '-journal' if phases else ''} {exits}"
        if problems:  # what is needed to investigate
            problems.append(f"sequence: {timeline}; journal after: {journal_summary(after)}")
        outcome = Outcome(step, BIG, result, a.returncode, round(seconds, 2), problems, landed=landed_a, world=self.kind, kills=kills, notes=notes)
        outcome.notes.append("; ".join(timeline))

        # 6. Recovery: the same sync again (the folder's version), or repair (the surviving version).
        done = self.rerun("sync", ["sync", "--catalog", BIG], BIG, after) if step.recovery == "rerun" else self.command("repair")
        if done.returncode != 0:
            problems.append(f"{step.recovery} exited {done.returncode}: {(done.stderr or done.stdout).strip()[:300]}")
        final = self.snap()
        unsynced = self.check_in_sync(final, step.recovery, only=None if step.recovery == "repair" else {BIG})
        if unsynced:
            unsynced.append(f"sequence: {timeline}; journal after the kill: {journal_summary(after)}; after {step.recovery}: {journal_summary(final)}")
        problems += unsynced
        wanted = versions["B"] if step.recovery == "rerun" else state
        if final.state(BIG) != wanted:
            problems.append(f"after {step.recovery}: {BIG} holds {len(final.state(BIG))} rows, expected {len(wanted)}")
        return outcome, final

    def rerun(self, op: str, args: list[str], target: str, after: Snapshot) -> subprocess.CompletedProcess[str]:
        """The same command again, unkilled; its timings aim the next random kills of this operation."""
        started = time.monotonic()
        child = self.spawn(*args)
        left = frozenset(j["run_id"] for j in after.journal.get(target, []))
        seen = self._watch_journal(child, target, stop_when_gone=True, ignore=left)
        out, err = child.communicate(timeout=600)
        if child.returncode == 0:
            self.runs[op] = time.monotonic() - started
            if seen and seen[1] > seen[0]:
                self.windows[op] = seen[1] - seen[0]
        return subprocess.CompletedProcess(args, child.returncode, out, err)

    def check_in_sync(self, snap: Snapshot, when: str, only: set[str] | None = None) -> list[str]:
        """I2 after a run that ended: equal id sets, payloads match, no journal row left (for the
        catalogs in `only`, default all; the others must still satisfy I1 and have every leftover recorded)."""
        problems = []
        for catalog_id in sorted(snap.catalogs()):
            referenced = {(r.collection, r.point_id) for r in snap.rows.get(catalog_id, {}).values()}
            lost, unrecorded = violations(snap, catalog_id)
            orphans = set(snap.points.get(catalog_id, {})) - referenced
            if only is not None and catalog_id not in only:
                problems += [f"lost: {x}" for x in lost[:5]] + [f"unrecorded orphan: {x}" for x in unrecorded[:5]]
                continue
            if lost or orphans or snap.journal.get(catalog_id):
                problems.append(
                    f"not in sync after {when}: {catalog_id}: {len(lost)} missing/mismatched, {len(orphans)} orphans, "
                    f"{len(snap.journal.get(catalog_id, []))} journal rows"
                )
        return problems


# --------------------------------------------------------------------------- plans and the summary


def random_plan(kills: int, rng: random.Random, batches: int, failpoint_share: float = 0.4) -> list[Step]:
    """Kill points: a share at every protocol step in turn (and every Qdrant batch), the rest at random moments."""
    failpoints = [p for p in PROTOCOL_POINTS if p != "qdrant_batch"] + [f"qdrant_batch:{n}" for n in range(1, batches + 1)]
    ops = ["sync"] * 5 + ["force"] * 2 + ["cleanup"] * 2 + ["removal"] * 2
    plan: list[Step] = []
    cycle = 0
    for _ in range(kills):
        op = rng.choice(ops)
        if rng.random() < failpoint_share:
            point = failpoints[cycle % len(failpoints)]
            cycle += 1
            if op != "sync" and point.startswith("qdrant_batch"):  # deletes write no points; a force writes them all
                op = "force" if op != "removal" else "sync"
            kill = f"fp:{point}"
        else:
            kill = "window" if rng.random() < 0.75 else "anywhere"
        recovery = rng.choices(["rerun", "repair", "chain"], weights=[5, 3, 2])[0]
        everything = kill == "anywhere" or (kill == "window" and rng.random() < 0.3)  # failpoints: the big catalog's run
        share = 0.6 if kill.startswith("fp:qdrant_batch") else None  # enough changed entries to reach batch n
        plan.append(Step(op, kill, recovery, everything=everything, share=share))
    if plan:
        plan[-1].recovery = "rerun"
    return plan


def lock_loss_plan(count: int, rng: random.Random, batches: int) -> list[Step]:
    """Lock-loss kill points: A paused at every protocol step in turn (every Qdrant batch too) or
    caught at a random moment of its window; B a sync of the same or a newer version, or a repair;
    victims A, B, both (often while both are alive) or none (both run to their end)."""
    gates = ["locked", "journal_written", *(f"qdrant_batch:{n}" for n in range(1, batches + 1)), "qdrant_written",
             "pg_flushed", "before_commit", "committed", "running", "running"]
    plan = []
    for number in range(count):
        second = rng.choices(["sync", "newer", "repair"], weights=[5, 2, 2])[0]
        victims = rng.choices(["A", "B", "both", "none"], weights=[3, 3, 4, 1])[0]
        recovery = rng.choice(["rerun", "repair"])
        plan.append(Step("lockloss", "lockloss", recovery, share=0.6, gate=gates[number % len(gates)], second=second, victims=victims))
    return plan


def run(
    plan: list[Step], database_url: str, workdir: Path, entries: int, seed: int, log: Any = print, final: bool = True,
    qdrant_url: str | None = None, deadline: float | None = None,
) -> dict[str, Any]:
    """Run the plan's kill points in one world (stopping early, with what was done, at `deadline`)."""
    world = World(database_url, workdir, entries, seed, log, qdrant_url=qdrant_url)
    current = world.setup()
    outcomes: list[Outcome] = []
    for number, step in enumerate(plan, start=1):
        if deadline is not None and time.monotonic() > deadline:
            log(f"time budget spent: stopping after {number - 1} of {len(plan)} kill points")
            break
        outcome, current = world.lock_loss(step, current) if step.op == "lockloss" else world.kill_point(step, current)
        outcomes.append(outcome)
        status = "ok" if not outcome.problems else "PROBLEM: " + "; ".join(outcome.problems[:3])
        kill = f"gate={step.gate} B={step.second} kill={step.victims}" if step.op == "lockloss" else f"kill={step.kill}"
        log(
            f"[{number}/{len(plan)}] {step.op:<8} {kill:<40} {outcome.target:<18} -> {outcome.result:<34} landed={outcome.landed or '-':<16} "
            f"recovery={step.recovery:<6} {outcome.seconds:5.1f}s {status}"
        )
        if outcome.problems or (step.op == "lockloss" and outcome.notes[:-1]):
            for note in outcome.notes:
                log(f"      note: {note}")
    final_problems: list[str] = []
    if final:  # the folder's current version, and the CLI's own verdict
        final_sync = world.command("sync", "--json")
        verified = world.command("verify", "--json")
        final_problems = world.check_in_sync(world.snap(), "the final sync")
        if final_sync.returncode != 0 or verified.returncode != 0 or not json.loads(verified.stdout or "{}").get("in_sync"):
            final_problems.append(f"final sync exit {final_sync.returncode}, verify exit {verified.returncode}: {verified.stdout[-500:]}")
    return summarize(outcomes, final_problems, entries, database_url)


def summarize(outcomes: list[Outcome], final_problems: list[str], entries: int, database_url: str) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    def problems_of(prefix: str) -> int:
        return sum(1 for o in outcomes if any(p.startswith(prefix) for p in o.problems))

    def kind(o: Outcome) -> str:
        if o.step.op == "lockloss":
            return "lockloss"
        return o.step.kill.split(":")[0] + (":" + o.step.kill.split(":")[1] if o.step.kill.startswith("fp:") else "")

    killed = [o for o in outcomes if o.kills]
    random_kills = [o for o in killed if o.step.kill in ("window", "anywhere")]
    lock_losses = [o for o in outcomes if o.step.op == "lockloss"]
    return {
        "database": make_url(database_url).render_as_string(hide_password=True),
        "entries": entries,
        "kill_points_tried": len(outcomes),
        "killed": len(killed),
        "sigkills": sum(o.kills for o in outcomes),
        "by_world": dict(Counter(o.world for o in outcomes)),
        "by_operation": dict(Counter(o.step.op for o in outcomes)),
        "by_kill": dict(Counter(kind(o) for o in outcomes)),
        # where the random (not failpoint) kills landed: mostly inside the journal window
        "random_kills_landed": dict(Counter(zone(o.landed) for o in random_kills)),
        "lock_loss": {
            "tried": len(lock_losses),
            "with_a_kill": sum(1 for o in lock_losses if o.kills),
            "both_killed": sum(1 for o in lock_losses if o.kills == 2),
            "by_gate": dict(Counter(o.step.gate.split(":")[0] for o in lock_losses)),
            "by_second": dict(Counter(o.step.second for o in lock_losses)),
            "by_victims": dict(Counter(o.step.victims for o in lock_losses)),
            "exits": dict(Counter(o.result.split(" ", 1)[1] for o in lock_losses if " " in o.result)),
            "notes": [f"{o.step.gate}/{o.step.second}/{o.step.victims}: {n}" for o in lock_losses for n in o.notes[:-1]],
        },
        "outcomes": dict(Counter(o.result.split(" ")[0] for o in outcomes)),
        "results": [o.result for o in outcomes],
        "recoveries": dict(Counter(o.step.recovery for o in outcomes)),
        "divergent": problems_of("divergent"),
        "lost": problems_of("lost"),
        "unrecorded_orphans": problems_of("unrecorded"),
        "recovery_failures": sum(1 for o in outcomes if any(p.startswith(("not in sync", "after ", "rerun", "repair")) for p in o.problems)),
        "unexpected_exits": problems_of("the run ended") + problems_of("hung"),
        "final_problems": final_problems,
        "problems": [{"step": vars(o.step), "world": o.world, "result": o.result, "landed": o.landed, "problems": o.problems} for o in outcomes if o.problems],
        "seconds_per_kill": round(sum(o.seconds for o in outcomes) / max(1, len(outcomes)), 2),
    }


def merge(summaries: list[dict[str, Any]], top: bool = True) -> dict[str, Any]:
    """One summary of several worlds' runs (counts added, lists joined)."""
    merged: dict[str, Any] = {}
    for summary in summaries:
        for key, value in summary.items():
            if key not in merged:
                merged[key] = json.loads(json.dumps(value))
            elif isinstance(value, bool) or key in ("database", "entries", "seconds_per_kill"):
                continue
            elif isinstance(value, int):
                merged[key] += value
            elif isinstance(value, list):
                merged[key] += value
            elif isinstance(value, dict):
                merged[key] = merge([merged[key], value], top=False) if key == "lock_loss" else dict(Counter(merged[key]) + Counter(value))
    if summaries and top:
        tried = sum(s["kill_points_tried"] for s in summaries)
        merged["seconds_per_kill"] = round(sum(s["seconds_per_kill"] * s["kill_points_tried"] for s in summaries) / max(1, tried), 2)
    return merged


def failed(summary: dict[str, Any]) -> bool:
    return bool(summary["problems"] or summary["final_problems"])


def print_summary(summary: dict[str, Any], out: Any = print) -> None:
    def fmt(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    out(f"crash test on {summary['database']}, {summary['entries']}-entry catalog")
    out(f"  kill points tried: {summary['kill_points_tried']} (killed mid-run: {summary['killed']}, SIGKILLs {summary['sigkills']})")
    out(f"  by Qdrant:    {fmt(summary['by_world'])}")
    out(f"  by operation: {fmt(summary['by_operation'])}")
    out(f"  by kill:      {fmt(summary['by_kill'])}")
    out(f"  random kills landed: {fmt(summary['random_kills_landed'])}")
    ll = summary["lock_loss"]
    if ll["tried"]:
        out(f"  lock loss:    {ll['tried']} tried, {ll['with_a_kill']} with a kill, {ll['both_killed']} with both runs killed")
        out(f"    A paused at: {fmt(ll['by_gate'])}")
        out(f"    B:           {fmt(ll['by_second'])}; killed: {fmt(ll['by_victims'])}")
        out(f"    exits:       {fmt(ll['exits'])}")
        for note in ll["notes"][:10]:
            out(f"    note: {note}")
    out(f"  outcomes:     {fmt(summary['outcomes'])}")
    out(f"  recoveries:   {fmt(summary['recoveries'])}")
    out(
        f"  divergent {summary['divergent']}, lost {summary['lost']}, unrecorded orphans {summary['unrecorded_orphans']}, "
        f"recovery failures {summary['recovery_failures']}, unexpected exits {summary['unexpected_exits']}"
    )
    for item in summary["problems"][:20]:
        out(f"  PROBLEM [{item['world']}] {item['step']} -> {item['result']} (landed {item['landed']}): {item['problems'][:4]}")
    for problem in summary["final_problems"]:
        out(f"  FINAL {problem}")
    out("RESULT: " + ("FAILED" if failed(summary) else "ok: every kill left exactly one version, nothing lost, every recovery in sync"))


@contextlib.contextmanager
def fake_qdrant_server() -> Iterator[str]:
    """The test suite's Qdrant REST stand-in (dq_pipeline_tests/fake_qdrant.py) in a process of its
    own: unlike embedded Qdrant, two `dq-pipeline` children can use it at once."""
    root = Path(__file__).resolve().parent.parent
    server = subprocess.Popen(
        [sys.executable, "-m", "dq_pipeline_tests.fake_qdrant", "--port", "0"], cwd=root, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        line = server.stdout.readline() if server.stdout else ""
        if "http://" not in line:
            raise RuntimeError(f"the fake Qdrant server did not start: {line!r}")
        yield line.strip().split()[-1]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new database on the server of `admin_url`, dropped on exit."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url).set(drivername="postgresql+psycopg")
    name = f"dq_crash_{secrets.token_hex(6)}"
    conninfo = {"host": admin.host, "port": admin.port, "user": admin.username, "password": admin.password, "dbname": admin.database}
    with psycopg.connect(**{k: v for k, v in conninfo.items() if v is not None}, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        if not os.environ.get("DQ_CRASH_KEEP"):
            with psycopg.connect(**{k: v for k, v in conninfo.items() if v is not None}, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=240, help="kill points to try in all (default 240)")
    parser.add_argument("--lock-loss", type=int, default=60, help="how many of them are lock-loss kill points (default 60)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DQ_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="admin URL of a PostgreSQL server; a fresh database per world is created there and dropped",
    )
    parser.add_argument("--entries", type=int, default=3000, help="entries of the big catalog (default 3000)")
    parser.add_argument("--failpoint-share", type=float, default=0.4, help="share of the other kills at named protocol steps")
    parser.add_argument("--sequential", action="store_true", help="run the two worlds one after the other, not side by side")
    parser.add_argument("--minutes", type=float, help="time budget: stop trying new kill points after this long (and report)")
    parser.add_argument("--workdir", type=Path, help="work folder (default: a temp folder, deleted)")
    parser.add_argument("--keep", action="store_true", help="keep the databases and the work folder")
    parser.add_argument("--json", type=Path, help="also write the summary as JSON to this file")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a `kill` still drops the databases and the folder
    if args.keep:
        os.environ["DQ_CRASH_KEEP"] = "1"
    rng = random.Random(args.seed)
    batches = -(-args.entries // UPSERT_BATCH)
    lock_losses = min(args.lock_loss, args.kills)
    plan = random_plan(args.kills - lock_losses, rng, batches=min(batches, 8), failpoint_share=args.failpoint_share)
    changed_batches = -(-int(args.entries * 0.63) // UPSERT_BATCH)  # a lock-loss step edits 60% and inserts ~3%
    ll_plan = lock_loss_plan(lock_losses, random.Random(args.seed + 1000), batches=min(changed_batches, 4))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dq_crash_"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    deadline = started + args.minutes * 60 if args.minutes else None
    summaries: dict[str, dict[str, Any]] = {}
    errors: list[str] = []

    def world(name: str, steps: list[Step], seed: int) -> None:
        def log(message: str) -> None:
            print(f"{name:<8} {message}", flush=True)

        try:
            with contextlib.ExitStack() as stack:
                url = stack.enter_context(fresh_database(args.database_url))
                qdrant_url = stack.enter_context(fake_qdrant_server()) if name == "server" else None
                summaries[name] = run(steps, url, workdir / name, args.entries, seed, log=log, qdrant_url=qdrant_url, deadline=deadline)
        except Exception as exc:  # reported, and the run fails
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            log(f"ERROR {type(exc).__name__}: {exc}")

    worlds = [("embedded", plan, args.seed), ("server", ll_plan, args.seed + 1000)]
    try:
        if args.sequential:
            for name, steps, seed in worlds:
                if steps:
                    world(name, steps, seed)
        else:
            threads = [threading.Thread(target=world, args=w, daemon=True) for w in worlds if w[1]]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        kill_children()
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = merge([summaries[name] for name, _, _ in worlds if name in summaries])
    if not summary:
        summary = summarize([], [], args.entries, args.database_url)
    summary["final_problems"] = summary.get("final_problems", []) + errors
    summary["seed"] = args.seed
    summary["minutes"] = round((time.monotonic() - started) / 60, 1)
    summary["command"] = " ".join(["python", "benchmarks/crash_test.py", *sys.argv[1:]])
    print_summary(summary)
    print(f"  ({summary['minutes']} min; {summary['seconds_per_kill']} s per kill point)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    sys.exit(1 if failed(summary) else 0)


if __name__ == "__main__":
    main()
