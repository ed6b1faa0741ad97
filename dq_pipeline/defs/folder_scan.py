"""What the catalog folder sensor knows about the folder: a readable-folder walk, and per-file state.

`scan_folder` walks the catalog folder with `os.scandir` (no symlinked folders followed, hidden
names skipped, as discovery does) and records which folders it listed completely and which it
could not read. Discovery's `rglob` skips unreadable folders silently; this walk is the positive
evidence the sensor needs before it removes a catalog: a catalog is gone only when the folder its
file lived in (or the nearest existing folder above it) was read and listed this tick.

`SensorState` keeps the per-file state in the system of record (table `dq_sensor_files`, created
on open), so the sensor's cursor stays a few bytes at any number of files, and a file is hashed
again only when its size, mtime, inode or ctime (or a companion's) changed.
"""

from __future__ import annotations

import json
import os
import stat as stat_module
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    insert,
    select,
    update,
)

from ..catalog import CatalogFile
from ..catalog.discovery import _describe, _refused, validate_catalog_id
from ..catalog.formats import suffixes

ROOT = ""  # the catalog folder itself, as a relative folder


@dataclass
class FolderScan:
    """One walk of the catalog folder."""

    root: Path
    stamps: dict[str, str] = field(default_factory=dict)  # relative file path -> "size:mtime_ns:ino:ctime_ns"
    dir_stamps: dict[str, str] = field(default_factory=dict)  # relative folder -> its mtime_ns (entries added/removed)
    listed: set[str] = field(default_factory=set)  # folders read completely
    unreadable: dict[str, str] = field(default_factory=dict)  # folder -> why it could not be read
    links: set[str] = field(default_factory=set)  # relative paths of the symlinks among the files

    def root_readable(self) -> bool:
        return ROOT in self.listed

    def absent_for_sure(self, catalog_id: str) -> bool:
        """Positive evidence that the catalog has no file: the nearest existing folder on its path was
        listed completely, and no folder on the way could not be read."""
        parts = catalog_id.split("/")[:-1]
        while True:
            folder = "/".join(parts)
            if folder in self.unreadable:
                return False
            if folder in self.listed:
                return True
            if not parts:
                return False  # the root itself was neither listed nor unreadable: no evidence
            parts.pop()

    def unreadable_summary(self, limit: int = 5) -> str:
        items = sorted(self.unreadable.items())
        text = "; ".join(f"{folder or '.'}: {why}" for folder, why in items[:limit])
        return text + (f"; and {len(items) - limit} more" if len(items) > limit else "")

    def stamp_of(self, path: Path, relative: str | None = None) -> str | None:
        """The stamp of a file, from the walk when it was seen there, else from a fresh stat."""
        if relative is not None and relative in self.stamps:
            return self.stamps[relative]
        try:
            relative = path.relative_to(self.root).as_posix()
        except ValueError:
            relative = None
        if relative is not None and relative in self.stamps:
            return self.stamps[relative]
        try:
            return _stamp(os.stat(path))
        except OSError:
            return None


def _stamp(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}"


def scan_folder(root: Path) -> FolderScan:
    """Walk the catalog folder; raises FileNotFoundError when it does not exist (or is not a folder)."""
    root = root.resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"catalog folder {root} does not exist")
    scan = FolderScan(root)
    pending = [ROOT]
    while pending:
        folder = pending.pop()
        path = root / folder if folder else root
        try:
            scan.dir_stamps[folder] = str(os.stat(path).st_mtime_ns)
            with os.scandir(path) as it:
                children = list(it)
        except OSError as exc:
            scan.unreadable[folder] = f"{type(exc).__name__}: {exc.strerror or exc}"
            continue
        for entry in children:
            if entry.name.startswith("."):
                continue
            relative = f"{folder}/{entry.name}" if folder else entry.name
            try:
                if entry.is_symlink():
                    scan.links.add(relative)
                if entry.is_dir(follow_symlinks=False):
                    pending.append(relative)
                    continue
                st = entry.stat(follow_symlinks=True) if entry.is_symlink() else entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                if entry.is_symlink():
                    scan.stamps[relative] = "broken-link"
                continue  # removed while listing
            except OSError as exc:
                # Seen in the listing but cannot be stat'ed: present (not removed), state unknown.
                scan.stamps[relative] = f"unstatable:{type(exc).__name__}"
                continue
            if stat_module.S_ISREG(st.st_mode) or entry.is_symlink():
                scan.stamps[relative] = _stamp(st)
        scan.listed.add(folder)
    return scan


def discover_scanned(scan: FolderScan) -> dict[str, CatalogFile]:
    """`catalog.discover` over this walk's listing, without walking again: the same files, ids and
    refusals (tested against discover), at a fraction of its cost (strings sorted instead of Paths;
    only symlinks resolved: a regular file below the resolved root resolves to itself)."""
    known = suffixes()
    candidates = sorted(
        (rel for rel in scan.stamps if os.path.splitext(rel)[1].lower() in known), key=lambda rel: rel.split("/")
    )
    found: dict[str, CatalogFile] = {}
    folders: dict[str, Path] = {"": scan.root}
    for relative in candidates:
        folder, _, name = relative.rpartition("/")
        parent = folders.get(folder)
        if parent is None:
            parent = folders[folder] = scan.root / folder
        path = parent / name
        if relative in scan.links:
            file = _describe(scan.root, path)
        else:
            catalog_id = os.path.splitext(relative)[0]  # = catalog_id_for(relative)
            file = CatalogFile(catalog_id, path, scan.root, relative)
            try:
                validate_catalog_id(catalog_id)
            except ValueError as exc:
                file = _refused(file, "file name", str(exc))
        if file.catalog_id in found:
            other = found[file.catalog_id]
            file = _refused(file, "file name", f"catalog id {file.catalog_id!r} is used by both {other.display} and {file.display}")
        found[file.catalog_id] = file
    return found


# --- per-file state in the system of record ------------------------------------------------------

_metadata = MetaData()

sensor_files = Table(
    "dq_sensor_files",
    _metadata,
    Column("catalog_id", String(512), primary_key=True),
    # Cache key of `digest`: the stamps of the file, its companions and (for formats with companions)
    # its folder; NULL for a recorded catalog whose file is gone.
    Column("stamp", Text),
    Column("digest", String(80), nullable=False),
    Column("format", String(64)),
    Column("companions", Text),  # JSON list of the companion files' paths relative to the folder
    # What the catalog should be synced as (digest, format, the catalogs that read this file as a
    # companion), and the fingerprint a successful run of the sensor's confirmed.
    Column("fingerprint", String(64), nullable=False),
    Column("generation", Integer, nullable=False),  # advanced whenever the fingerprint changes
    Column("done", String(64)),
    Column("held", String(64)),  # a run of this fingerprint failed terminally: not requested again
    Column("held_reason", Text),
    Column("attempts", Integer, nullable=False),  # failed runs of this fingerprint (transient)
    Column("next_at", Float),  # no new request before this time (epoch seconds): backoff
)

sensor_meta = Table(
    "dq_sensor_meta",
    _metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


_COLUMNS = (
    "catalog_id", "stamp", "digest", "format", "companions", "fingerprint", "generation", "done", "held", "held_reason",
    "attempts", "next_at",
)


@dataclass
class FileState:
    catalog_id: str
    stamp: str | None
    digest: str
    format: str | None
    companions: list[str]
    fingerprint: str
    generation: int = 0
    done: str | None = None
    held: str | None = None
    held_reason: str | None = None
    attempts: int = 0
    next_at: float | None = None

    def values(self) -> tuple:
        """The row, in the order of `_COLUMNS`."""
        return (
            self.catalog_id, self.stamp, self.digest, self.format, json.dumps(self.companions) if self.companions else None,
            self.fingerprint, self.generation, self.done, self.held, self.held_reason, self.attempts, self.next_at,
        )


class SensorState:
    """Load every row once per tick, write back only the rows that changed."""

    def __init__(self, engine: Engine):
        self.engine = engine
        _metadata.create_all(engine, checkfirst=True)
        self.rows: dict[str, FileState] = {}
        self._loaded: dict[str, tuple] = {}
        with engine.connect() as conn:
            for r in conn.execute(select(*(sensor_files.c[name] for name in _COLUMNS))).all():
                values = tuple(r)
                self._loaded[values[0]] = values
                self.rows[values[0]] = FileState(
                    values[0], values[1], values[2], values[3], json.loads(values[4]) if values[4] else [], *values[5:]
                )
            self.meta = {r.key: r.value for r in conn.execute(select(sensor_meta))}
        self._meta_loaded = dict(self.meta)

    def drop(self, catalog_ids: Iterable[str]) -> None:
        for catalog_id in catalog_ids:
            self.rows.pop(catalog_id, None)

    def save(self) -> int:
        """Write the changed rows in one transaction; the number of rows written."""
        inserts, updates, deletes = [], [], [k for k in self._loaded if k not in self.rows]
        loaded: dict[str, tuple] = {}
        for catalog_id, state in self.rows.items():
            values = state.values()
            loaded[catalog_id] = values
            before = self._loaded.get(catalog_id)
            if before is None:
                inserts.append(dict(zip(_COLUMNS, values, strict=True)))
            elif before != values:
                updates.append(dict(zip(_COLUMNS, values, strict=True)))
        with self.engine.begin() as conn:
            for start in range(0, len(deletes), 500):
                conn.execute(delete(sensor_files).where(sensor_files.c.catalog_id.in_(deletes[start : start + 500])))
            for start in range(0, len(inserts), 5000):
                conn.execute(insert(sensor_files), inserts[start : start + 5000])
            if updates:
                statement = (
                    update(sensor_files)
                    .where(sensor_files.c.catalog_id == bindparam("b_id"))
                    .values({name: bindparam(name) for name in _COLUMNS[1:]})
                )
                conn.execute(statement, [{"b_id": r.pop("catalog_id"), **r} for r in updates])
            for key, value in self.meta.items():
                if self._meta_loaded.get(key) != value:
                    conn.execute(delete(sensor_meta).where(sensor_meta.c.key == key))
                    conn.execute(insert(sensor_meta).values(key=key, value=value))
        self._loaded = loaded
        self._meta_loaded = dict(self.meta)
        return len(inserts) + len(updates) + len(deletes)


def load_done(engine: Engine) -> dict[str, tuple[str, str | None]]:
    """{catalog id: (digest, confirmed fingerprint or None)} as the sensor last recorded them (for checks)."""
    _metadata.create_all(engine, checkfirst=True)
    with engine.connect() as conn:
        return {
            r.catalog_id: (r.digest, r.done if r.done == r.fingerprint else None)
            for r in conn.execute(select(sensor_files.c.catalog_id, sensor_files.c.digest, sensor_files.c.done, sensor_files.c.fingerprint))
        }
