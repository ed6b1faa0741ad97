"""Crash test: real `dq-pipeline` processes killed with SIGKILL, on PostgreSQL and embedded Qdrant.

Each kill point runs one operation in a child process and kills it, either at a protocol step
(``DQ_FAILPOINT=<point>[:<n>]``: the child SIGKILLs itself there) or at a random moment (from
the parent, mostly while the catalog's journal row exists, i.e. inside the protocol window):

* ``sync``             the big catalog edited (updates, deletes, inserts), then ``dq-pipeline sync``
* ``sync --force``     ``dq-pipeline sync --force`` (rewrites the points committed rows use)
* ``cleanup-rejected`` entries rejected first (not killed), then ``dq-pipeline cleanup-rejected``
* ``removal``          a catalog file deleted (or restored), then ``dq-pipeline sync``

After each kill, with the child dead, this process opens the stores and checks, for every catalog:

* I3  PostgreSQL holds exactly the old or the new version ({entry_key: content_hash}), never a mix;
* I1  every row's point is in Qdrant with the row's payload and vector (else it is *lost*);
* I2  every Qdrant point that no row references is listed in a journal row of its catalog
      (leftovers are recorded, not guessed).

Then it recovers with the next ``dq-pipeline sync`` (the same command again: the new version) or
``dq-pipeline repair`` (the surviving version), and checks that both stores are in sync. Sometimes
it does not recover and kills the next operation too, so recovery itself gets killed.

    python benchmarks/crash_test.py --kills 200 --seed 1 --database-url postgresql://postgres@127.0.0.1:5432/postgres

``--database-url`` names a PostgreSQL server (an admin URL): a fresh ``dq_crash_<hex>`` database is
created there and dropped at the end (``--keep`` keeps it and the work folder). Exit status 0 iff
no outcome was divergent or lost and every recovery ended in sync.
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
PROTOCOL_POINTS = ("locked", "journal_written", "pg_flushed", "qdrant_batch", "qdrant_written", "before_commit", "committed", "retired")
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


def snapshot(database_url: str, qdrant_path: str) -> Snapshot:
    """Both stores, read in this process (call only while no child holds embedded Qdrant)."""
    from sqlalchemy import select

    from dq_pipeline.sync import SyncedStore
    from dq_pipeline.sync.schema import entries, journal, rejections

    with SyncedStore.open(database_url, qdrant_path=qdrant_path) as store:
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
        f":retired={sum(len(v) for v in j['retired_points'].values())}:{j['created_at']:%H:%M:%S.%f}"
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
        for pid in ids
    }
    unrecorded = [f"{catalog_id}:{c}/{p}" for c, p in sorted(set(points) - referenced - recorded)]
    return lost, unrecorded


def expected_after_sync(catalogs_root: Path, catalog_id: str, old: Snapshot) -> dict[str, str]:
    """What a completed sync of the catalog folder holds for one catalog: the file's entries, except
    versions a reviewer rejected whose row was cleaned up (they stay out until their content changes)."""
    from dq_pipeline.catalog import load_catalog

    wanted = load_catalog(catalogs_root, catalog_id)
    rows, rejected = old.rows.get(catalog_id, {}), old.rejections.get(catalog_id, set())
    return {e.key: e.content_hash for e in wanted if e.key in rows or (e.key, e.content_hash) not in rejected}


# --------------------------------------------------------------------------- running the command


CHILDREN: set[subprocess.Popen[str]] = set()  # killed if this script is interrupted


def kill_children() -> None:
    for child in CHILDREN:
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


@dataclass
class Outcome:
    step: Step
    target: str
    result: str  # old | new | old+pending-journal | new+committed-journal | ... | finished-before-kill
    exit: int | None
    seconds: float
    problems: list[str] = field(default_factory=list)


class World:
    def __init__(self, database_url: str, workdir: Path, entries: int, seed: int, log: Any = print):
        self.database_url = database_url
        self.workdir = workdir
        self.rng = random.Random(seed)
        self.log = log
        self.catalog_dir = workdir / "catalogs"
        self.qdrant_path = str(workdir / "qdrant")
        self.catalogs = Catalogs(self.catalog_dir, entries, random.Random(seed + 1))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DQ_") and k != "DAGSTER_HOME"}
        self.env.update(
            {
                "DQ_DATABASE_URL": database_url,
                "DQ_QDRANT_PATH": self.qdrant_path,
                "DQ_DATA_DIR": str(workdir / "data"),
                "DQ_CATALOG_DIR": str(self.catalog_dir),
                "DQ_EMBEDDING_MODEL": MODEL,
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.exe = shutil.which("dq-pipeline", path=str(Path(sys.executable).parent)) or "dq-pipeline"
        self.window_s = 1.0  # the journal row's lifetime in a full write; calibrated by setup()
        self.run_s = 6.0
        # Per operation, measured on the unkilled reruns: the journal row's lifetime and the whole run.
        self.windows: dict[str, float] = {}
        self.runs: dict[str, float] = {}

    # -- children

    def command(self, *args: str, failpoint: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        env = dict(self.env, **({"DQ_FAILPOINT": failpoint} if failpoint else {}))
        return subprocess.run([self.exe, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)

    def spawn(self, *args: str, failpoint: str | None = None) -> subprocess.Popen[str]:
        env = dict(self.env, **({"DQ_FAILPOINT": failpoint} if failpoint else {}))
        child = subprocess.Popen(
            [self.exe, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        CHILDREN.add(child)
        return child

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
        state = snapshot(self.database_url, self.qdrant_path)
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
                before = snapshot(self.database_url, self.qdrant_path)
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
        args, target, new, before = self.prepare(step, current or snapshot(self.database_url, self.qdrant_path))
        old = {cid: before.state(cid) for cid in new}

        started = time.monotonic()
        failpoint = step.kill[3:] if step.kill.startswith("fp:") else None
        child = self.spawn(*args, failpoint=failpoint)
        if failpoint is None:
            if step.kill == "window":
                left = frozenset(j["run_id"] for j in before.journal.get(target, []))
                self._watch_journal(child, target, stop_when_gone=False, ignore=left)
                delay = self.rng.uniform(0, self.windows.get(step.op, self.window_s))
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

        after = snapshot(self.database_url, self.qdrant_path)
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
        outcome = Outcome(step, target, result, child.returncode, round(seconds, 2), problems)

        if step.recovery == "chain":
            return outcome, after
        survived = {cid: after.state(cid) for cid in new}
        done = self.rerun(step.op, args, target, after) if step.recovery == "rerun" else self.command("repair")
        if done.returncode != 0:
            problems.append(f"{step.recovery} exited {done.returncode}: {(done.stderr or done.stdout).strip()[:300]}")
        final = snapshot(self.database_url, self.qdrant_path)
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


def run(plan: list[Step], database_url: str, workdir: Path, entries: int, seed: int, log: Any = print, final: bool = True) -> dict[str, Any]:
    world = World(database_url, workdir, entries, seed, log)
    current = world.setup()
    outcomes: list[Outcome] = []
    for number, step in enumerate(plan, start=1):
        outcome, current = world.kill_point(step, current)
        outcomes.append(outcome)
        status = "ok" if not outcome.problems else "PROBLEM: " + "; ".join(outcome.problems[:3])
        log(
            f"[{number}/{len(plan)}] {step.op:<8} kill={step.kill:<22} {outcome.target:<18} -> {outcome.result:<28} "
            f"recovery={step.recovery:<6} {outcome.seconds:5.1f}s {status}"
        )
    final_problems: list[str] = []
    if final:  # the folder's current version, and the CLI's own verdict
        final_sync = world.command("sync", "--json")
        verified = world.command("verify", "--json")
        final_problems = world.check_in_sync(snapshot(database_url, world.qdrant_path), "the final sync")
        if final_sync.returncode != 0 or verified.returncode != 0 or not json.loads(verified.stdout or "{}").get("in_sync"):
            final_problems.append(f"final sync exit {final_sync.returncode}, verify exit {verified.returncode}: {verified.stdout[-500:]}")
    return summarize(outcomes, final_problems, entries, database_url)


def summarize(outcomes: list[Outcome], final_problems: list[str], entries: int, database_url: str) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    def problems_of(prefix: str) -> int:
        return sum(1 for o in outcomes if any(p.startswith(prefix) for p in o.problems))

    killed = [o for o in outcomes if o.exit == -signal.SIGKILL]
    return {
        "database": make_url(database_url).render_as_string(hide_password=True),
        "entries": entries,
        "kill_points_tried": len(outcomes),
        "killed": len(killed),
        "by_operation": dict(Counter(o.step.op for o in outcomes)),
        "by_kill": dict(Counter(o.step.kill.split(":")[0] + (":" + o.step.kill.split(":")[1] if o.step.kill.startswith("fp:") else "") for o in outcomes)),
        "outcomes": dict(Counter(o.result for o in outcomes)),
        "results": [o.result for o in outcomes],
        "recoveries": dict(Counter(o.step.recovery for o in outcomes)),
        "divergent": problems_of("divergent"),
        "lost": problems_of("lost"),
        "unrecorded_orphans": problems_of("unrecorded"),
        "recovery_failures": sum(1 for o in outcomes if any(p.startswith(("not in sync", "after ", "rerun", "repair")) for p in o.problems)),
        "unexpected_exits": problems_of("the run ended"),
        "final_problems": final_problems,
        "problems": [{"step": vars(o.step), "result": o.result, "problems": o.problems} for o in outcomes if o.problems],
        "seconds_per_kill": round(sum(o.seconds for o in outcomes) / max(1, len(outcomes)), 2),
    }


def failed(summary: dict[str, Any]) -> bool:
    return bool(summary["problems"] or summary["final_problems"])


def print_summary(summary: dict[str, Any], out: Any = print) -> None:
    def fmt(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    out(f"crash test on {summary['database']}, {summary['entries']}-entry catalog")
    out(f"  kill points tried: {summary['kill_points_tried']} (killed mid-run: {summary['killed']})")
    out(f"  by operation: {fmt(summary['by_operation'])}")
    out(f"  by kill:      {fmt(summary['by_kill'])}")
    out(f"  outcomes:     {fmt(summary['outcomes'])}")
    out(f"  recoveries:   {fmt(summary['recoveries'])}")
    out(
        f"  divergent {summary['divergent']}, lost {summary['lost']}, unrecorded orphans {summary['unrecorded_orphans']}, "
        f"recovery failures {summary['recovery_failures']}, unexpected exits {summary['unexpected_exits']}"
    )
    for item in summary["problems"][:20]:
        out(f"  PROBLEM {item['step']} -> {item['result']}: {item['problems'][:3]}")
    for problem in summary["final_problems"]:
        out(f"  FINAL {problem}")
    out("RESULT: " + ("FAILED" if failed(summary) else "ok: every kill left exactly one version, nothing lost, every recovery in sync"))


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
    parser.add_argument("--kills", type=int, default=200, help="kill points to try (default 200)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DQ_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="admin URL of a PostgreSQL server; a fresh database is created there and dropped",
    )
    parser.add_argument("--entries", type=int, default=3000, help="entries of the big catalog (default 3000)")
    parser.add_argument("--failpoint-share", type=float, default=0.4, help="share of kills at named protocol steps")
    parser.add_argument("--workdir", type=Path, help="work folder (default: a temp folder, deleted)")
    parser.add_argument("--keep", action="store_true", help="keep the database and the work folder")
    parser.add_argument("--json", type=Path, help="also write the summary as JSON to this file")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a `kill` still drops the database and the folder
    if args.keep:
        os.environ["DQ_CRASH_KEEP"] = "1"
    rng = random.Random(args.seed)
    batches = -(-args.entries // UPSERT_BATCH)
    plan = random_plan(args.kills, rng, batches=min(batches, 8), failpoint_share=args.failpoint_share)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dq_crash_"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        with fresh_database(args.database_url) as url:
            try:
                summary = run(plan, url, workdir, args.entries, args.seed, log=lambda m: print(m, flush=True))
            finally:
                kill_children()
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    summary["seed"] = args.seed
    summary["minutes"] = round((time.monotonic() - started) / 60, 1)
    summary["command"] = " ".join(["python", "benchmarks/crash_test.py", *sys.argv[1:]])
    print_summary(summary)
    print(f"  ({summary['minutes']} min; {summary['seconds_per_kill']} s per killed run)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    sys.exit(1 if failed(summary) else 0)


if __name__ == "__main__":
    main()
