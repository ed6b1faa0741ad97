"""Which embedding model is live, which stands by, and the one atomic switch between them.

The live model is a fact of the record (`dq_models`), not of the environment: search and the
asset checks serve it. Configuring another model does not move anything at once; it records that
model as the *standby* and starts a build: every sync then also keeps the standby current (its
rows in `dq_standby` mirror the live rows' contents, embedded with the standby model, in the
standby's own collection, through the same journaled protocol), and `build` mirrors every catalog
without waiting for its next sync.

`switch` makes the standby live in one transaction, once every live row has its standby row (same
content) and both stores verify: the vector columns of the two tables change places and the roles
with them, so the model that was live becomes the standby (state `previous`) and switching back is
the same instant swap, embedding nothing, until `drop_standby` removes it. A run that planned with
the roles as they were before a switch cannot commit (`assert_role`, inside its commit
transaction), so no commit ever mixes the two models in one table.

The Qdrant alias `<namespace>_live` follows the live collection, for readers outside this project;
the record decides, the alias is pointed after it (a failed alias update is reported by `status`
and repaired by the next switch).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, and_, delete, func, insert, select, text, update

from ...errors import ConfigurationError, ModelSwitched, ModelUnavailable
from ..stores.database import WRITE
from ..stores.schema import collection_drops, entries, model_swap, models, standby

log = logging.getLogger(__name__)

LIVE, STANDBY = "live", "standby"
BUILDING, PREVIOUS = "building", "previous"
_VECTOR_COLUMNS = ("model", "dimension", "vector", "collection", "point_id", "written_by")


@dataclass(frozen=True)
class ModelRole:
    role: str
    model_id: str
    dimension: int
    collection: str
    source: str | None
    state: str
    since: datetime


def table_of(role: str):  # type: ignore[no-untyped-def]
    return entries if role == LIVE else standby


def roles(engine: Engine) -> dict[str, ModelRole]:
    with engine.connect() as conn:
        return {r.role: _role(r) for r in conn.execute(select(models))}


def _role(r) -> ModelRole:  # type: ignore[no-untyped-def]
    return ModelRole(r.role, r.model, r.dimension, r.collection, r.source, r.state, r.since)


def assert_role(conn: Connection, planned: ModelRole, dimension: int | None = None, collection: str | None = None) -> None:
    """Inside a commit: the role still holds the model, and the same recording of it (`since`), that
    this run planned with: a switch, a drop or a re-recorded standby in between refuses the commit.
    The row is read with a share lock (PostgreSQL), so a switch, which updates it, is ordered
    before or after the commit. A role recorded before any vector of its model was written (a
    removal names the model without loading it) takes the dimension and collection of the first
    rows committed with it."""
    query = select(models.c.model, models.c.dimension, models.c.collection, models.c.since).where(models.c.role == planned.role)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    current = conn.execute(query).first()
    if current is None or current.model != planned.model_id or current.since != planned.since:
        found = current.model if current is not None else None
        raise ModelSwitched(
            f"the {planned.role} model changed to {found!r} during this run (it planned with {planned.model_id!r}); nothing was committed"
        )
    if dimension is not None and (current.dimension, current.collection) != (dimension, collection):
        conn.execute(update(models).where(models.c.role == planned.role).values(dimension=dimension, collection=collection))


def record_live(engine: Engine, model_id: str, dimension: int, collection: str, source: str | None) -> ModelRole:
    """The first sync's model becomes live, unless the record already holds rows: then their most
    used model does (a record written before the live model was recorded keeps serving as it did)."""
    with engine.execution_options(**WRITE).begin() as conn:
        lock_roles(conn)
        existing = conn.execute(select(models).where(models.c.role == LIVE)).first()
        if existing is not None:
            return _role(existing)
        held = conn.execute(
            select(entries.c.model, entries.c.dimension, entries.c.collection, func.count().label("n"))
            .group_by(entries.c.model, entries.c.dimension, entries.c.collection)
            .order_by(func.count().desc())
            .limit(1)
        ).first()
        if held is not None and held.model != model_id:
            model_id, dimension, collection, source = held.model, held.dimension, held.collection, None
        conn.execute(
            insert(models).values(
                role=LIVE, model=model_id, dimension=dimension, collection=collection, source=source, state=LIVE, since=datetime.now(UTC)
            )
        )
        return _role(conn.execute(select(models).where(models.c.role == LIVE)).one())


def record_standby(engine: Engine, model_id: str, dimension: int, collection: str, source: str | None) -> ModelRole:
    """Start a build of this model (or keep the one running). A standby of another model is
    replaced: its rows are then re-embedded with this one, row by row, through the protocol."""
    with engine.execution_options(**WRITE).begin() as conn:
        lock_roles(conn)
        live = conn.execute(select(models).where(models.c.role == LIVE)).first()
        if live is not None and live.model == model_id:
            raise ConfigurationError(f"{model_id} is already the live model")
        if live is not None and live.collection == collection:
            raise ConfigurationError(
                f"model {model_id} would share the live model {live.model} 's Qdrant collection {collection} "
                "(their ids agree in the first 80 characters and in a 24-bit digest); give it another name"
            )
        current = conn.execute(select(models).where(models.c.role == STANDBY)).first()
        if current is not None and current.model == model_id:
            if source is not None and current.source != source:
                conn.execute(update(models).where(models.c.role == STANDBY).values(source=source))
            return _role(conn.execute(select(models).where(models.c.role == STANDBY)).one())
        if current is not None:
            log.warning("standby model %s is replaced by %s: its rows are re-embedded as catalogs are synced", current.model, model_id)
            conn.execute(delete(models).where(models.c.role == STANDBY))
        conn.execute(
            insert(models).values(
                role=STANDBY, model=model_id, dimension=dimension, collection=collection, source=source, state=BUILDING,
                since=datetime.now(UTC),
            )
        )
        return _role(conn.execute(select(models).where(models.c.role == STANDBY)).one())


@dataclass(frozen=True)
class Progress:
    """How far the standby is: catalogs whose every live row has its standby row, of all catalogs."""

    done: int
    total: int
    behind: list[str]

    @property
    def complete(self) -> bool:
        return self.done == self.total


def progress(engine: Engine, standby_model: str) -> Progress:
    with engine.connect() as conn:
        return _progress(conn, standby_model)


def _progress(conn: Connection, standby_model: str) -> Progress:
    matched = and_(
        standby.c.catalog_id == entries.c.catalog_id,
        standby.c.entry_key == entries.c.entry_key,
        standby.c.content_hash == entries.c.content_hash,
        standby.c.model == standby_model,
    )
    live = dict(conn.execute(select(entries.c.catalog_id, func.count()).group_by(entries.c.catalog_id)).all())
    mirrored = dict(conn.execute(select(entries.c.catalog_id, func.count()).select_from(entries.join(standby, matched)).group_by(entries.c.catalog_id)).all())
    held = dict(conn.execute(select(standby.c.catalog_id, func.count()).group_by(standby.c.catalog_id)).all())
    catalogs = sorted(set(live) | set(held))
    behind = [c for c in catalogs if not (live.get(c, 0) == mirrored.get(c, 0) == held.get(c, 0))]
    return Progress(len(catalogs) - len(behind), len(catalogs), behind)


def swap(engine: Engine, expected_standby: str) -> tuple[ModelRole, ModelRole]:
    """The switch itself, one transaction: refuse unless the standby is still `expected_standby` and
    complete (checked again here, under the roles' row locks, so no commit slips in between), then
    exchange the two tables' vector columns and the two roles. Returns (new live, new standby)."""
    with engine.execution_options(**WRITE).begin() as conn:
        query = select(models).order_by(models.c.role)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        held = {r.role: r for r in conn.execute(query)}
        if STANDBY not in held or held[STANDBY].model != expected_standby:
            raise ModelSwitched(f"the standby model is no longer {expected_standby}; nothing was switched")
        done = _progress(conn, expected_standby)
        if not done.complete:
            raise ConfigurationError(
                f"the standby model {expected_standby} is not built for {len(done.behind)} catalog(s) "
                f"({', '.join(done.behind[:5])}); run the build first, nothing was switched"
            )
        _swap_vectors(conn)
        now = datetime.now(UTC)
        old_live, new_live = held[LIVE], held[STANDBY]
        conn.execute(delete(models))
        conn.execute(
            insert(models),
            [
                {"role": LIVE, "model": new_live.model, "dimension": new_live.dimension, "collection": new_live.collection,
                 "source": new_live.source, "state": LIVE, "since": now},
                {"role": STANDBY, "model": old_live.model, "dimension": old_live.dimension, "collection": old_live.collection,
                 "source": old_live.source, "state": PREVIOUS, "since": now},
            ],
        )
        after = {r.role: _role(r) for r in conn.execute(select(models))}
    return after[LIVE], after[STANDBY]


def _swap_vectors(conn: Connection) -> None:
    """Live rows take the standby rows' vector columns and the standby rows the live ones' (the
    rows are matched by key; contents are equal, checked by the caller)."""
    keys = (entries.c.catalog_id, entries.c.entry_key)
    conn.execute(delete(model_swap))
    conn.execute(
        insert(model_swap).from_select(
            ["catalog_id", "entry_key", *_VECTOR_COLUMNS], select(*keys, *(entries.c[name] for name in _VECTOR_COLUMNS))
        )
    )
    conn.execute(
        update(entries)
        .where(entries.c.catalog_id == standby.c.catalog_id, entries.c.entry_key == standby.c.entry_key)
        .values({name: standby.c[name] for name in _VECTOR_COLUMNS})
    )
    conn.execute(
        update(standby)
        .where(standby.c.catalog_id == model_swap.c.catalog_id, standby.c.entry_key == model_swap.c.entry_key)
        .values({name: model_swap.c[name] for name in _VECTOR_COLUMNS})
    )
    conn.execute(delete(model_swap))


class Unloadable:
    """Stands in for a recorded model this process cannot load: it names the model (a plan that
    embeds nothing needs no more), and refuses to embed with one clear error."""

    def __init__(self, role: ModelRole, why: str):
        self.model_id, self.dimension, self.source = role.model_id, role.dimension, role.source
        self._role, self._why = role.role, why

    def embed(self, texts):  # type: ignore[no-untyped-def]
        raise ModelUnavailable(
            f"the {self._role} model {self.model_id} is needed to embed {len(texts)} text(s) but cannot be loaded here ({self._why})"
        )


MODELS_LOCK_KEY = 0x64715F6D6F64656C  # "dq_model": orders recording a role against finishing a drop (PostgreSQL)


def lock_roles(conn: Connection) -> None:
    """Inside a write transaction: no role is recorded until it ends (SQLite's write transaction
    already excludes every other writer)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MODELS_LOCK_KEY})


def forget_standby(engine: Engine, expected: str) -> list[str]:
    """Delete the standby's rows and role in one transaction, recording every collection those
    rows used (a replaced standby's too) and the role's own as drops to finish (`guard.
    finish_collection_drops`); returns them. A run still writing into one cannot commit (its role
    is gone); the live model's collection is never among them."""
    with engine.execution_options(**WRITE).begin() as conn:
        lock_roles(conn)
        query = select(models).where(models.c.role == STANDBY)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None or row.model != expected:
            raise ModelSwitched(f"the standby model is no longer {expected}; nothing was dropped")
        live = conn.scalar(select(models.c.collection).where(models.c.role == LIVE))
        used = set(conn.scalars(select(standby.c.collection).distinct())) | {row.collection}
        doomed = sorted(used - {live})
        conn.execute(delete(standby))
        conn.execute(delete(models).where(models.c.role == STANDBY))
        pending = set(conn.scalars(select(collection_drops.c.collection)))
        now = datetime.now(UTC)
        if fresh := [c for c in doomed if c not in pending]:
            conn.execute(insert(collection_drops), [{"collection": c, "requested_at": now} for c in fresh])
        return doomed


def pending_drops(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(select(collection_drops.c.collection)))
