"""The system of record's tables (PostgreSQL or SQLite through SQLAlchemy).

`dq_entries` holds one row per catalog entry with its vector, so Qdrant can always be rebuilt from
it without re-embedding. `dq_journal` is the outbox of the write protocol: which points a run is
about to write and which it will retire. `dq_catalogs` records each catalog's last change, `dq_rejections` the versions a reviewer rejected.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
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
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()
_json = JSON().with_variant(JSONB(), "postgresql")

ACTIVE, REJECTED = "active", "rejected"
PENDING, COMMITTED = "pending", "committed"

entries = Table(
    "dq_entries",
    metadata,
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
    Column("status", String(16), nullable=False, server_default=ACTIVE),
    Column("reviewed_by", String(255)),
    Column("review_reason", Text),
    Column("reviewed_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_dq_entries_point_id", "point_id"),
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
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK_KEY})
        metadata.create_all(conn, checkfirst=True)
