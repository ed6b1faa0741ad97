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
from collections.abc import ItemsView, Iterable, Iterator, Mapping
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
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError

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
    """Walk the catalog folder; raises FileNotFoundError when it does not exist (or is not a folder).

    One `os.scandir` per folder and one stat per file (its lstat; a symlink's target for links):
    at 100,000 files this loop is a large share of a tick, so it works on strings, not Paths."""
    root = root.resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"catalog folder {root} does not exist")
    scan = FolderScan(root)
    stamps, links, listed, dir_stamps, unreadable = scan.stamps, scan.links, scan.listed, scan.dir_stamps, scan.unreadable
    is_regular = stat_module.S_ISREG
    base = str(root)
    pending = [ROOT]
    while pending:
        folder = pending.pop()
        path = os.path.join(base, folder) if folder else base
        try:
            dir_stamps[folder] = str(os.stat(path).st_mtime_ns)
            with os.scandir(path) as it:
                children = list(it)
        except OSError as exc:
            unreadable[folder] = f"{type(exc).__name__}: {exc.strerror or exc}"
            continue
        prefix = folder + "/" if folder else ""
        for entry in children:
            name = entry.name
            if name.startswith("."):
                continue
            relative = prefix + name
            try:
                if entry.is_dir(follow_symlinks=False):  # a symlinked folder is not followed (it is a link)
                    pending.append(relative)
                    continue
                if entry.is_symlink():
                    links.add(relative)
                    st = entry.stat(follow_symlinks=True)  # the target's stamp: a retargeted link changes it
                else:
                    st = entry.stat(follow_symlinks=False)
                    if not is_regular(st.st_mode):
                        continue  # a fifo, socket or device is no catalog file
            except FileNotFoundError:
                if entry.is_symlink():
                    stamps[relative] = "broken-link"
                continue  # removed while listing
            except OSError as exc:
                # Seen in the listing but cannot be stat'ed: present (not removed), state unknown.
                stamps[relative] = f"unstatable:{type(exc).__name__}"
                continue
            stamps[relative] = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}"  # = _stamp(st)
        listed.add(folder)
    return scan


class ScannedFiles(Mapping[str, CatalogFile]):
    """`discover_scanned`'s answer: {catalog id: CatalogFile}, as `catalog.discover` gives it.

    A plain file (regular, its id valid and its own) is held as its relative path and becomes a
    CatalogFile (with its Path) only when asked for: a tick at 100,000 files looks at nearly all of
    them by their relative path (`display`) alone."""

    def __init__(self, root: Path, files: dict[str, CatalogFile | str]):
        self.root = root
        self._files = files  # catalog id -> its CatalogFile, or a plain file's relative path

    def __getitem__(self, catalog_id: str) -> CatalogFile:
        file = self._files[catalog_id]
        if isinstance(file, str):
            file = self._files[catalog_id] = CatalogFile(catalog_id, self.root / file, self.root, file)
        return file

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, catalog_id: object) -> bool:
        return catalog_id in self._files

    def absent(self, catalog_ids: Iterable[str]) -> set[str]:
        """Those of `catalog_ids` with no file."""
        return set(catalog_ids).difference(self._files)  # a dict: the difference looks each id up in C

    def display(self, catalog_id: str) -> str:
        """The file's path relative to the folder (CatalogFile.display), without building it."""
        file = self._files[catalog_id]
        return file if isinstance(file, str) else file.display

    def displays(self) -> Iterator[tuple[str, str]]:
        """(catalog id, display) of every file."""
        for catalog_id, file in self._files.items():
            yield catalog_id, file if isinstance(file, str) else file.display

    def entries(self) -> ItemsView[str, CatalogFile | str]:
        """(catalog id, CatalogFile or, for a plain file not built yet, its display) of every file."""
        return self._files.items()


def discover_scanned(scan: FolderScan) -> ScannedFiles:
    """`catalog.discover` over this walk's listing, without walking again: the same files, ids and
    refusals (tested against discover), at a fraction of its cost. Only symlinks are resolved (a
    regular file below the resolved root, reached without following a symlinked folder, resolves to
    itself); Paths are built only when a file is asked for; and only the files that share a catalog
    id are sorted (in Path order: the later ones are refused, naming the one before), the others
    keep the walk's order."""
    known = suffixes()
    root, links = scan.root, scan.links
    paths: dict[str, str] = {}  # catalog id -> the relative path of the first file with it
    shared: dict[str, list[str]] = {}  # catalog id -> every file with it, where more than one
    for relative in scan.stamps:
        # = os.path.splitext(relative): no name in the walk starts with "." (hidden ones are skipped),
        # so the extension is what follows the last dot of the name, when there is one.
        dot = relative.rfind(".")
        if dot > relative.rfind("/") + 1 and relative[dot:].lower() in known:
            catalog_id = relative[:dot]  # = catalog_id_for(relative)
            first = paths.setdefault(catalog_id, relative)
            if first != relative:
                shared.setdefault(catalog_id, [first]).append(relative)

    def describe(catalog_id: str, relative: str) -> CatalogFile | str:
        if relative in links:
            return _describe(root, root / relative)
        try:
            validate_catalog_id(catalog_id)
        except ValueError as exc:
            return _refused(CatalogFile(catalog_id, root / relative, root, relative), "file name", str(exc))
        return relative  # a plain file: ScannedFiles builds its CatalogFile when asked

    found: dict[str, CatalogFile | str] = {}
    for catalog_id, relative in paths.items():
        group = shared.get(catalog_id)
        if group is None:
            found[catalog_id] = describe(catalog_id, relative)
            continue
        # "/" -> "\0" (below every character of a name): comparing these strings compares the paths
        # part by part, as sorting Paths does ("a/x" before "a b/x").
        before: CatalogFile | None = None
        for member in sorted(group, key=lambda r: r.replace("/", "\0")):
            file = describe(catalog_id, member)
            if isinstance(file, str):
                file = CatalogFile(catalog_id, root / member, root, member)
            if before is not None:
                reason = f"catalog id {catalog_id!r} is used by both {before.display} and {file.display}"
                file = _refused(file, "file name", reason)
            before = file
        found[catalog_id] = before
    return ScannedFiles(root, found)


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
    # The request whose outcome is still to be folded in: its run key, which every run made for it
    # carries as the `dq/request` tag; NULL when none is outstanding.
    Column("requested", Text),
)

sensor_meta = Table(
    "dq_sensor_meta",
    _metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


_COLUMNS = (
    "catalog_id", "stamp", "digest", "format", "companions", "fingerprint", "generation", "done", "held", "held_reason",
    "attempts", "next_at", "requested",
)


@dataclass(slots=True)
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
    requested: str | None = None

    def values(self) -> tuple:
        """The row, in the order of `_COLUMNS`."""
        return (
            self.catalog_id, self.stamp, self.digest, self.format, json.dumps(self.companions) if self.companions else None,
            self.fingerprint, self.generation, self.done, self.held, self.held_reason, self.attempts, self.next_at,
            self.requested,
        )


class SensorState:
    """Load every row once per tick, write back only the rows that changed.

    `loaded` holds every row as stored (plain tuples in the order of `_COLUMNS`); a row becomes a
    FileState (in `rows`) only when the tick asks for it (`get`) or writes it (`put`): at 100,000
    files a steady tick reads nearly every row through `untouched` and changes none, so building and
    comparing 100,000 FileStates would be most of its work. A row never asked for is unchanged."""

    def __init__(self, engine: Engine):
        self.engine = engine
        _create_tables(engine)
        with engine.connect() as conn:
            self.meta = {r.key: r.value for r in conn.execute(select(sensor_meta))}
            # The rows as the driver's plain tuples, read on the same connection, in the same
            # transaction as the meta above.
            statement = select(*(sensor_files.c[name] for name in _COLUMNS)).compile(dialect=engine.dialect)
            cursor = conn.connection.cursor()
            try:
                cursor.execute(str(statement))  # no parameters
                fetched = cursor.fetchall()
            finally:
                cursor.close()
        self.loaded: dict[str, tuple] = {
            values[0]: values if type(values) is tuple else tuple(values) for values in fetched
        }
        self.rows: dict[str, FileState] = {}  # the rows asked for or written this tick
        self._dropped: set[str] = set()
        self._meta_loaded = dict(self.meta)

    def get(self, catalog_id: str) -> FileState | None:
        """The row of a catalog (None: none), as a FileState the tick may change."""
        row = self.rows.get(catalog_id)
        if row is None and catalog_id not in self._dropped:
            values = self.loaded.get(catalog_id)
            if values is not None:
                companions = values[4]
                row = self.rows[catalog_id] = FileState(
                    catalog_id, values[1], values[2], values[3], json.loads(companions) if companions else [], *values[5:]
                )
        return row

    def untouched(self) -> dict[str, tuple]:
        """{catalog id: its stored row as a tuple (`_COLUMNS`)} of the rows the tick has not asked for
        (nor dropped) yet: a snapshot, and a row asked for later is a FileState from then on."""
        if not self.rows and not self._dropped:
            return self.loaded
        return {k: v for k, v in self.loaded.items() if k not in self.rows and k not in self._dropped}

    def put(self, row: FileState) -> None:
        self.rows[row.catalog_id] = row
        self._dropped.discard(row.catalog_id)

    def drop(self, catalog_ids: Iterable[str]) -> None:
        for catalog_id in catalog_ids:
            self.rows.pop(catalog_id, None)
            self._dropped.add(catalog_id)

    def outstanding(self) -> dict[str, str]:
        """{request key: catalog id} of the requests whose outcome is still to be folded in."""
        found = {values[12]: catalog_id for catalog_id, values in self.untouched().items() if values[12] is not None}
        found.update({row.requested: catalog_id for catalog_id, row in self.rows.items() if row.requested is not None})
        return found

    def ids(self) -> set[str]:
        """Every catalog with a row."""
        ids = set(self.loaded)
        ids.update(self.rows)
        ids.difference_update(self._dropped)  # `rows` holds no dropped id
        return ids

    def save(self) -> int:
        """Write the changed rows in one transaction; the number of rows written."""
        inserts, updates, deletes = [], [], [k for k in self._dropped if k in self.loaded]
        written: dict[str, tuple] = {}
        for catalog_id, state in self.rows.items():
            values = state.values()
            before = self.loaded.get(catalog_id)
            if before is None:
                inserts.append(dict(zip(_COLUMNS, values, strict=True)))
            elif before != values:
                updates.append(dict(zip(_COLUMNS, values, strict=True)))
            else:
                continue
            written[catalog_id] = values
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
        for catalog_id in deletes:
            del self.loaded[catalog_id]
        self.loaded.update(written)
        self._dropped.clear()
        self._meta_loaded = dict(self.meta)
        return len(inserts) + len(updates) + len(deletes)


def _create_tables(engine: Engine) -> None:
    """The sensor's tables, with the columns later versions added to an older table."""
    try:
        _metadata.create_all(engine, checkfirst=True)
    except DBAPIError:  # another process created them between the check and the CREATE
        _metadata.create_all(engine, checkfirst=True)
    present = {c["name"] for c in inspect(engine).get_columns(sensor_files.name)}
    if "requested" not in present:
        try:
            with engine.begin() as conn:
                conn.execute(text("ALTER TABLE dq_sensor_files ADD COLUMN requested TEXT"))
        except DBAPIError:
            # Another process (a check, a second code server) added it first.
            if "requested" not in {c["name"] for c in inspect(engine).get_columns(sensor_files.name)}:
                raise


def load_done(engine: Engine) -> dict[str, tuple[str, str | None]]:
    """{catalog id: (digest, confirmed fingerprint or None)} as the sensor last recorded them (for checks)."""
    _create_tables(engine)
    with engine.connect() as conn:
        return {
            r.catalog_id: (r.digest, r.done if r.done == r.fingerprint else None)
            for r in conn.execute(select(sensor_files.c.catalog_id, sensor_files.c.digest, sensor_files.c.done, sensor_files.c.fingerprint))
        }
