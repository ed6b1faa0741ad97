"""The review workflow: reviewers reject entries; rejected entries leave search at once and leave
both stores when cleaned up (through the write protocol, see protocol.remove_rejected)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, insert, select, update

from ...errors import UnknownEntries
from ..stores.schema import ACTIVE, REJECTED, entries, rejections
from ..write.locks import catalog_lock

__all__ = ["UnknownEntries", "reject"]


def reject(
    engine: Engine, catalog_id: str, keys: Sequence[str], *, by: str | None, reason: str | None, lock_timeout_s: float
) -> int:
    """Mark entries rejected (all or none); returns how many were newly rejected.

    The row stays (with its point, so I1 holds) until cleanup; search drops it immediately
    because every hit is checked against the row's status.
    """
    keys = list(dict.fromkeys(keys))
    now = datetime.now(UTC)
    with catalog_lock(engine, catalog_id, lock_timeout_s) as lock, lock.fenced(engine) as conn:
        rows = conn.execute(
            select(entries.c.entry_key, entries.c.content_hash, entries.c.status).where(
                entries.c.catalog_id == catalog_id, entries.c.entry_key.in_(keys)
            )
        ).all()
        unknown = sorted(set(keys) - {r.entry_key for r in rows})
        if unknown:
            raise UnknownEntries(f"catalog {catalog_id} has no entry {', '.join(repr(k) for k in unknown)}; nothing rejected")
        fresh = [r for r in rows if r.status == ACTIVE]
        if fresh:
            conn.execute(
                update(entries)
                .where(entries.c.catalog_id == catalog_id, entries.c.entry_key.in_([r.entry_key for r in fresh]))
                .values(status=REJECTED, reviewed_by=by, review_reason=reason, reviewed_at=now)
            )
            for r in fresh:  # the same version may have been rejected before, restored, and changed back
                conn.execute(
                    delete(rejections).where(
                        rejections.c.catalog_id == catalog_id,
                        rejections.c.entry_key == r.entry_key,
                        rejections.c.content_hash == r.content_hash,
                    )
                )
            conn.execute(
                insert(rejections),
                [
                    {"catalog_id": catalog_id, "entry_key": r.entry_key, "content_hash": r.content_hash, "rejected_by": by, "reason": reason, "rejected_at": now}
                    for r in fresh
                ],
            )
        return len(fresh)
