"""What a sync must change: the catalog's entries compared with its committed rows."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from ..catalog import Entry
from ..errors import ConfigurationError
from .schema import entries


@dataclass(frozen=True, slots=True)  # slots: a million-row catalog's plan holds a million of these
class StoredRow:
    entry_key: str
    content_hash: str
    model: str
    collection: str
    point_id: str
    status: str
    written_by: str | None


@dataclass
class Plan:
    inserts: list[Entry] = field(default_factory=list)
    updates: list[tuple[Entry, StoredRow]] = field(default_factory=list)
    deletes: list[StoredRow] = field(default_factory=list)
    unchanged: int = 0
    skipped_rejected: int = 0

    @property
    def to_embed(self) -> list[Entry]:
        return self.inserts + [entry for entry, _ in self.updates]

    @property
    def is_empty(self) -> bool:
        return not (self.inserts or self.updates or self.deletes)


def stored_rows(engine: Engine, catalog_id: str) -> dict[str, StoredRow]:
    columns = [entries.c[name] for name in StoredRow.__dataclass_fields__]
    with engine.connect() as conn:
        rows = conn.execute(select(*columns).where(entries.c.catalog_id == catalog_id))
        # model, collection and status repeat on every row: one shared string each, not one per row
        return {
            r.entry_key: StoredRow(
                r.entry_key, r.content_hash, sys.intern(r.model), sys.intern(r.collection), r.point_id, sys.intern(r.status),
                None if r.written_by is None else sys.intern(r.written_by),  # one run wrote many rows
            )
            for r in rows
        }


def plan_changes(
    stored: dict[str, StoredRow],
    wanted: Sequence[Entry],
    model_id: str,
    force: bool = False,
    rejected: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
) -> Plan:
    """Unchanged = same content hash and same model; `force` re-embeds and rewrites everything.

    A version a reviewer rejected (`rejected`: (entry key, content hash)) is never brought back:
    not inserted again after its row was cleaned up, and an entry whose content changes back to a
    rejected version leaves the stores as if cleaned up. It returns only with new content (I7).
    """
    plan = Plan()
    deleted: list[StoredRow] = []
    for entry in wanted:
        row = stored.get(entry.key)
        if (entry.key, entry.content_hash) in rejected and (row is None or row.content_hash != entry.content_hash):
            plan.skipped_rejected += 1
            if row is not None:
                deleted.append(row)
        elif row is None:
            plan.inserts.append(entry)
        elif force or row.content_hash != entry.content_hash or row.model != model_id:
            plan.updates.append((entry, row))
        else:
            plan.unchanged += 1
    keys = {entry.key for entry in wanted}
    plan.deletes = deleted + [row for key, row in stored.items() if key not in keys]
    return plan


def stored_hashes(engine: Engine, catalog_id: str, model_id: str) -> set[str]:
    """Content hashes this catalog already holds embedded with this model: what needs no embedding."""
    with engine.connect() as conn:
        query = select(entries.c.content_hash).where(entries.c.catalog_id == catalog_id, entries.c.model == model_id)
        return set(conn.scalars(query))


def stored_dimension(engine: Engine, model_id: str) -> int | None:
    """The vector size recorded for a model, so an unchanged catalog never loads the model to learn it."""
    with engine.connect() as conn:
        return conn.scalar(select(entries.c.dimension).where(entries.c.model == model_id).limit(1))


def committed_source_digests(engine: Engine) -> dict[str, str | None]:
    """Each recorded catalog's committed source digest (None where it predates recording): a catalog
    whose file digest differs from this is behind its source and must be synced again."""
    from .schema import catalogs

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
