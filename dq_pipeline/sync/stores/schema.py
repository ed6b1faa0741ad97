"""The system of record's tables (PostgreSQL or SQLite through SQLAlchemy).

`dq_entries` holds one row per catalog entry with its vector, so Qdrant can always be rebuilt from
it without re-embedding. `dq_journal` is the outbox of the write protocol: which points a run is
about to write and which it will retire. `dq_catalogs` records each catalog's last change and the digest of the source it was parsed from
(so an older parse never replaces a newer one, and the folder sensor can tell which files are
ahead of the index), `dq_rejections` the versions a reviewer rejected, `dq_fences` each catalog's
lock epoch (a run that lost its lock cannot commit), and `dq_vector_cache` vectors the embedding
step computed for the write step to pick up, a chunk at a time.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()
_json = JSON().with_variant(JSONB(), "postgresql")

ACTIVE, REJECTED = "active", "rejected"
PENDING, COMMITTED = "pending", "committed"

def _entry_columns() -> list:  # type: ignore[type-arg]
    return [
        Column("catalog_id", String(512), primary_key=True),
        Column("entry_key", String(512), primary_key=True),
        Column("kind", String(32), nullable=False),
        Column("text", Text, nullable=False),
        Column("payload", _json, nullable=False),
        Column("content_hash", String(64), nullable=False),
        Column("model", String(255), nullable=False),
        Column("dimension", Integer, nullable=False),
        Column("vector", LargeBinary, nullable=False),  # float32, little-endian
        Column("collection", String(255), nullable=False),
        Column("point_id", String(36), nullable=False),
        # The run that wrote this row's point (also in the point's payload): deletes of points are
        # conditional on it, so a delete meant for one write can never remove a later rewrite of the
        # same content-addressed id (guard.py). NULL for rows written before it was recorded.
        Column("written_by", String(36)),
        Column("status", String(16), nullable=False, server_default=ACTIVE),
        Column("reviewed_by", String(255)),
        Column("review_reason", Text),
        Column("reviewed_at", DateTime(timezone=True)),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    ]


entries = Table(
    "dq_entries",
    metadata,
    *_entry_columns(),
    Index("ix_dq_entries_point_id", "point_id"),
    # verify and repair page through a catalog's rows in (collection, point id) order
    Index("ix_dq_entries_catalog_collection_point", "catalog_id", "collection", "point_id"),
)

# The standby model's rows (models.py): the live rows' contents embedded with the model being built
# (or the one just replaced, kept for an instant rollback), in that model's own collection. Same
# columns as dq_entries, so the write protocol, the guard and reconcile treat both alike; review
# decisions are read from dq_entries only (a switch swaps the vector columns, nothing else).
standby = Table(
    "dq_standby",
    metadata,
    *_entry_columns(),
    Index("ix_dq_standby_point_id", "point_id"),
    Index("ix_dq_standby_catalog_collection_point", "catalog_id", "collection", "point_id"),
)

ENTRY_TABLES = (entries, standby)

# Which model is live and which (if any) stands by: one row per role. A commit checks, inside its
# transaction, that its role still holds the model it planned with (a switch in between refuses it).
models = Table(
    "dq_models",
    metadata,
    Column("role", String(16), primary_key=True),  # "live" | "standby"
    Column("model", String(255), nullable=False),
    Column("dimension", Integer, nullable=False),
    Column("collection", String(255), nullable=False),
    Column("source", Text),  # what loads it again (DQ_EMBEDDING_MODEL's value); NULL: not recorded
    Column("state", String(16), nullable=False),  # live | building | previous
    Column("since", DateTime(timezone=True), nullable=False),
)

# Collections of a dropped standby model still to delete from Qdrant: recorded in the transaction
# that deletes their rows, so a drop interrupted before Qdrant answered is finished later (I2).
collection_drops = Table(
    "dq_collection_drops",
    metadata,
    Column("collection", String(255), primary_key=True),
    Column("requested_at", DateTime(timezone=True), nullable=False),
)

# Scratch space of a switch: the live rows' vector columns while the standby's move in (emptied in
# the same transaction).
model_swap = Table(
    "dq_model_swap",
    metadata,
    Column("catalog_id", String(512), primary_key=True),
    Column("entry_key", String(512), primary_key=True),
    Column("model", String(255), nullable=False),
    Column("dimension", Integer, nullable=False),
    Column("vector", LargeBinary, nullable=False),
    Column("collection", String(255), nullable=False),
    Column("point_id", String(36), nullable=False),
    Column("written_by", String(36)),
)

journal = Table(
    "dq_journal",
    metadata,
    Column("run_id", String(36), primary_key=True),
    Column("catalog_id", String(512), nullable=False, index=True),
    Column("phase", String(16), nullable=False),
    # {collection: [point ids]}: what this run writes, and what it deletes once committed.
    Column("new_points", _json, nullable=False),
    Column("retired_points", _json, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

catalogs = Table(
    "dq_catalogs",
    metadata,
    Column("catalog_id", String(512), primary_key=True),
    Column("entry_count", Integer, nullable=False),
    Column("last_run_id", String(36)),
    Column("last_synced_at", DateTime(timezone=True), nullable=False),
    # sha256 of the source bytes the committed rows were parsed from; NULL before this was recorded.
    Column("source_digest", String(80)),
)

# The fencing token of each catalog's lock: advanced by every run that takes the lock, and checked
# inside the commit transaction, so a run whose lock was lost (and taken over) cannot commit.
fences = Table(
    "dq_fences",
    metadata,
    Column("catalog_id", String(512), primary_key=True),
    Column("epoch", BigInteger, nullable=False),
)

# Vectors handed from the embedding step to the write step (possibly another process or machine):
# through the system of record rather than through Dagster's IO manager, so no step ever holds a
# catalog's vectors at once, and a retried write step re-embeds nothing.
vector_cache = Table(
    "dq_vector_cache",
    metadata,
    Column("model", String(255), primary_key=True),
    Column("content_hash", String(64), primary_key=True),
    Column("vector", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Rejected versions of entries: a rejected entry stays out of the index, even after its row is
# cleaned up, until its content changes (then its content hash differs and it comes back).
rejections = Table(
    "dq_rejections",
    metadata,
    Column("catalog_id", String(512), primary_key=True),
    Column("entry_key", String(512), primary_key=True),
    Column("content_hash", String(64), primary_key=True),
    Column("rejected_by", String(255)),
    Column("reason", Text),
    Column("rejected_at", DateTime(timezone=True), nullable=False),
)

_SCHEMA_LOCK_KEY = 0x64715F736368656D  # "dq_schem": serialises concurrent first runs on PostgreSQL


def create_schema(engine: Engine) -> None:
    """Create the tables if missing; safe when several processes start at once."""
    # dq_write: BEGIN IMMEDIATE on SQLite, so two first runs cannot both find a table missing.
    with engine.execution_options(dq_write=True).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK_KEY})
        metadata.create_all(conn, checkfirst=True)
        _add_missing_columns(conn)


# Columns added after a table first shipped: (table, column, constant DDL). Existing databases get
# them on first open; all are nullable, so old rows stay valid.
_ADDED_COLUMNS = (
    ("dq_catalogs", "source_digest", text("ALTER TABLE dq_catalogs ADD COLUMN source_digest VARCHAR(80)")),
    ("dq_entries", "written_by", text("ALTER TABLE dq_entries ADD COLUMN written_by VARCHAR(36)")),
)

# Indexes added after their table first shipped (create_all only creates those of new tables):
# (table, index, constant DDL). Created only when missing: even `CREATE INDEX IF NOT EXISTS` takes a
# lock on the table that waits for every open write transaction on it (and queues the next ones).
_ADDED_INDEXES = (
    (
        "dq_entries",
        "ix_dq_entries_catalog_collection_point",
        text("CREATE INDEX IF NOT EXISTS ix_dq_entries_catalog_collection_point ON dq_entries (catalog_id, collection, point_id)"),
    ),
)


def _add_missing_columns(conn) -> None:  # type: ignore[no-untyped-def]
    inspector = inspect(conn)
    for table, column, ddl in _ADDED_COLUMNS:
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            conn.execute(ddl)
    for table, index, ddl in _ADDED_INDEXES:
        if index not in {i["name"] for i in inspector.get_indexes(table)}:
            conn.execute(ddl)
