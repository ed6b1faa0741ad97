"""The invariants under real crashes, real network faults and real concurrency (issue 5).

test_protocol.py injects faults in-process with mocks. Here the faults are real:

* crashes: `dq-pipeline` child processes SIGKILLed at every protocol step (a failpoint the test
  injects with a process hook, `hooks.install_process_hook`) and at random moments, on PostgreSQL
  (a fixed-seed slice of benchmarks/crash_test.py);
* the lock: separate processes holding `catalog_lock` on the same or different catalogs, killed
  while holding it, timing out, on PostgreSQL and SQLite; two `dq-pipeline sync` processes at once;
* the remote path: qdrant-client's real HTTP code against a real HTTP server (fake_qdrant.py) that
  refuses connections, times out, answers 5xx, answers slowly, cuts the connection mid-batch, or
  applies a write and loses its acknowledgement;
* PostgreSQL: the sync's own backend terminated at each step and at commit, every backend of the
  database terminated (a server restart as the client sees it), a commit whose acknowledgement is
  lost, a server that ends idle sessions, a run that loses its lock while committing.

After every fault: PostgreSQL holds exactly the old or the new version (I3, I5), every row has its
point (I1), leftovers are recorded in the journal, and the next sync or repair is in sync (I2).
(`dq-pipeline sync` through a Qdrant server outage, with secrets in play, is in test_hostile_input.py.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import psycopg
import pytest
from qdrant_client import QdrantClient
from sqlalchemy import select
from sqlalchemy.engine import make_url

from dq_pipeline.embedding import HashingEmbedder
from dq_pipeline.sync import Hooks, SyncedStore, SyncFailed, open_record
from dq_pipeline.sync.stores.qdrant_index import QdrantIndex
from dq_pipeline.sync.stores.schema import journal as journal_table
from dq_pipeline.sync.write.locks import LockLost

from .conftest import REPO, reset_postgres
from .fake_qdrant import FakeQdrant
from .test_protocol import CATALOG, V1, V2, assert_in_sync, assert_state, journal_rows, pg_rows, qdrant_ids

API_KEY = "qdrant-test-api-key-7f3a"
DQ_EXE = str(Path(sys.executable).with_name("dq-pipeline"))

# slow: every test here kills, restarts or waits on processes, locks or a server (see conftest).
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")]


def _conninfo(url: str) -> str:
    parsed = make_url(url)
    params = {"host": parsed.host, "port": parsed.port, "user": parsed.username, "password": parsed.password, "dbname": parsed.database}
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in params.items() if v is not None})


# =========================================================================== 1. crashes (real processes)


def _crash_test_module():
    spec = importlib.util.spec_from_file_location("dq_crash_test", REPO / "benchmarks" / "crash_test.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# (operation, kill, recovery, expected outcome for the catalog the operation writes; None = any
# of old/new). Every protocol step once; the sync, force reindex, cleanup-rejected and removal
# paths; recovery by the next run, by repair, and by a run that is itself killed ("chain").
CI_PLAN = [
    ("sync", "fp:locked", "repair", "old"),
    ("sync", "fp:journal_written", "rerun", "old+pending-journal"),
    ("sync", "fp:pg_flushed", "repair", "old+pending-journal"),
    ("sync", "fp:qdrant_batch:2", "repair", "old+pending-journal"),  # first batch written, second not
    ("sync", "fp:qdrant_written", "chain", "old+pending-journal"),
    ("sync", "fp:before_commit", "repair", "old+pending-journal"),  # its run first recovered the chained one
    ("sync", "fp:committed", "repair", "new+committed-journal"),
    ("sync", "fp:retired", "repair", "new"),
    ("force", "fp:qdrant_batch:2", "repair", "unchanged+pending-journal"),  # rewrites ids committed rows use
    ("cleanup*", "fp:committed", "rerun", "new+committed-journal"),  # no rejected entry left, only the journal row
    ("removal", "fp:committed", "chain", "new+committed-journal"),  # no rows left, only the journal row
    ("sync*", "window", "rerun", None),  # killed at random while every catalog syncs (the removed one's journal too)
]
# "op*": the command without --catalog (every catalog it would pick by itself).


@pytest.mark.postgres
def test_killed_dq_pipeline_processes_leave_one_version_and_recover(postgres_url: str, tmp_path: Path) -> None:
    """SIGKILL at every protocol step and at random moments: never a mix, nothing lost, recovery in sync."""
    crash = _crash_test_module()
    reset_postgres(postgres_url)
    plan = []
    for op, kill, recovery, _ in CI_PLAN:
        # share: enough changed entries for two Qdrant batches
        plan.append(crash.Step(op.rstrip("*"), kill, recovery, everything=op.endswith("*"), share=0.9))
    log: list[str] = []
    summary = crash.run(plan, postgres_url, tmp_path, entries=300, seed=5, log=log.append, final=False)
    report = "\n".join(log)
    assert summary["problems"] == [], report
    assert summary["final_problems"] == [], report
    assert (summary["divergent"], summary["lost"], summary["unrecorded_orphans"]) == (0, 0, 0)
    for (op, kill, _, expected), result in zip(CI_PLAN, summary["results"], strict=True):
        if expected is not None:
            assert result == expected, f"{op} killed at {kill}: {result}, expected {expected}\n{report}"
        else:
            assert "DIVERGENT" not in result
    assert summary["killed"] >= len(CI_PLAN) - 1, report  # every failpoint was reached


# =========================================================================== 2. concurrency


LOCK_HOLDER = r"""
import json, sys, time
from dq_pipeline.sync import open_record
from dq_pipeline.sync.write.locks import LockTimeout, catalog_lock

url, catalog, hold, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
engine = open_record(url)  # the schema holds the catalogs' fencing epochs

def say(event):
    print(json.dumps({"event": event, "t": time.time()}), flush=True)

say("ready")
sys.stdin.readline()  # "go": the test decides when each process asks for the lock
say("waiting")
try:
    with catalog_lock(engine, catalog, timeout):
        say("acquired")
        time.sleep(hold)
        say("releasing")
except LockTimeout as exc:
    print(exc, file=sys.stderr)
    sys.exit(3)
say("released")
"""


class Holder:
    """A process that asks for one catalog's lock when told to, and reports its events on stdout."""

    def __init__(self, url: str, catalog: str, hold: float, timeout: float = 60):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LOCK_HOLDER, url, catalog, str(hold), str(timeout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: dict[str, float] = {}
        self.stderr = ""

    def wait_for(self, event: str) -> float:
        assert self.proc.stdout is not None
        while event not in self.events:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"holder ended (exit {self.proc.wait()}) before {event!r}: {self.proc.stderr.read()}")  # type: ignore[union-attr]
            record = json.loads(line)
            self.events[record["event"]] = record["t"]
        return self.events[event]

    def go(self) -> None:
        self.wait_for("ready")
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self) -> int:
        out, err = self.proc.communicate(timeout=60)
        for line in out.splitlines():
            record = json.loads(line)
            self.events[record["event"]] = record["t"]
        self.stderr = err
        return self.proc.returncode


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def lock_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dq.sqlite3'}"
    return request.getfixturevalue("postgres_url")


def test_lock_serializes_one_catalog_and_lets_others_proceed(lock_url: str) -> None:
    first = Holder(lock_url, "finance/ledger", hold=1.5)
    same = Holder(lock_url, "finance/ledger", hold=0)
    other = Holder(lock_url, "sales/orders", hold=0)
    same.wait_for("ready"), other.wait_for("ready")
    first.go()
    first.wait_for("acquired")
    same.go()
    other.go()
    assert first.finish() == 0 and same.finish() == 0 and other.finish() == 0, same.stderr + other.stderr
    assert same.events["waiting"] < first.events["releasing"], "the second process did not contend: the test proves nothing"
    assert same.events["acquired"] >= first.events["releasing"], "two processes held one catalog's lock at once"
    assert other.events["acquired"] < first.events["releasing"], "another catalog waited for this one's lock"


def test_lock_of_a_killed_holder_is_released_and_waiters_time_out(lock_url: str) -> None:
    """The OS (file lock) or the server (advisory lock of a dead session) releases a dead holder's lock;
    a waiter that waits too long gets a clear error."""
    holder = Holder(lock_url, "finance/ledger", hold=600)
    patient = Holder(lock_url, "finance/ledger", hold=0, timeout=60)
    impatient = Holder(lock_url, "finance/ledger", hold=0, timeout=1)
    patient.wait_for("ready"), impatient.wait_for("ready")
    holder.go()
    holder.wait_for("acquired")
    patient.go()
    impatient.go()
    assert impatient.finish() == 3
    assert "catalog finance/ledger is being synced by another run" in impatient.stderr
    assert patient.proc.poll() is None and "acquired" not in patient.events
    killed_at = time.time()
    holder.proc.send_signal(signal.SIGKILL)
    holder.proc.wait()
    acquired = patient.wait_for("acquired")
    assert patient.finish() == 0
    assert killed_at <= acquired < killed_at + 15


# --- two `dq-pipeline sync` processes at once --------------------------------------------------

# Runs the real CLI in a process whose protocol hooks log every step to events.jsonl and, at the
# step named by DQ_TEST_GATE, wait until the test opens the gate (so the test decides the timing).
GATED_CLI = r"""
import json, os, sys, time
from pathlib import Path
from dq_pipeline.sync.write import hooks

folder = Path(os.environ["DQ_TEST_EVENTS"])
gate = os.environ.get("DQ_TEST_GATE", "")
held = []

def traced(point, reached, info):
    with open(folder / "events.jsonl", "a") as log:
        log.write(json.dumps({"pid": os.getpid(), "point": point, "t": time.time()}) + "\n")
    if point == gate and not held:
        held.append(point)
        (folder / f"{os.getpid()}.at_gate").touch()
        deadline = time.time() + 180
        while not (folder / "open").exists() and time.time() < deadline:
            time.sleep(0.05)

hooks.install_process_hook(traced)  # what the package never does itself
from dq_pipeline.cli import main
sys.argv = ["dq-pipeline", *sys.argv[1:]]
main()
"""


def write_catalog(path: Path, rows: int, revision: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["table,column,kind,type,description"]
    lines += [f"t{i // 20},c{i},column,text,column {i} of table {i // 20} (revision {revision})" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class CliWorld:
    """A catalog folder and the DQ_* environment of `dq-pipeline` children on this test's stores."""

    def __init__(self, tmp_path: Path, database_url: str, qdrant_url: str | None = None):
        self.catalog_dir = tmp_path / "catalogs"
        self.events = tmp_path / "events"
        self.events.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DQ_") and k != "DAGSTER_HOME"}
        self.env.update(
            DQ_DATABASE_URL=database_url,
            DQ_DATA_DIR=str(tmp_path / "data"),
            DQ_CATALOG_DIR=str(self.catalog_dir),
            DQ_EMBEDDING_MODEL="hashing:32",
            DQ_TEST_EVENTS=str(self.events),
        )
        if qdrant_url:
            self.env.update(DQ_QDRANT_URL=qdrant_url, DQ_QDRANT_API_KEY=API_KEY)

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DQ_EXE, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False)

    def gated(self, *args: str, gate: str = "") -> subprocess.Popen[str]:
        env = dict(self.env, DQ_TEST_GATE=gate)
        return subprocess.Popen([sys.executable, "-c", GATED_CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_at_gate(self, proc: subprocess.Popen[str], timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while not (self.events / f"{proc.pid}.at_gate").exists():
            if proc.poll() is not None:
                raise AssertionError(f"the gated run ended (exit {proc.returncode}) before its gate: {proc.communicate()}")
            assert time.time() < deadline, "the gated run never reached its gate"
            time.sleep(0.05)

    def open_gate(self) -> None:
        (self.events / "open").touch()

    def events_of(self, pid: int) -> list[tuple[str, float]]:
        lines = (self.events / "events.jsonl").read_text().splitlines()
        return [(e["point"], e["t"]) for e in map(json.loads, lines) if e["pid"] == pid]

    def verify(self) -> dict:
        done = self.run("verify", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)


def _finish(proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _advisory_waiters(url: str) -> int:
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND NOT l.granted AND a.datname = current_database()"
        ).fetchone()
        return int(row[0]) if row else 0


@pytest.mark.postgres
def test_two_syncs_on_embedded_qdrant_the_second_gets_one_clear_line(postgres_url: str, tmp_path: Path) -> None:
    """Embedded Qdrant is single-process: the second sync fails cleanly (after its retries), nothing breaks."""
    reset_postgres(postgres_url)
    world = CliWorld(tmp_path, postgres_url)
    write_catalog(world.catalog_dir / "team" / "big.csv", 300, revision=1)
    assert world.run("sync").returncode == 0
    write_catalog(world.catalog_dir / "team" / "big.csv", 300, revision=2)

    first = world.gated("sync", "--catalog", "team/big", gate="pg_flushed")  # holds the store and the lock
    try:
        world.wait_at_gate(first)
        second = world.run("sync", "--catalog", "team/big")
    finally:
        world.open_gate()
    code, out, err = _finish(first)
    assert code == 0, err
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "is open in another process" in lines[0], second.stderr
    assert "Traceback" not in second.stderr and second.stdout == ""
    verified = world.verify()
    assert verified["in_sync"] and verified["catalogs"]["team/big"]["pg"] == 300


@pytest.fixture
def fake_qdrant() -> Iterator[FakeQdrant]:
    with FakeQdrant(api_key=API_KEY) as fake:
        yield fake


@pytest.mark.postgres
def test_concurrent_syncs_are_serialized_per_catalog_and_parallel_across_catalogs(
    postgres_url: str, tmp_path: Path, fake_qdrant: FakeQdrant
) -> None:
    """On a Qdrant server, three `dq-pipeline sync` processes: while the first is mid-write on team/big,
    a second sync of team/big waits on the advisory lock (then finds nothing left to do), and a sync of
    team/other writes its whole change (lock to retirement).

    (The team/other run still waits before it ends: the job's `all_catalogs_in_sync` check verifies
    every catalog under that catalog's lock, so it waits for the team/big write.)
    """
    reset_postgres(postgres_url)
    world = CliWorld(tmp_path, postgres_url, fake_qdrant.url)
    write_catalog(world.catalog_dir / "team" / "big.csv", 300, revision=1)
    write_catalog(world.catalog_dir / "team" / "other.csv", 50, revision=1)
    assert world.run("sync").returncode == 0
    write_catalog(world.catalog_dir / "team" / "big.csv", 300, revision=2)
    write_catalog(world.catalog_dir / "team" / "other.csv", 50, revision=2)

    first = world.gated("sync", "--catalog", "team/big", gate="pg_flushed")
    same = other = None
    try:
        world.wait_at_gate(first)
        same = world.gated("sync", "--catalog", "team/big", "--json")
        other = world.gated("sync", "--catalog", "team/other", "--json")
        deadline = time.time() + 120
        while _advisory_waiters(postgres_url) == 0 or "retired" not in [p for p, _ in world.events_of(other.pid)]:
            assert same.poll() is None, f"the second team/big run did not wait for the lock: {same.communicate()}"
            assert time.time() < deadline, f"team/other not written or team/big not waiting: {world.events_of(other.pid)}"
            time.sleep(0.1)
        assert world.events_of(same.pid) == []  # it has not passed the lock
        assert first.poll() is None  # team/big is still mid-write
    finally:
        world.open_gate()
    assert same is not None and other is not None
    results = {}
    for name, proc in (("first", first), ("same", same), ("other", other)):
        code, out, err = _finish(proc)
        assert code == 0, (name, err)
        results[name] = out
    assert json.loads(results["same"])["catalogs"]["team/big"]["updated"] == 0  # the first run already wrote revision 2
    assert json.loads(results["other"])["catalogs"]["team/other"]["updated"] == 50

    first_steps, same_steps = world.events_of(first.pid), world.events_of(same.pid)
    assert [p for p, _ in first_steps] == ["locked", "journal_written", "qdrant_batch", "qdrant_batch", "qdrant_written", "pg_flushed", "before_commit", "committed", "retired"]
    assert same_steps[0][0] == "locked" and same_steps[0][1] > first_steps[-1][1], "the runs of team/big interleaved"
    verified = world.verify()
    assert verified["in_sync"] and verified["catalogs"]["team/big"]["pg"] == 300


# =========================================================================== 3. the remote path: a real HTTP server with faults


@pytest.fixture
def remote(postgres_url: str, fake_qdrant: FakeQdrant) -> Iterator[SyncedStore]:
    """PostgreSQL + qdrant-client's HTTP client (1 s timeout) on the fake server, batches of 2."""
    reset_postgres(postgres_url)
    client = QdrantClient(url=fake_qdrant.url, api_key=API_KEY, timeout=1, check_compatibility=False)
    store = SyncedStore(open_record(postgres_url), QdrantIndex(client, prefix="dq", batch_size=2), "pg", "fake", lock_timeout_s=30)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def remote_v1(remote: SyncedStore, embedder: HashingEmbedder) -> SyncedStore:
    remote.sync(CATALOG, V1, embedder)
    assert_in_sync(remote)
    return remote


UPSERT, DELETE = r"^/collections/[^/]+/points$", r"^/collections/[^/]+/points/delete$"

# V1 -> V2 writes 6 points in 3 acknowledged batches of 2.
FAULTS = {
    "http-503-first-batch": dict(method="PUT", path=UPSERT, kind="status", status=503, nth=1),
    "http-500-middle-batch": dict(method="PUT", path=UPSERT, kind="status", status=500, nth=2),
    "http-502-every-batch": dict(method="PUT", path=UPSERT, kind="status", status=502, times=0),
    "timeout-ack-lost-middle-batch": dict(method="PUT", path=UPSERT, kind="delay", seconds=2.5, nth=2, applied=True),
    "timeout-ack-lost-last-batch": dict(method="PUT", path=UPSERT, kind="delay", seconds=2.5, nth=3, applied=True),
    "connection-cut-before-write": dict(method="PUT", path=UPSERT, kind="cut", nth=2),
    "connection-cut-after-write": dict(method="PUT", path=UPSERT, kind="cut", nth=3, applied=True),
}


@pytest.mark.postgres
@pytest.mark.parametrize("fault", list(FAULTS))
def test_qdrant_server_fault_mid_write_keeps_the_previous_version(
    remote_v1: SyncedStore, fake_qdrant: FakeQdrant, embedder: HashingEmbedder, fault: str
) -> None:
    injected = fake_qdrant.fail(**FAULTS[fault])
    with pytest.raises(SyncFailed, match="nothing was changed"):
        remote_v1.sync(CATALOG, V2, embedder)
    assert injected.hits >= 1
    assert_state(remote_v1, V1)  # the previous version, every row with its point (I1, I3, I5)
    assert journal_rows(remote_v1) == 0  # compensated: nothing left behind (I2)
    assert_in_sync(remote_v1)
    fake_qdrant.heal()
    remote_v1.sync(CATALOG, V2, embedder)
    assert_state(remote_v1, V2)
    assert_in_sync(remote_v1)


@pytest.mark.postgres
def test_slow_qdrant_answers_within_the_timeout_are_fine(remote_v1: SyncedStore, fake_qdrant: FakeQdrant, embedder: HashingEmbedder) -> None:
    fake_qdrant.fail(method="PUT", path=UPSERT, kind="delay", seconds=0.4, times=0)
    remote_v1.sync(CATALOG, V2, embedder)
    assert_state(remote_v1, V2)
    assert_in_sync(remote_v1)


@pytest.mark.postgres
def test_qdrant_refusing_connections_from_the_start_writes_nothing(
    remote_v1: SyncedStore, fake_qdrant: FakeQdrant, embedder: HashingEmbedder
) -> None:
    before = pg_rows(remote_v1)
    fake_qdrant.stop()
    with pytest.raises(Exception, match="[Cc]onnect|refused"):
        remote_v1.sync(CATALOG, V2, embedder)
    assert pg_rows(remote_v1) == before and journal_rows(remote_v1) == 0
    fake_qdrant.start()
    assert_state(remote_v1, V1)
    assert_in_sync(remote_v1)
    remote_v1.sync(CATALOG, V2, embedder)
    assert_in_sync(remote_v1)


@pytest.mark.postgres
def test_qdrant_going_down_mid_write_leaves_the_journal_and_the_next_run_finishes_it(
    remote_v1: SyncedStore, fake_qdrant: FakeQdrant, embedder: HashingEmbedder
) -> None:
    """Server gone after the first batch: no compensation possible, so the journal row stays (recorded, not guessed)."""

    def go_down(batch: int, **_: object) -> None:
        if batch == 1:
            fake_qdrant.stop()

    with pytest.raises(SyncFailed):
        remote_v1.sync(CATALOG, V2, embedder, hooks=Hooks({"qdrant_batch": go_down}))
    fake_qdrant.start()  # the same port, the same data: a restart
    assert_state(remote_v1, V1)
    verification = remote_v1.verify(CATALOG)
    # The 2 points of the first batch are named by the pending journal row: recorded leftovers, not orphans.
    assert (verification.pending_journal, verification.orphans, verification.missing, verification.qdrant) == (1, 0, 0, 8)
    orphans = qdrant_ids(remote_v1) - {pid for _, pid in pg_rows(remote_v1).values()}
    with remote_v1.engine.connect() as conn:
        recorded = {pid for ids in conn.execute(select(journal_table.c.new_points)).scalar_one().values() for pid in ids}
    assert orphans <= recorded  # every leftover is named in the journal
    remote_v1.sync(CATALOG, V2, embedder)
    assert_state(remote_v1, V2)
    assert_in_sync(remote_v1)


@pytest.mark.postgres
def test_retirement_failing_on_the_server_after_commit_is_finished_later(
    remote_v1: SyncedStore, fake_qdrant: FakeQdrant, embedder: HashingEmbedder
) -> None:
    fake_qdrant.fail(method="POST", path=DELETE, kind="status", status=500, times=0)
    result = remote_v1.sync(CATALOG, V2, embedder)
    assert result.retire_error and "journal keeps them" in result.retire_error
    assert_state(remote_v1, V2)
    verification = remote_v1.verify(CATALOG)
    assert (verification.orphans, verification.pending_journal, verification.missing) == (5, 1, 0)
    fake_qdrant.heal()
    again = remote_v1.sync(CATALOG, V2, embedder)
    assert (again.recovered_journal_rows, again.written) == (1, 0)
    assert_in_sync(remote_v1)


@pytest.mark.postgres
def test_compensation_failing_on_the_server_leaves_the_journal_for_repair(
    remote_v1: SyncedStore, fake_qdrant: FakeQdrant, embedder: HashingEmbedder
) -> None:
    fake_qdrant.fail(method="PUT", path=UPSERT, kind="status", status=503, nth=3, applied=True)
    fake_qdrant.fail(method="POST", path=DELETE, kind="status", status=503, times=0)
    with pytest.raises(SyncFailed):
        remote_v1.sync(CATALOG, V2, embedder)
    assert_state(remote_v1, V1)
    verification = remote_v1.verify(CATALOG)
    # The 6 written points are named by the pending journal row: recorded leftovers, not orphans.
    assert (verification.pending_journal, verification.orphans, verification.qdrant) == (1, 0, 12)
    fake_qdrant.heal()
    assert remote_v1.repair(CATALOG).after.in_sync
    assert_state(remote_v1, V1)


@pytest.mark.postgres
def test_a_write_the_server_applies_after_the_client_gave_up_is_detected_and_repaired(
    remote_v1: SyncedStore, fake_qdrant: FakeQdrant, embedder: HashingEmbedder
) -> None:
    """The known limit (docs/RELIABILITY.md): a batch the server queues past the client's timeout and
    applies *after* compensation ran is an orphan no journal row names. It is never a missing point
    (I1 holds), `verify` reports it, and `repair` (or the next sync of the same content) removes it."""
    late = fake_qdrant.fail(method="PUT", path=UPSERT, kind="delay", seconds=2.0, nth=2)
    with pytest.raises(SyncFailed):
        remote_v1.sync(CATALOG, V2, embedder)
    assert journal_rows(remote_v1) == 0
    deadline = time.time() + 10
    while len(qdrant_ids(remote_v1)) == 6 and time.time() < deadline:  # the late batch lands
        time.sleep(0.1)
    assert late.hits == 1
    assert_state(remote_v1, V1)
    verification = remote_v1.verify(CATALOG)
    assert (verification.orphans, verification.missing, verification.pending_journal) == (2, 0, 0)
    assert not verification.in_sync  # reported, not silent
    repaired = remote_v1.repair(CATALOG)
    assert repaired.orphans_deleted == 2 and repaired.after.in_sync


# =========================================================================== 4. PostgreSQL connection loss


@pytest.fixture
def pg_v1(postgres_url: str, tmp_path: Path, embedder: HashingEmbedder) -> Iterator[SyncedStore]:
    reset_postgres(postgres_url)
    with SyncedStore.open(postgres_url, qdrant_path=str(tmp_path / "qdrant"), upsert_batch_size=2, lock_timeout_s=30) as store:
        store.sync(CATALOG, V1, embedder)
        assert_in_sync(store)
        yield store


def terminate_backends(url: str, only_in_transaction: bool) -> int:
    """pg_terminate_backend from another connection: the sync's transaction, or every session of the database."""
    condition = " AND state = 'idle in transaction'" if only_in_transaction else ""
    with psycopg.connect(_conninfo(url), autocommit=True) as admin:
        pids = [
            pid
            for (pid,) in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()" + condition  # noqa: S608 - constant
            ).fetchall()
        ]
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    return len(pids)


@pytest.mark.postgres
# Only the commit transaction exists to be cut: no transaction is open while Qdrant is written
# (test_guarantees.py::test_no_database_transaction_is_open_while_points_are_written).
@pytest.mark.parametrize("point", ["pg_flushed", "before_commit"])
def test_losing_the_sync_transactions_connection_keeps_the_previous_version(
    pg_v1: SyncedStore, postgres_url: str, embedder: HashingEmbedder, point: str
) -> None:
    killed: list[int] = []

    def cut(batch: int = 1, **_: object) -> None:
        if batch == 1 and not killed:
            killed.append(terminate_backends(postgres_url, only_in_transaction=True))

    with pytest.raises(SyncFailed):
        pg_v1.sync(CATALOG, V2, embedder, hooks=Hooks({point: cut}))
    assert killed == [1]  # exactly the data transaction's backend
    assert_state(pg_v1, V1)
    assert journal_rows(pg_v1) == 0  # compensated from what PostgreSQL committed: nothing
    assert_in_sync(pg_v1)
    pg_v1.sync(CATALOG, V2, embedder)
    assert_state(pg_v1, V2)
    assert_in_sync(pg_v1)


@pytest.mark.postgres
@pytest.mark.parametrize(("point", "raised", "survivor"), [("before_commit", SyncFailed, V1), ("committed", LockLost, V2)])
def test_every_connection_terminated_like_a_server_restart(
    pg_v1: SyncedStore, postgres_url: str, embedder: HashingEmbedder, point: str, raised: type, survivor: list
) -> None:
    """The lock's session dies too (the server releases the lock). Before the commit the run's own
    error is reported (not masked by the failed unlock) and nothing is half-written; after it, the data
    is in and the run says its lock was lost."""
    with pytest.raises(raised):
        pg_v1.sync(CATALOG, V2, embedder, hooks=Hooks({point: lambda **_: terminate_backends(postgres_url, False)}))
    assert_state(pg_v1, survivor)
    assert_in_sync(pg_v1)
    pg_v1.sync(CATALOG, V2, embedder)
    assert_state(pg_v1, V2)
    assert_in_sync(pg_v1)


@pytest.mark.postgres
def test_a_commit_whose_acknowledgement_is_lost_is_finished_as_committed(pg_v1: SyncedStore, embedder: HashingEmbedder) -> None:
    """COMMIT reaches the server, the answer does not: the run decides from what PostgreSQL holds (committed)."""
    dialect = pg_v1.engine.dialect
    real_commit = dialect.do_commit
    armed = threading.Event()

    def commit_then_lose_the_answer(dbapi_connection) -> None:  # type: ignore[no-untyped-def]
        real_commit(dbapi_connection)
        if armed.is_set():
            armed.clear()
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    with mock.patch.object(dialect, "do_commit", side_effect=commit_then_lose_the_answer):
        result = pg_v1.sync(CATALOG, V2, embedder, hooks=Hooks({"before_commit": lambda **_: armed.set()}))
    assert (result.updated, result.inserted, result.deleted) == (4, 2, 1)
    assert_state(pg_v1, V2)
    assert_in_sync(pg_v1)


def _advisory_locks_held(url: str) -> int:
    with psycopg.connect(_conninfo(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()"
        ).fetchone()
        return int(row[0]) if row else 0


@pytest.mark.postgres
def test_the_catalog_lock_outlives_the_servers_idle_session_timeout(postgres_url: str, tmp_path: Path, embedder: HashingEmbedder) -> None:
    """The lock's session sits idle while the run works on other connections; a server that ends idle
    sessions (idle_session_timeout, PostgreSQL 14+) must not end it, or the lock silently goes with it."""
    reset_postgres(postgres_url)
    database = make_url(postgres_url).database
    with psycopg.connect(_conninfo(postgres_url), autocommit=True) as admin:
        if int(admin.execute("SHOW server_version_num").fetchone()[0]) < 140000:  # type: ignore[index]
            pytest.skip("idle_session_timeout needs PostgreSQL 14+")
        admin.execute(f'ALTER DATABASE "{database}" SET idle_session_timeout = \'1s\'')
    held: list[int] = []
    try:
        with SyncedStore.open(postgres_url, qdrant_path=str(tmp_path / "qdrant"), upsert_batch_size=2, lock_timeout_s=30) as store:
            store.sync(CATALOG, V1, embedder)

            def slow_step(**_: object) -> None:
                time.sleep(2.5)  # a long write: the lock's session is idle meanwhile
                held.append(_advisory_locks_held(postgres_url))

            store.sync(CATALOG, V2, embedder, hooks=Hooks({"qdrant_written": slow_step}))
            assert held == [1], "the catalog lock was lost while the run still worked under it"
            assert_state(store, V2)
            assert_in_sync(store)
    finally:
        with psycopg.connect(_conninfo(postgres_url), autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{database}" RESET idle_session_timeout')


@pytest.mark.postgres
def test_a_run_whose_lock_was_lost_cannot_have_its_points_deleted_by_the_next_run(
    pg_v1: SyncedStore, postgres_url: str, embedder: HashingEmbedder
) -> None:
    """The lock's session is terminated while run A is about to commit, and run B (waiting for the lock)
    gets it and recovers A's journal row. B must decide from what PostgreSQL really commits: A's row is
    locked by A's data transaction, so B waits for A's commit and then finishes it as committed, instead
    of deleting A's new points as leftovers of a dead run (which would leave A's committed rows without
    points, I1)."""
    second = SyncedStore(open_record(postgres_url), pg_v1.index, "pg", "shared index", lock_timeout_s=30)
    outcome: dict[str, object] = {}

    def run_b() -> None:
        try:
            outcome["result"] = second.sync(CATALOG, V2, embedder)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            outcome["error"] = exc

    def lose_the_lock_then_let_b_in(**_: object) -> None:
        with psycopg.connect(_conninfo(postgres_url), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND query LIKE 'SELECT pg_advisory_lock%%'"
            )
        thread = threading.Thread(target=run_b)
        thread.start()
        outcome["thread"] = thread
        deadline = time.time() + 20  # until B waits on A's journal row (or B is done: the bug)
        while thread.is_alive() and time.time() < deadline:
            with psycopg.connect(_conninfo(postgres_url), autocommit=True) as probe:
                waiting = probe.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted"
                ).fetchone()[0]  # type: ignore[index]
            if waiting:
                break
            time.sleep(0.05)

    try:
        with pytest.raises(LockLost):
            pg_v1.sync(CATALOG, V2, embedder, hooks=Hooks({"before_commit": lose_the_lock_then_let_b_in}))
        outcome["thread"].join(30)  # type: ignore[union-attr]
        assert "error" not in outcome, outcome.get("error")
        assert_state(pg_v1, V2)  # A's commit stands, and every committed row still has its point (I1)
        assert_in_sync(pg_v1)
    finally:
        second.engine.dispose()


def test_a_released_lock_session_goes_back_to_the_pool_with_the_servers_timeouts(postgres_url: str) -> None:
    """The lock wait sets `lock_timeout` (and turns `idle_session_timeout` off) on its session; the
    pool later lends that session to data transactions, which must wait for row locks as the
    server is configured to, not fail after the lock's short timeout."""
    from sqlalchemy import text

    from dq_pipeline.sync.write.locks import catalog_lock

    engine = open_record(postgres_url)
    try:
        engine.pool.dispose()
        with engine.connect() as conn:
            expected = conn.scalar(text("SELECT reset_val FROM pg_settings WHERE name = 'lock_timeout'"))
        with catalog_lock(engine, "pool/leak", 0.25):
            pass
        for _ in range(engine.pool.size()):  # whichever pooled session the lock used
            with engine.connect() as conn:
                assert conn.scalar(text("SELECT setting FROM pg_settings WHERE name = 'lock_timeout'")) == expected
    finally:
        engine.dispose()
