"""The per-catalog lock under which a whole sync (recovery, journal, writes, retirement) runs, and
the fence that makes a lost lock harmless.

A lock alone is not enough: its holder can lose it while still running (on PostgreSQL the lock is
a session-level advisory lock, released by the server when that session ends: a restart, a
failover, a connection killer; on SQLite an OS lock on a file that someone may delete). So every
catalog also has an epoch in `dq_fences`:

* taking the lock reads the epoch: the run's token;
* every commit checks, inside its own transaction and under a row lock, that the epoch still
  equals the token and that the lock is still held, and advances the epoch;
* recovering another run's journal row advances the epoch first, so that run can no longer commit
  once its leftovers are being removed (see journal.recover).

A run that lost its lock therefore cannot commit after anyone else committed or recovered, nor
after its lock session is gone (`LockLost`, terminal).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout
from sqlalchemy import Connection, Engine, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from ...errors import LockLost, LockTimeout
from ..stores.schema import fences

__all__ = ["CatalogLock", "LockLost", "LockTimeout", "catalog_lock"]


def _lock_key(catalog_id: str) -> int:
    digest = hashlib.sha256(f"dq_pipeline:catalog:{catalog_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass
class CatalogLock:
    """A held catalog lock: its fencing token and a way to ask whether the lock is still held."""

    catalog_id: str
    token: int
    _held: Callable[[Connection], bool]

    def still_held(self, conn: Connection) -> bool:
        """The lock is held and nobody committed or recovered since it was taken (reads, no lock)."""
        return self._held(conn) and _epoch(conn, self.catalog_id) == self.token

    @contextmanager
    def fenced(self, engine: Engine, *, take_over: bool = False) -> Iterator[Connection]:
        """A write transaction that commits only while this run owns the catalog, and advances the
        epoch with its commit (the row lock taken on the epoch orders it against any other run's).

        `take_over`: advance the epoch whatever it is now (before recovering another run's journal
        row: that run, if still alive without its lock, can then no longer commit). Otherwise refuse
        with LockLost if anyone committed or took over since this lock was taken, or the lock is gone.
        """
        with engine.execution_options(dq_write=True).begin() as conn:
            epoch = _epoch(conn, self.catalog_id, for_update=True)
            if not self._held(conn) or (epoch != self.token and not take_over):
                raise LockLost(
                    f"catalog {self.catalog_id}: this run lost its lock (epoch {self.token}, now {epoch}; "
                    "its database session ended or another run took over); nothing was committed"
                )
            _advance(conn, self.catalog_id, epoch)
            yield conn
        self.token = epoch + 1  # only once the advance has committed


def _epoch(conn: Connection, catalog_id: str, for_update: bool = False) -> int:
    query = select(fences.c.epoch).where(fences.c.catalog_id == catalog_id)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    value = conn.scalar(query)
    return int(value) if value is not None else 0


def _advance(conn: Connection, catalog_id: str, epoch: int) -> None:
    if epoch == 0 and conn.scalar(select(fences.c.epoch).where(fences.c.catalog_id == catalog_id)) is None:
        try:
            with conn.begin_nested():
                conn.execute(insert(fences).values(catalog_id=catalog_id, epoch=1))
            return
        except IntegrityError:  # another run created the row first: it got ahead of this one
            raise LockLost(f"catalog {catalog_id}: another run took over its lock") from None
    result = conn.execute(update(fences).where(fences.c.catalog_id == catalog_id, fences.c.epoch == epoch).values(epoch=epoch + 1))
    if result.rowcount != 1:
        raise LockLost(f"catalog {catalog_id}: another run took over its lock")


def _read_token(engine: Engine, catalog_id: str) -> int:
    with engine.connect() as conn:
        return _epoch(conn, catalog_id)


@contextmanager
def catalog_lock(engine: Engine, catalog_id: str, timeout_s: float = 600.0) -> Iterator[CatalogLock]:
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, _lock_key(catalog_id), catalog_id, timeout_s) as held:
            yield CatalogLock(catalog_id, _read_token(engine, catalog_id), held)
    else:
        with _file_lock(engine, catalog_id, timeout_s) as held:
            yield CatalogLock(catalog_id, _read_token(engine, catalog_id), held)


@contextmanager
def _advisory_lock(engine: Engine, key: int, catalog_id: str, timeout_s: float) -> Iterator[Callable[[Connection], bool]]:
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    released = False
    try:
        conn.execute(text("SELECT set_config('lock_timeout', :t, false)"), {"t": f"{int(timeout_s * 1000)}ms"})
        # The lock lives exactly as long as this session, which sits idle while the run works on
        # other connections: a server that ends idle sessions (idle_session_timeout, PostgreSQL 14+)
        # must not end this one, or the lock silently goes with it.
        conn.execute(text("SELECT set_config('idle_session_timeout', '0', false) WHERE current_setting('server_version_num')::int >= 140000"))
        pid = conn.scalar(text("SELECT pg_backend_pid()"))
        try:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        except OperationalError as exc:
            raise LockTimeout(f"catalog {catalog_id} is being synced by another run (waited {timeout_s:.1f}s)") from exc

        def held(other: Connection) -> bool:
            # Asked from the commit's own connection: is the lock session alive and still holding it?
            # (classid and objid hold the two halves of the 64-bit key.)
            return bool(
                other.scalar(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = :pid "
                        "AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = :k"
                    ),
                    {"pid": pid, "k": key},
                )
            )

        failed = True
        try:
            yield held
            failed = False
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                # The pool hands this session to any later transaction: it must not inherit the
                # lock wait's timeout (a commit waiting on a row lock would fail after it).
                conn.execute(
                    text("SELECT set_config(name, reset_val, false) FROM pg_settings WHERE name IN ('lock_timeout', 'idle_session_timeout')")
                )
                released = True
            except SQLAlchemyError as exc:
                # The session ended during the run and the server released the lock with it. What
                # the run committed before stands (the fence admits no commit after the loss); a
                # failed run's own error matters more.
                if not failed:
                    raise LockLost(
                        f"the lock of catalog {catalog_id} was lost during the run (its database session ended); "
                        "what the run committed before that stands; check with `dq-pipeline verify`"
                    ) from exc
    finally:
        if not released:
            # A pooled connection must never keep holding the lock: drop it instead of returning it.
            conn.invalidate()
        conn.close()


@contextmanager
def _file_lock(engine: Engine, catalog_id: str, timeout_s: float) -> Iterator[Callable[[Connection], bool]]:
    database = Path(engine.url.database or "dq.sqlite3").resolve()
    lock_dir = database.parent / f"{database.name}.locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(catalog_id.encode()).hexdigest()[:32]
    path = lock_dir / f"{name}.lock"
    lock = FileLock(str(path), timeout=timeout_s, thread_local=False, is_singleton=False, fallback_to_soft=False)
    try:
        lock.acquire()
    except Timeout:
        raise LockTimeout(f"catalog {catalog_id} is being synced by another run (waited {timeout_s:.1f}s)") from None
    fd = lock._context.lock_file_fd  # the descriptor the OS lock is on

    def held(_conn: Connection) -> bool:
        # The OS lock lives as long as this process, but only guards the file it is on: if the lock
        # file was deleted (or replaced), another run can lock a new file of the same name.
        try:
            return fd is not None and os.fstat(fd).st_ino == os.stat(path).st_ino
        except OSError:
            return False

    try:
        yield held
    finally:
        lock.release()
