"""The synced store: the system of record and the search index, opened together, used together."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from ..catalog import Entry
from ..embedding import Embedder
from ..errors import ConfigurationError, one_line
from .services import reconcile, review, search
from .stores.database import make_engine, redact_url
from .stores.qdrant_index import QdrantIndex, open_qdrant
from .stores.schema import REJECTED, catalogs, create_schema, entries, journal, standby
from .stores.vector_index import VectorIndex
from .write import journal as journal_rows
from .write import model_roles, protocol
from .write.guard import finish_collection_drops
from .write.hooks import Hooks
from .write.locks import catalog_lock
from .write.model_roles import LIVE, PREVIOUS, STANDBY, ModelRole, Unloadable
from .write.point_ids import collection_name

log = logging.getLogger(__name__)


def redact_qdrant_url(url: str) -> str:
    parsed = make_url(url) if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0] else None
    if parsed is not None:
        return parsed.render_as_string(hide_password=True)
    return url.split("?", 1)[0]


def recorded_catalog_ids(engine: Engine) -> set[str]:
    """Every catalog the record knows of: with rows (live or a standby model's), with journal rows
    (a removal that committed but died before retiring its points has only that left, and must be
    synced to finish it), or recorded with no entries (an empty file: its removal must reach the
    record too)."""
    with engine.connect() as conn:
        ids = set(conn.scalars(select(entries.c.catalog_id).distinct()))
        ids |= set(conn.scalars(select(standby.c.catalog_id).distinct()))
        ids |= set(conn.scalars(select(journal.c.catalog_id).distinct()))
        ids |= set(conn.scalars(select(catalogs.c.catalog_id)))
    return ids


def open_record(database_url: str) -> Engine:
    """Only the system of record (schema ensured): for steps that must not open embedded Qdrant."""
    engine = make_engine(database_url)
    try:
        create_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


@dataclass
class SyncedStore:
    engine: Engine
    index: VectorIndex  # QdrantIndex (a server, local mode, Edge) or InMemoryIndex
    database_label: str
    qdrant_label: str
    lock_timeout_s: float = 600.0
    # How to load a model the record names (the live or the standby one) that is not the one a
    # call was given: by the source recorded with it (embedding.recorded_model_loader). None: such
    # a model can name itself but not embed (model_roles.Unloadable).
    load_model: Callable[[ModelRole], Embedder] | None = None

    @classmethod
    def open(
        cls,
        database_url: str,
        *,
        qdrant_url: str | None = None,
        qdrant_api_key: str | None = None,
        qdrant_path: str | None = None,
        collection_prefix: str = "dq",
        upsert_batch_size: int = 256,
        lock_timeout_s: float = 600.0,
        embedded_engine: str = "local",
    ) -> SyncedStore:
        engine = open_record(database_url)
        try:
            client = open_qdrant(qdrant_url, qdrant_api_key, qdrant_path, embedded_engine=embedded_engine)
        except BaseException:
            engine.dispose()
            raise
        qdrant_label = redact_qdrant_url(qdrant_url) if qdrant_url else f"embedded:{qdrant_path}"
        index = QdrantIndex(client, prefix=collection_prefix, batch_size=upsert_batch_size)
        return cls(engine, index, redact_url(database_url), qdrant_label, lock_timeout_s)

    @classmethod
    def with_index(cls, database_url: str, index: VectorIndex, *, lock_timeout_s: float = 600.0, label: str = "in-memory") -> SyncedStore:
        """The record at `database_url` with a given index (an `InMemoryIndex` for fast tests)."""
        return cls(open_record(database_url), index, redact_url(database_url), label, lock_timeout_s)

    def close(self) -> None:
        try:
            self.index.close()
        finally:
            self.engine.dispose()

    def __enter__(self) -> SyncedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def collection_for(self, embedder: Embedder) -> str:
        return collection_name(self.index.prefix, embedder.model_id, embedder.dimension)

    # --- the write protocol ---------------------------------------------------------------------

    def sync(
        self,
        catalog_id: str,
        wanted: Sequence[Entry],
        embedder: Embedder,
        *,
        force: bool = False,
        source: protocol.Source | None = None,
        vectors: Mapping[str, np.ndarray] | None = None,
        use_vector_cache: bool = False,
        hooks: Hooks | None = None,
    ) -> protocol.SyncResult:
        """See protocol.sync_catalog (what it guarantees and raises). `embedder` is the configured
        model: if it is not the live one, it becomes the standby (a build starts, model_roles.py)
        and the live model is loaded through `load_model`; `vectors` are the configured model's."""
        live, standby = self._models_for(embedder)
        result = protocol.sync_catalog(
            self, catalog_id, wanted, live, force=force, source=source, vectors=vectors if live is embedder else None,
            use_vector_cache=use_vector_cache, hooks=hooks, standby=standby,
        )
        self.finish_drops()  # a drop-old that waited for this run, or was interrupted
        return result

    def remove_catalog(self, catalog_id: str, embedder: Embedder, source: protocol.Source | None = None) -> protocol.SyncResult:
        """Delete the catalog's rows and points; with `source`, refused if its file has come back."""
        return self.sync(catalog_id, [], embedder, source=source)

    # --- the live and the standby model (model_roles.py) ----------------------------------------

    def models(self) -> dict[str, ModelRole]:
        return model_roles.roles(self.engine)

    def _models_for(self, configured: Embedder) -> tuple[Embedder, Embedder | None]:
        """The live model's embedder and the standby's (None: no standby) for a call configured with
        `configured`; a configured model that is neither starts a build of it."""
        source = getattr(configured, "source", None)
        live = model_roles.record_live(self.engine, configured.model_id, configured.dimension, self.collection_for(configured), source)
        if configured.model_id != live.model_id:
            model_roles.record_standby(self.engine, configured.model_id, configured.dimension, self.collection_for(configured), source)
        roles = self.models()
        standby = roles.get(STANDBY)
        return self._embedder_for(roles[LIVE], configured), (self._embedder_for(standby, configured) if standby else None)

    def _embedder_for(self, role: ModelRole, configured: Embedder | None) -> Embedder:
        if configured is not None and role.model_id == configured.model_id:
            return configured
        if self.load_model is None:
            return Unloadable(role, "this process was given no way to load recorded models")  # type: ignore[return-value]
        try:
            return self.load_model(role)
        except Exception as exc:
            return Unloadable(role, one_line(exc))  # type: ignore[return-value]

    def build_standby(
        self, configured: Embedder | None = None, catalog_ids: Sequence[str] | None = None, on_catalog: Callable[[protocol.SyncResult], None] | None = None
    ) -> list[protocol.SyncResult]:
        """Bring the standby model's rows level with the live rows, catalog by catalog (each under
        its lock, through the protocol), without waiting for the catalogs' next syncs. With
        `configured` not the live model, it becomes the standby first. Returns each catalog's result."""
        if configured is not None:
            self._models_for(configured)
        role = self.models().get(STANDBY)
        if role is None:
            raise ConfigurationError("no standby model is recorded: configure the new model (DQ_EMBEDDING_MODEL) and build again")
        embedder = self._embedder_for(role, configured)
        results = []
        for catalog_id in catalog_ids if catalog_ids is not None else self.mirrored_catalogs():
            with catalog_lock(self.engine, catalog_id, self.lock_timeout_s) as lock:
                journal_rows.recover(self.engine, self.index, lock, catalog_id)
                result = protocol.mirror_standby(self, lock, catalog_id, embedder)
            results.append(result)
            if on_catalog is not None:
                on_catalog(result)
        return results

    def mirrored_catalogs(self) -> list[str]:
        with self.engine.connect() as conn:
            return sorted(set(conn.scalars(select(entries.c.catalog_id).distinct())) | set(conn.scalars(select(standby.c.catalog_id).distinct())))

    def model_status(self) -> dict[str, Any]:
        """The live and standby models, how far the standby is built, and where the alias points."""
        roles = self.models()
        report: dict[str, Any] = {"live": None, "standby": None, "alias": self.alias_name(), "alias_target": self.index.alias_target(self.alias_name())}
        for name, role in roles.items():
            report[name] = {"model": role.model_id, "dimension": role.dimension, "collection": role.collection, "state": role.state,
                            "since": role.since.isoformat()}
        if STANDBY in roles:
            done = model_roles.progress(self.engine, roles[STANDBY].model_id)
            report["standby"].update({"catalogs_done": done.done, "catalogs_total": done.total, "behind": done.behind[:20], "complete": done.complete})
        return report

    def alias_name(self) -> str:
        return f"{self.index.prefix}_live"

    def switch_model(self, *, rollback: bool = False) -> tuple[ModelRole, ModelRole]:
        """Make the standby model live in one atomic step (model_roles.swap), once it is built for
        every catalog and every catalog verifies (both models' rows against both collections); then
        point the alias at it. `rollback`: only if the standby is the model a switch replaced.
        Returns (new live, new standby). Raises ConfigurationError (nothing switched) otherwise."""
        role = self.models().get(STANDBY)
        if role is None:
            raise ConfigurationError("no standby model is recorded: nothing to switch to")
        if rollback and role.state != PREVIOUS:
            raise ConfigurationError(f"the standby model {role.model_id} is a build, not the previous live model: use switch")
        done = model_roles.progress(self.engine, role.model_id)
        if not done.complete:
            raise ConfigurationError(
                f"the standby model {role.model_id} is built for {done.done} of {done.total} catalogs "
                f"(behind: {', '.join(done.behind[:5])}); run `dq-pipeline model build` first; nothing was switched"
            )
        unsound = [v.catalog_id for v in (self.verify(cid) for cid in self.mirrored_catalogs()) if not v.in_sync]
        if unsound:
            raise ConfigurationError(f"catalog(s) {', '.join(unsound[:5])} do not verify; run `dq-pipeline repair` first; nothing was switched")
        live, previous = model_roles.swap(self.engine, role.model_id)
        self.point_alias()
        return live, previous

    def point_alias(self) -> bool:
        """Point the alias at the live collection (for readers outside this project); False where
        this Qdrant engine has no aliases or did not answer (the record already decided)."""
        live = self.models().get(LIVE)
        if live is None:
            return False
        try:
            return self.index.point_alias(self.alias_name(), live.collection)
        except Exception as exc:
            log.warning("alias %s could not be pointed at %s: %s", self.alias_name(), live.collection, one_line(exc))
            return False

    def drop_standby(self) -> str | None:
        """Delete the standby model's rows and its collections (a replaced standby's too);
        switching back is no longer possible. A drop interrupted before Qdrant answered is
        recorded and finished by the next drop-old, sync or repair. Returns the standby's own
        collection if it was deleted now (None: none, or it waits for a run in flight)."""
        role = self.models().get(STANDBY)
        if role is None:
            if model_roles.pending_drops(self.engine):
                self.finish_drops(quiet=False)
                return None
            raise ConfigurationError("no standby model is recorded: nothing to drop")
        model_roles.forget_standby(self.engine, role.model_id)
        return role.collection if role.collection in self.finish_drops(quiet=False) else None

    def finish_drops(self, quiet: bool = True) -> list[str]:
        """Delete the collections dropped standby models left; cheap when there are none. `quiet`:
        a Qdrant that does not answer is one warning (the drop stays recorded), else it raises."""
        if not model_roles.pending_drops(self.engine):
            return []
        try:
            return finish_collection_drops(self.engine, self.index)
        except Exception as exc:
            if not quiet:
                raise
            log.warning("a dropped model's collection could not be deleted yet (%s); the next sync or repair tries again", one_line(exc))
            return []

    # --- review and search ----------------------------------------------------------------------

    def reject(self, catalog_id: str, keys: Sequence[str], *, by: str | None = None, reason: str | None = None) -> int:
        """Record a rejection of these entries' current contents (I7); returns how many were new.

        Raises:
            UnknownEntries: a key the catalog does not hold (nothing recorded).
            LockTimeout: another run held the catalog's lock past `lock_timeout_s`.
            StoreUnavailable: the record is unreachable (transient).
        """
        return review.reject(self.engine, catalog_id, keys, by=by, reason=reason, lock_timeout_s=self.lock_timeout_s)

    def cleanup_rejected(self, catalog_id: str, hooks: Hooks | None = None) -> protocol.SyncResult:
        """Delete the catalog's rejected rows and their points through the protocol (and the
        standby model's, during a build). Raises what `protocol.sync_catalog` raises."""
        role = self.models().get(STANDBY)
        standby_embedder = self._embedder_for(role, None) if role is not None else None
        return protocol.remove_rejected(self, catalog_id, hooks, standby=standby_embedder)

    def catalogs_with_rejections(self) -> list[str]:
        """Catalogs holding rejected rows, and those with journal rows: a cleanup killed after its
        commit has no rejected rows left, only its journal row, and the next cleanup must finish it."""
        with self.engine.connect() as conn:
            rejected = set(conn.scalars(select(entries.c.catalog_id).where(entries.c.status == REJECTED).distinct()))
            unfinished = set(conn.scalars(select(journal.c.catalog_id).distinct()))
            return sorted(rejected | unfinished)

    def search(self, embedder: Embedder, query: str, *, catalog_id: str | None = None, limit: int = 10) -> list[search.Hit]:
        """Search serves the live model, whatever `embedder` is (a build's model is not served);
        every hit is re-checked in the record (active rows only).

        Raises:
            StoreUnavailable: Qdrant or the record is unreachable (transient).
            ModelUnavailable: the live model's recorded source cannot be loaded here.
        """
        live = self.models().get(LIVE)
        if live is not None:
            embedder = self._embedder_for(live, embedder)
        return search.search(self, embedder, query, catalog_id=catalog_id, limit=limit)

    # --- proof and repair -----------------------------------------------------------------------

    def known_catalogs(self, include_index: bool = True) -> list[str]:
        """Every catalog either store knows of (the index is scanned so orphans of forgotten catalogs count)."""
        ids = recorded_catalog_ids(self.engine)
        if include_index:
            for collection in self.index.collections():
                ids |= self.index.catalog_ids_in(collection)
        return sorted(ids)

    def verify(self, catalog_id: str, deep: bool = False) -> reconcile.CatalogVerification:
        """Compare the catalog's id sets, payloads and vector digests; raises what
        `reconcile.verify_catalog` raises."""
        return reconcile.verify_catalog(self, catalog_id, deep)

    def repair(self, catalog_id: str, deep: bool = False) -> reconcile.RepairResult:
        """Re-upsert missing or drifted points from the record, delete orphans through the guard;
        raises what `reconcile.repair_catalog` raises."""
        return reconcile.repair_catalog(self, catalog_id, deep)

    def verify_unattributed(self) -> tuple[int, list[str]]:
        """Points of this namespace that name no catalog (they belong to no one)."""
        return reconcile.verify_unattributed(self)

    def repair_unattributed(self) -> int:
        self.finish_drops()
        return reconcile.repair_unattributed(self)

    def status(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            counts = conn.execute(
                select(entries.c.catalog_id, entries.c.status, func.count(), func.min(entries.c.model), func.max(entries.c.model))
                .group_by(entries.c.catalog_id, entries.c.status)
            ).all()
            synced = {r.catalog_id: r for r in conn.execute(select(catalogs))}
            pending = dict(conn.execute(select(journal.c.catalog_id, func.count()).group_by(journal.c.catalog_id)).all())
        report: dict[str, dict[str, Any]] = {}
        for catalog_id, status, count, model_lo, model_hi in counts:
            item = report.setdefault(catalog_id, {"entries": 0, "rejected": 0, "models": set()})
            item["entries"] += count
            if status == REJECTED:
                item["rejected"] += count
            item["models"] |= {model_lo, model_hi}
        for catalog_id in set(pending) | set(synced):
            report.setdefault(catalog_id, {"entries": 0, "rejected": 0, "models": set()})
        return {
            "database": self.database_label,
            "qdrant": self.qdrant_label,
            "namespace": self.index.prefix,
            "collections": self.index.collections(),
            "models": self.model_status(),
            "catalogs": {
                cid: {
                    "entries": item["entries"],
                    "rejected": item["rejected"],
                    "models": sorted(item["models"]),
                    "last_change": synced[cid].last_synced_at.isoformat() if cid in synced else None,
                    "pending_journal": int(pending.get(cid, 0)),
                }
                for cid, item in sorted(report.items())
            },
        }
