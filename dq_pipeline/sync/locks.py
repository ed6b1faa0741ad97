"""The per-catalog lock under which a whole sync (recovery, journal, transaction, retirement) runs.

Without it, one run's recovery could compensate another live run's points. On PostgreSQL it is a
session-level advisory lock on a connection of its own, released by the server if the process
dies. On SQLite it is an OS file lock beside the database, released by the OS if the process dies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError


class LockTimeout(RuntimeError):
    pass


class LockLost(RuntimeError):
    """The lock's database session ended while the run held it (the server released the lock)."""


def _lock_key(catalog_id: str) -> int:
    digest = hashlib.sha256(f"dq_pipeline:catalog:{catalog_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def catalog_lock(engine: Engine, catalog_id: str, timeout_s: float = 600.0) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, _lock_key(catalog_id), catalog_id, timeout_s):
            yield
    else:
        with _file_lock(engine, catalog_id, timeout_s):
            yield


@contextmanager
def _advisory_lock(engine: Engine, key: int, catalog_id: str, timeout_s: float) -> Iterator[None]:
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    released = False
    try:
        conn.execute(text("SELECT set_config('lock_timeout', :t, false)"), {"t": f"{int(timeout_s * 1000)}ms"})
        # The lock lives exactly as long as this session, which sits idle while the run works on
        # other connections: a server that ends idle sessions (idle_session_timeout, PostgreSQL 14+)
        # must not end this one, or the lock silently goes with it.
        conn.execute(text("SELECT set_config('idle_session_timeout', '0', false) WHERE current_setting('server_version_num')::int >= 140000"))
        try:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        except OperationalError as exc:
            raise LockTimeout(f"catalog {catalog_id} is being synced by another run (waited {timeout_s:.0f}s)") from exc
        failed = True
        try:
            yield
            failed = False
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                released = True
            except SQLAlchemyError as exc:
                # The session ended during the run (terminated, server restart), and the server
                # released the lock with it. A failed run's own error is what matters: never mask it.
                if not failed:
                    raise LockLost(
                        f"the lock of catalog {catalog_id} was lost during the run (its database session ended): "
                        "another run may have overlapped; check with `dq-pipeline verify`"
                    ) from exc
    finally:
        if not released:
            # A pooled connection must never keep holding the lock: drop it instead of returning it.
            conn.invalidate()
        conn.close()


@contextmanager
def _file_lock(engine: Engine, catalog_id: str, timeout_s: float) -> Iterator[None]:
    database = Path(engine.url.database or "dq.sqlite3").resolve()
    lock_dir = database.parent / f"{database.name}.locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(catalog_id.encode()).hexdigest()[:32]
    lock = FileLock(str(lock_dir / f"{name}.lock"), timeout=timeout_s, thread_local=False, is_singleton=False, fallback_to_soft=False)
    try:
        lock.acquire()
    except Timeout:
        raise LockTimeout(f"catalog {catalog_id} is being synced by another run (waited {timeout_s:.0f}s)") from None
    try:
        yield
    finally:
        lock.release()
