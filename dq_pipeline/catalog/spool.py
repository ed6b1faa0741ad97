"""A catalog's entries on disk, so that no step holds a million of them at once.

An `EntrySpool` is a SQLite file with one row per entry, in the order the file gave them. A
parse writes into it as it goes (see builder.EntryCollector), the plan joins it with the rows the
record holds (sync/write/plan.py), and the embedding and write steps read it back a chunk at a time: the
memory a sync needs no longer grows with the catalog (docs/DESIGN.md, "Memory").

A spool is scratch data, never a store: it is written once, then sealed and only read. Its file is
not made durable (no journal, no fsync); a crash loses a spool, never a committed row. A spool
this process created is deleted when it is closed or collected; one opened from a path (a step
output handed over by Dagster's IO manager, see defs/io.py) belongs to whoever keeps that path.
Pickling a spool pickles its path, so the file must outlive the pickle (the IO manager sees to it).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import overload
from urllib.parse import quote

from ..errors import TerminalError
from .entry import Entry

READ_CHUNK = 2_048  # entries fetched per round when reading a spool back
_WRITE_CHUNK = 2_048

SCHEMA = """
CREATE TABLE entry (seq INTEGER PRIMARY KEY, key TEXT UNIQUE, kind TEXT, text TEXT, payload TEXT, location TEXT, hash TEXT)
"""  # no other constraint: the parsers validate entries; the record's own constraints stay the last word


def read_only_uri(path: str | Path) -> str:
    """A SQLite URI opening `path` read-only; the path is quoted (TMPDIR or the Dagster storage folder
    may hold `#`, `?` or `%`, which a URI would read as its own)."""
    return f"file:{quote(str(Path(path).resolve()))}?mode=ro"


def scratch_connection(path: str | Path) -> sqlite3.Connection:
    """A SQLite connection for a scratch file: nothing is made durable."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    _tune(conn)
    return conn


def pages(conn: sqlite3.Connection, query: str, start: object, size: int) -> Iterator[list[tuple]]:
    """Keyset pages of `query` (its first column is the key; it takes the last key read, then the
    page size), from after `start`, which is below every key. Each page is a query of its own."""
    last = start
    while rows := conn.execute(query, (last, size)).fetchall():
        last = rows[-1][0]
        yield rows


@contextmanager
def batch(conn: sqlite3.Connection) -> Iterator[None]:
    """One transaction around many writes: the connections here autocommit, and a statement per row
    committed on its own costs ~75 µs (7.5 s of a 100k-row plan)."""
    conn.execute("BEGIN")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _tune(conn: sqlite3.Connection) -> None:
    """Small page caches (the memory bound) for the entries and for the temporary tables a plan
    keeps beside them, which go to a file (deleted by SQLite as it opens it), not to memory."""
    conn.execute("PRAGMA cache_size=-16000")
    conn.execute("PRAGMA temp_store=FILE")
    conn.execute("PRAGMA temp.cache_size=-16000")


SCRATCH_PREFIX = "dq_scratch_"
_held: dict[str, int] = {}  # scratch file -> the descriptor whose flock says its owner is alive


def scratch_file(kind: str, directory: str | Path | None = None) -> Path:
    """A new empty scratch file in the temporary folder, flock-ed for as long as this process
    needs it; files no live process holds (a kill -9 runs no clean-up) are swept first.

    The lock is taken before the file gets a name the sweep looks at, so a sweep never sees a live
    file unlocked (flock works across processes and containers that share the folder's kernel)."""
    folder = Path(directory or tempfile.gettempdir())
    _sweep(folder)
    handle, name = tempfile.mkstemp(prefix=f".dq_new_{kind}_", suffix=".sqlite", dir=folder)
    fcntl.flock(handle, fcntl.LOCK_EX)
    final = folder / f"{SCRATCH_PREFIX}{kind}_{Path(name).name.removeprefix(f'.dq_new_{kind}_')}"
    os.rename(name, final)
    _held[str(final)] = handle
    return final


def release(path: str | Path) -> None:
    """This process no longer needs the scratch file at `path` (deleted, or handed over)."""
    handle = _held.pop(str(path), None)
    if handle is not None:
        os.close(handle)


def _sweep(folder: Path) -> None:
    for path in folder.glob(f"{SCRATCH_PREFIX}*.sqlite"):
        if str(path) in _held:
            continue
        try:
            handle = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink(missing_ok=True)  # nobody holds it: its process is gone
        except OSError:
            pass  # held: in use
        finally:
            os.close(handle)


def _remove(path: str) -> None:
    Path(path).unlink(missing_ok=True)
    release(path)


class SpoolGone(TerminalError):
    """A step's input spool file no longer exists: retrying the step cannot bring it back."""


class DuplicateEntryKey(ValueError):
    """Two entries with one key given to a spool (the parsers refuse these, naming both places)."""


class EntrySpool(Sequence[Entry]):
    """A catalog's entries in a SQLite file: appended while parsing, then sealed and read back."""

    def __init__(self, path: Path, *, owned: bool, writable: bool):
        self.path = Path(path)
        self._owned = owned
        self._buffer: list[tuple[str, ...]] = []
        self._count = 0
        self._sealed = not writable
        if writable:
            self._conn = scratch_connection(self.path)
            self._conn.execute(SCHEMA)
        else:
            self._conn = sqlite3.connect(read_only_uri(self.path), uri=True, isolation_level=None, check_same_thread=False)
            _tune(self._conn)
            self._count = self._conn.execute("SELECT count(*) FROM entry").fetchone()[0]
        # A spool this process created goes with it, however the process lets go of it.
        self._finalizer = weakref.finalize(self, _remove, str(self.path)) if owned else None

    @classmethod
    def create(cls, directory: str | Path | None = None) -> EntrySpool:
        """A new, empty spool in a temporary file (deleted on close)."""
        return cls(scratch_file("entries", directory), owned=True, writable=True)

    @classmethod
    def of(cls, entries: Iterable[Entry]) -> EntrySpool:
        """`entries` (a list, a generator, another spool) as a sealed spool; a spool is returned as is."""
        if isinstance(entries, EntrySpool):
            return entries
        spool = cls.create()
        try:
            for entry in entries:
                spool.add(entry)
            spool.seal()
        except BaseException:
            spool.close()
            raise
        return spool

    @classmethod
    def open(cls, path: str | Path) -> EntrySpool:
        """A sealed spool file someone else keeps (read-only; not deleted on close)."""
        if not Path(path).is_file():
            raise SpoolGone(
                f"the parsed entries at {path} are gone (a newer parse of the catalog replaced them, or the storage "
                "folder was cleaned): run the whole sync again, which parses the file anew"
            )
        return cls(Path(path), owned=False, writable=False)

    # --- writing --------------------------------------------------------------------------------

    def add(self, entry: Entry) -> None:
        if self._sealed:
            raise RuntimeError("this entry spool is sealed")
        self._buffer.append((entry.key, entry.kind, entry.text, entry.payload_json, entry.location, entry.content_hash))
        if len(self._buffer) >= _WRITE_CHUNK:
            self._flush()

    def location_of(self, key: str) -> str | None:
        """Where the entry with this key came from, or None if the spool has no such entry."""
        self._flush()
        row = self._conn.execute("SELECT location FROM entry WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _flush(self) -> None:
        if not self._buffer:
            return
        try:
            with batch(self._conn):
                self._conn.executemany("INSERT INTO entry (key, kind, text, payload, location, hash) VALUES (?, ?, ?, ?, ?, ?)", self._buffer)
        except sqlite3.IntegrityError as exc:
            raise DuplicateEntryKey(f"two entries share one entry key ({exc})") from None
        self._count += len(self._buffer)
        self._buffer = []

    def seal(self) -> EntrySpool:
        """No more entries: flush and switch to reading."""
        if not self._sealed:
            self._flush()
            self._sealed = True
        return self

    # --- reading --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count + len(self._buffer)

    def __iter__(self) -> Iterator[Entry]:
        for chunk in self.chunks():
            yield from chunk

    def chunks(self, size: int = READ_CHUNK) -> Iterator[list[Entry]]:
        """The entries in file order, `size` at a time (what readers should use on big catalogs)."""
        self.seal()
        query = "SELECT seq, key, kind, text, payload, location, hash FROM entry WHERE seq > ? ORDER BY seq LIMIT ?"
        for rows in pages(self._conn, query, 0, size):
            yield [Entry.restore(*row[1:]) for row in rows]

    @overload
    def __getitem__(self, index: int) -> Entry: ...
    @overload
    def __getitem__(self, index: slice) -> list[Entry]: ...
    def __getitem__(self, index: int | slice) -> Entry | list[Entry]:
        if isinstance(index, slice):
            return list(self)[index]
        self.seal()
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError("entry spool index out of range")
        row = self._conn.execute("SELECT key, kind, text, payload, location, hash FROM entry ORDER BY seq LIMIT 1 OFFSET ?", (position,)).fetchone()
        return Entry.restore(*row)

    def connection(self) -> sqlite3.Connection:
        """The spool's own open connection, sealed: for joins in temporary tables beside the entries
        (sync/write/plan.py). Working through it, not through the path, keeps reading a file deleted since."""
        self.seal()
        return self._conn

    def kinds(self) -> dict[str, int]:
        """How many entries of each kind."""
        self.seal()
        return dict(self._conn.execute("SELECT kind, count(*) FROM entry GROUP BY kind ORDER BY kind").fetchall())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (EntrySpool, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EntrySpool({str(self.path)!r}, {len(self)} entries)"

    # --- lifetime -------------------------------------------------------------------------------

    def move_to(self, path: str | Path) -> None:
        """Hand the sealed file over to `path` (a step output's place): from now on it is kept there.
        A file this spool does not own is copied, not moved."""
        self.seal()
        self._conn.close()
        if self._owned:
            shutil.move(str(self.path), str(path))
            assert self._finalizer is not None
            self._finalizer.detach()
            release(self.path)
        else:
            shutil.copyfile(self.path, path)
        self.__init__(Path(path), owned=False, writable=False)  # type: ignore[misc]

    def close(self) -> None:
        self._conn.close()
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> EntrySpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[object, tuple[str]]:
        self.seal()
        return (EntrySpool.open, (str(self.path),))
