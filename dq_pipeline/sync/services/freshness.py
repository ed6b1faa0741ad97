"""When each catalog last synced successfully, read from the system of record (no Dagster here).

`dq_catalogs.last_synced_at` moves only when a sync commits a change: a sync of an unchanged file
writes nothing (I4), so on its own it would call a stable catalog stale however often it synced.
`dq_catalog_reads.synced_at` is written by every successful sync, changed or not. A catalog's last
sync is the later of the two; one whose file was removed has neither and is not listed.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, select

from ..stores.schema import catalogs
from .refusals import reads


def last_synced(engine: Engine) -> dict[str, dt.datetime]:
    """{catalog id: when it last synced successfully (UTC)} for every catalog the record holds."""
    with engine.connect() as conn:
        changed = conn.execute(select(catalogs.c.catalog_id, catalogs.c.last_synced_at)).all()
        read = conn.execute(select(reads.c.catalog_id, reads.c.synced_at)).all()
    latest: dict[str, dt.datetime] = {}
    for catalog_id, when in [*changed, *read]:
        when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)  # SQLite returns naive datetimes
        if catalog_id not in latest or when > latest[catalog_id]:
            latest[catalog_id] = when
    return latest


def stale(last: dict[str, dt.datetime], window: dt.timedelta, now: dt.datetime | None = None) -> dict[str, dt.timedelta]:
    """{catalog id: age} of the catalogs whose last sync is older than `window`, oldest first."""
    now = now or dt.datetime.now(dt.UTC)
    ages = {catalog_id: now - when for catalog_id, when in last.items() if now - when > window}
    return dict(sorted(ages.items(), key=lambda item: item[1], reverse=True))
