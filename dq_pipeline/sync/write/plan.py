"""What a sync must change: the catalog's entries compared with its committed rows, on disk.

The comparison is a join in SQLite, so a plan costs the same small memory for ten entries and for
a million: the entries are the catalog's entry spool, the committed rows are copied from the record
a chunk at a time into temporary tables of the spool's own connection, one pass classifies every
entry, and every part of the plan (inserts, updates, deletes, texts to embed) is read back a chunk
at a time. New vectors are kept there too (see protocol._VectorStore).

Temporary tables live in a file SQLite deletes as it opens it, so even a kill -9 leaves nothing
behind; and working through the spool's open connection, never its path, a spool file deleted
under a running step (a newer parse of the catalog replaced it) is still read to the end.

An entry is
* skipped if a reviewer rejected this version of it and the record does not hold this version
  (its row, if any, is deleted: the stores look as after a cleanup; I7),
* inserted if the record has no row for its key,
* updated if its content or model differs from the row's, or on a force reindex,
* unchanged otherwise.
A row whose key no entry has is deleted.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy import Engine, Table, func, select

from ...catalog import Entry, EntrySpool
from ...catalog.spool import batch, pages
from ...errors import ConfigurationError
from ..stores.schema import ENTRY_TABLES, catalogs, entries, rejections

CHUNK = 2_048  # rows per page read back from the plan, and copied in from the record

_FIELDS = ("entry_key", "content_hash", "model", "collection", "point_id", "status", "written_by")
SKIP, SKIP_AND_DELETE, INSERT, UPDATE, UNCHANGED = range(5)  # an entry's part in the plan (table act)

# The pages of a plan, read by keyset (each query takes the last key read, then the page size).
_INSERTS = """SELECT a.seq, e.key, e.kind, e.text, e.payload, e.location, e.hash
    FROM act a JOIN main.entry e ON e.seq = a.seq WHERE a.act = 2 AND a.seq > ? ORDER BY a.seq LIMIT ?"""
_UPDATES = """SELECT a.seq, e.key, e.kind, e.text, e.payload, e.location, e.hash,
        s.key, s.hash, s.model, s.collection, s.point_id, s.status, s.written_by
    FROM act a JOIN main.entry e ON e.seq = a.seq JOIN stored s ON s.key = e.key WHERE a.act = 3 AND a.seq > ? ORDER BY a.seq LIMIT ?"""
_DELETES = """SELECT s.key, s.key, s.hash, s.model, s.collection, s.point_id, s.status, s.written_by
    FROM stored s WHERE s.doomed = 1 AND s.key > ? ORDER BY s.key LIMIT ?"""
_TEXTS = "SELECT n, hash, text FROM embed WHERE n > ? ORDER BY n LIMIT ?"
assert (INSERT, UPDATE) == (2, 3)  # spelled out in the queries above

_SCHEMA = """
CREATE TEMP TABLE stored (
    key TEXT PRIMARY KEY, hash TEXT, model TEXT, collection TEXT, point_id TEXT, status TEXT, written_by TEXT,
    doomed INTEGER NOT NULL DEFAULT 0
);
CREATE TEMP TABLE rejected (key TEXT, hash TEXT, PRIMARY KEY (key, hash));
CREATE TEMP TABLE act (seq INTEGER PRIMARY KEY, act INTEGER NOT NULL);
CREATE TEMP TABLE embed (n INTEGER PRIMARY KEY, hash TEXT UNIQUE, text TEXT);
CREATE TEMP TABLE vector (hash TEXT PRIMARY KEY, v BLOB NOT NULL);
"""
_DROP = "DROP TABLE IF EXISTS temp.stored; DROP TABLE IF EXISTS temp.rejected; DROP TABLE IF EXISTS temp.act; " \
    "DROP TABLE IF EXISTS temp.embed; DROP TABLE IF EXISTS temp.vector;"


@dataclass(frozen=True, slots=True)
class StoredRow:
    entry_key: str
    content_hash: str
    model: str
    collection: str
    point_id: str
    status: str
    written_by: str | None


class Plan:
    """A sync's plan, in temporary tables beside its entries (dropped on close). Counts are known at
    once; the entries and rows behind them are read a chunk at a time."""

    def __init__(self, spool: EntrySpool | None):
        self._spool = spool if spool is not None else EntrySpool.of([])  # a plan of deletions only: no entries
        self.db = self._spool.connection()
        self.db.executescript(_SCHEMA)
        self.inserted = self.updated = self.deleted = self.unchanged = self.skipped_rejected = 0
        self._own_spool = spool is None

    @property
    def is_empty(self) -> bool:
        return not (self.inserted or self.updated or self.deleted)

    # --- reading the plan back ------------------------------------------------------------------

    def inserts(self) -> Iterator[list[Entry]]:
        for rows in self._pages(_INSERTS, 0):
            yield [Entry.restore(*r[1:]) for r in rows]

    def updates(self) -> Iterator[list[tuple[Entry, StoredRow]]]:
        for rows in self._pages(_UPDATES, 0):
            yield [(Entry.restore(*r[1:7]), _stored_row(r[7:])) for r in rows]

    def to_embed(self) -> Iterator[list[Entry]]:
        """The entries whose new versions are written (inserts, then updates), in file order."""
        yield from self.inserts()
        for pairs in self.updates():
            yield [entry for entry, _ in pairs]

    def texts_to_embed(self) -> Iterator[list[tuple[str, str]]]:
        """(content hash, text) of every new version, each content once."""
        if not self.db.execute("SELECT 1 FROM embed LIMIT 1").fetchone():
            self.db.execute(
                "INSERT OR IGNORE INTO embed (hash, text) SELECT e.hash, e.text FROM act a JOIN main.entry e ON e.seq = a.seq "
                "WHERE a.act IN (?, ?) ORDER BY a.seq",
                (INSERT, UPDATE),
            )
        for rows in self._pages(_TEXTS, 0):
            yield [(h, t) for _, h, t in rows]

    def deletes(self) -> Iterator[list[StoredRow]]:
        for rows in self._pages(_DELETES, ""):
            yield [_stored_row(r[1:]) for r in rows]

    def _pages(self, query: str, start: object) -> Iterator[list[tuple]]:
        return pages(self.db, query, start, CHUNK)

    # --- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        self.db.executescript(_DROP)
        if self._own_spool:
            self._spool.close()

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stored_row(r: tuple) -> StoredRow:
    # model, collection and status repeat on every row: one shared string each, not one per row
    return StoredRow(r[0], r[1], sys.intern(r[2]), sys.intern(r[3]), r[4], sys.intern(r[5]), r[6])


def _copy_rows(engine: Engine, plan: Plan, catalog_id: str, table: Table, only_status: str | None = None) -> None:
    """The catalog's committed rows into the plan's file, a chunk at a time (streamed from the record)."""
    query = select(*(table.c[name] for name in _FIELDS)).where(table.c.catalog_id == catalog_id)
    if only_status is not None:
        query = query.where(table.c.status == only_status)
    with engine.connect() as conn, batch(plan.db):
        for part in conn.execution_options(yield_per=CHUNK).execute(query).partitions():
            plan.db.executemany("INSERT INTO stored (key, hash, model, collection, point_id, status, written_by) VALUES (?, ?, ?, ?, ?, ?, ?)", part)


def plan_sync(
    engine: Engine,
    catalog_id: str,
    wanted: EntrySpool,
    model_id: str,
    force: bool = False,
    rejected: Iterable[tuple[str, str]] = (),
    table: Table = entries,
) -> Plan:
    """Compare the catalog's entries with its committed rows in `table` (the live rows, or the
    standby model's: see model_roles.py); the module doc has the rules."""
    plan = Plan(wanted)
    try:
        _copy_rows(engine, plan, catalog_id, table)
        with batch(plan.db):
            plan.db.executemany("INSERT OR IGNORE INTO rejected VALUES (?, ?)", list(rejected))
        plan.db.execute(
            """INSERT INTO act (seq, act) SELECT e.seq, CASE
                WHEN r.key IS NOT NULL AND s.key IS NULL THEN :skip
                WHEN r.key IS NOT NULL AND s.hash != e.hash THEN :skip_and_delete
                WHEN s.key IS NULL THEN :insert
                WHEN :force OR s.hash != e.hash OR s.model != :model THEN :update
                ELSE :unchanged END
            FROM main.entry e
            LEFT JOIN stored s ON s.key = e.key
            LEFT JOIN rejected r ON r.key = e.key AND r.hash = e.hash""",
            {
                "skip": SKIP, "skip_and_delete": SKIP_AND_DELETE, "insert": INSERT, "update": UPDATE, "unchanged": UNCHANGED,
                "force": bool(force), "model": model_id,
            },
        )
        plan.db.execute(
            "UPDATE stored SET doomed = 1 WHERE NOT EXISTS (SELECT 1 FROM main.entry e WHERE e.key = stored.key) "
            "OR key IN (SELECT e.key FROM act a JOIN main.entry e ON e.seq = a.seq WHERE a.act = ?)",
            (SKIP_AND_DELETE,),
        )
        counts = dict(plan.db.execute("SELECT act, count(*) FROM act GROUP BY act").fetchall())
        plan.inserted, plan.updated, plan.unchanged = counts.get(INSERT, 0), counts.get(UPDATE, 0), counts.get(UNCHANGED, 0)
        plan.skipped_rejected = counts.get(SKIP, 0) + counts.get(SKIP_AND_DELETE, 0)
        plan.deleted = plan.db.execute("SELECT count(*) FROM stored WHERE doomed = 1").fetchone()[0]
    except BaseException:
        plan.close()
        raise
    return plan


def plan_removal(engine: Engine, catalog_id: str, status: str) -> Plan:
    """A plan that deletes the catalog's live rows in this review status and keeps every other row."""
    plan = Plan(None)
    try:
        _copy_rows(engine, plan, catalog_id, entries, only_status=status)
        plan.db.execute("UPDATE stored SET doomed = 1")
        plan.deleted = plan.db.execute("SELECT count(*) FROM stored").fetchone()[0]
        with engine.connect() as conn:
            total = conn.scalar(select(func.count()).select_from(entries).where(entries.c.catalog_id == catalog_id)) or 0
        plan.unchanged = total - plan.deleted
    except BaseException:
        plan.close()
        raise
    return plan


def stored_hashes(engine: Engine, catalog_id: str, model_id: str) -> Iterator[list[str]]:
    """Content hashes this catalog already holds embedded with this model, as the live model or the
    standby one (what needs no embedding), a chunk at a time."""
    with engine.connect() as conn:
        for table in ENTRY_TABLES:
            query = select(table.c.content_hash).where(table.c.catalog_id == catalog_id, table.c.model == model_id)
            for part in conn.execution_options(yield_per=CHUNK).execute(query).partitions():
                yield [h for (h,) in part]


def new_contents(spool: EntrySpool, known: Iterable[list[str]]) -> Iterator[list[tuple[str, str]]]:
    """(content hash, text) of every entry of `spool` whose content is not among `known` (chunks of
    hashes), each content once, in file order, a chunk at a time (a join in temporary tables)."""
    db = spool.connection()
    db.executescript(
        "CREATE TEMP TABLE known (hash TEXT PRIMARY KEY) WITHOUT ROWID;"
        "CREATE TEMP TABLE todo (n INTEGER PRIMARY KEY, hash TEXT UNIQUE, text TEXT);"
    )
    try:
        with batch(db):
            for part in known:
                db.executemany("INSERT OR IGNORE INTO temp.known VALUES (?)", [(h,) for h in part])
        db.execute(
            "INSERT OR IGNORE INTO temp.todo (hash, text) SELECT e.hash, e.text FROM main.entry e "
            "WHERE NOT EXISTS (SELECT 1 FROM temp.known k WHERE k.hash = e.hash) ORDER BY e.seq"
        )
        for rows in pages(db, "SELECT n, hash, text FROM temp.todo WHERE n > ? ORDER BY n LIMIT ?", 0, CHUNK):
            yield [(h, t) for _, h, t in rows]
    finally:
        db.executescript("DROP TABLE IF EXISTS temp.known; DROP TABLE IF EXISTS temp.todo;")


def rebatched(parts: Iterable[list[tuple[str, str]]], size: int) -> Iterator[list[tuple[str, str]]]:
    """The items of `parts` again, in lists of at least `size` (the last one: what is left), so an
    encoder is called with big batches however the pages came."""
    pending: list[tuple[str, str]] = []
    for part in parts:
        pending.extend(part)
        if len(pending) >= size:
            yield pending
            pending = []
    if pending:
        yield pending


def stored_dimension(engine: Engine, model_id: str) -> int | None:
    """The vector size recorded for a model, so an unchanged catalog never loads the model to learn it."""
    with engine.connect() as conn:
        for table in ENTRY_TABLES:
            found = conn.scalar(select(table.c.dimension).where(table.c.model == model_id).limit(1))
            if found is not None:
                return found
        return None


def committed_source_digests(engine: Engine) -> dict[str, str | None]:
    """Each recorded catalog's committed source digest (None where it predates recording): a catalog
    whose file digest differs from this is behind its source and must be synced again."""
    with engine.connect() as conn:
        return {r.catalog_id: r.source_digest for r in conn.execute(select(catalogs.c.catalog_id, catalogs.c.source_digest))}


def refuse_foreign_namespace(engine: Engine, namespace: str, catalog_id: str) -> None:
    """Refuse a catalog whose rows point into another namespace's collections (DQ_NAMESPACE changed
    in place): this store must neither read those collections as its own nor write into them."""
    with engine.connect() as conn:
        foreign = conn.scalar(
            select(entries.c.collection)
            .where(entries.c.catalog_id == catalog_id, ~entries.c.collection.startswith(f"{namespace}_", autoescape=True))
            .limit(1)
        )
    if foreign is not None:
        raise ConfigurationError(
            f"catalog {catalog_id}: its rows point into collection {foreign!r}, outside namespace {namespace!r}; "
            "set DQ_NAMESPACE back, or rebuild this deployment into a new database"
        )


def rejected_versions(engine: Engine, catalog_id: str) -> set[tuple[str, str]]:
    """The (entry key, content hash) pairs a review rejected: the plan keeps them out (I7)."""
    with engine.connect() as conn:
        query = select(rejections.c.entry_key, rejections.c.content_hash).where(rejections.c.catalog_id == catalog_id)
        return {(r.entry_key, r.content_hash) for r in conn.execute(query)}
