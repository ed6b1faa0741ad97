"""What the last read of each catalog said: refusals and warnings, kept in the system of record.

A refused catalog (I6) writes nothing to the entries, so without a record of its own it is
invisible afterwards: `verify` finds both stores agreeing on the version still served and
`status` lists it like any other. Two tables on `schema.metadata` (created with the others by
`create_schema`; this module is imported by `dq_pipeline.sync`, so it registers before that runs):

* `dq_refusals`, one row per catalog whose latest read was refused: its file, the refusal (the
  `CatalogError` message, at most `REASON_MAX` characters), how many problems, when, the catalog
  folder, and the version still served (the committed source digest and entry count from
  `dq_catalogs`, or none). Written by the parse step when it refuses a catalog; deleted when that
  catalog next syncs successfully, or by `dq-pipeline sync` once its file is gone from the folder.
* `dq_catalog_reads`, one row per catalog that last synced successfully: the warnings of that read
  (what the reader tolerated, as the format's own tool does; the first `WARNINGS_KEPT` and their
  true count), when, and the catalog folder it was read from. Written by the write step after a
  successful sync; deleted when the catalog's file is removed (the empty sync that deletes its rows).

The catalog folder of the last sync is the folder of the newest row of either table: `status`
shows it beside the configured one (a sync with `--catalog-dir` reads another folder than the
environment names).

Recording is best effort: the refusal is still the step's error, and a committed sync stays
committed, if the record cannot be written (logged, not raised).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Engine, Integer, String, Table, Text, delete, insert, select
from sqlalchemy.dialects.postgresql import JSONB

from ...catalog import ABSENT
from ...errors import RefusedInput, redact
from ..stores.schema import catalogs, metadata

log = logging.getLogger(__name__)

_json = JSON().with_variant(JSONB(), "postgresql")

REASON_MAX = 4000  # characters of a refusal's message kept (CatalogError already bounds its problems)
WARNINGS_KEPT = 50  # warnings kept per catalog read (their true count is kept beside them)
_PATH_MAX = 1024

refusals = Table(
    "dq_refusals",
    metadata,
    Column("catalog_id", String(512), primary_key=True),
    Column("file", String(_PATH_MAX)),
    Column("reason", Text, nullable=False),
    Column("problems", Integer, nullable=False),
    Column("refused_at", DateTime(timezone=True), nullable=False),
    Column("catalog_dir", String(_PATH_MAX)),
    # The version still served: what dq_catalogs held when the refusal was recorded.
    Column("served_digest", String(80)),
    Column("served_entries", Integer),
)

reads = Table(
    "dq_catalog_reads",
    metadata,
    Column("catalog_id", String(512), primary_key=True),
    Column("warnings", _json, nullable=False),  # the first WARNINGS_KEPT, as "file:line: reason"
    Column("warning_count", Integer, nullable=False),
    Column("synced_at", DateTime(timezone=True), nullable=False),
    Column("catalog_dir", String(_PATH_MAX)),
)

_MORE = re.compile(r"^\.\.\. and (\d+) more warning\(s\)$")


def warning_lines(warnings: Iterable[Any]) -> tuple[list[str], int]:
    """The warnings as text lines (the first `WARNINGS_KEPT`) and their true count: the reader keeps
    the first 100 and then one line "... and N more warning(s)", which counts N, not 1."""
    lines: list[str] = []
    count = 0
    for warning in warnings:
        reason = getattr(warning, "reason", None)
        more = _MORE.match(reason if isinstance(reason, str) else str(warning).rsplit(": ", 1)[-1])
        if more:
            count += int(more.group(1))
            continue
        count += 1
        if len(lines) < WARNINGS_KEPT:
            lines.append(redact(str(warning)))
    return lines, count


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _folder(catalog_dir: Path | str | None) -> str | None:
    if catalog_dir is None:
        return None
    return str(Path(catalog_dir).expanduser().resolve())[:_PATH_MAX]


def record_refusal(
    open_record: Callable[[], AbstractContextManager[Engine]], catalog_id: str, catalog_dir: Path | str | None, exc: BaseException
) -> bool:
    """Record that the latest read of `catalog_id` was refused (only a `RefusedInput` is a refusal:
    a store that did not answer or a file that changed while it was read is not). Best effort:
    returns whether it was recorded."""
    if not isinstance(exc, RefusedInput):
        return False
    try:
        with open_record() as engine:
            with engine.execution_options(dq_write=True).begin() as conn:
                served = conn.execute(
                    select(catalogs.c.source_digest, catalogs.c.entry_count).where(catalogs.c.catalog_id == catalog_id)
                ).first()
                conn.execute(delete(refusals).where(refusals.c.catalog_id == catalog_id))
                conn.execute(
                    insert(refusals).values(
                        catalog_id=catalog_id,
                        file=(getattr(exc, "path", None) or None) and str(exc.path)[:_PATH_MAX],  # type: ignore[attr-defined]
                        reason=redact(str(exc))[:REASON_MAX],
                        problems=int(getattr(exc, "count", None) or len(getattr(exc, "problems", ())) or 1),
                        refused_at=_now(),
                        catalog_dir=_folder(catalog_dir),
                        served_digest=served.source_digest if served else None,
                        served_entries=served.entry_count if served else None,
                    )
                )
        return True
    except Exception as err:  # the refusal stays the step's error; never mask it
        log.warning("could not record the refusal of catalog %s: %s", catalog_id, redact(str(err)))
        return False


def record_sync(engine: Engine, catalog_id: str, catalog_dir: Path | str | None, parsed: Any) -> bool:
    """After a successful sync of `parsed` (a `ParsedCatalog`): clear the catalog's refusal and keep
    the warnings of this read; a removed file (no source) leaves no read behind. Best effort."""
    try:
        lines, count = warning_lines(parsed.warnings)
        with engine.execution_options(dq_write=True).begin() as conn:
            conn.execute(delete(refusals).where(refusals.c.catalog_id == catalog_id))
            conn.execute(delete(reads).where(reads.c.catalog_id == catalog_id))
            if parsed.source_digest != ABSENT:
                conn.execute(
                    insert(reads).values(
                        catalog_id=catalog_id, warnings=lines, warning_count=count, synced_at=_now(), catalog_dir=_folder(catalog_dir)
                    )
                )
        return True
    except Exception as err:  # the sync committed; its bookkeeping must not fail it
        log.warning("could not record the read of catalog %s: %s", catalog_id, redact(str(err)))
        return False


def forget_missing(engine: Engine, catalog_dir: Path | str, on_disk: Iterable[str]) -> list[str]:
    """Delete the refusals of catalogs read from `catalog_dir` whose file is no longer there (a
    refused file that never served anything is synced by nobody once removed). Returns their ids."""
    folder, present = _folder(catalog_dir), set(on_disk)
    with engine.execution_options(dq_write=True).begin() as conn:
        recorded = conn.scalars(select(refusals.c.catalog_id).where(refusals.c.catalog_dir == folder)).all()
        gone = sorted(cid for cid in recorded if cid not in present)
        for cid in gone:
            conn.execute(delete(refusals).where(refusals.c.catalog_id == cid))
    return gone


def refused(engine: Engine, catalog_ids: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """The recorded refusals (of `catalog_ids`, or all), as the CLI shows them."""
    query = select(refusals).order_by(refusals.c.catalog_id)
    if catalog_ids:
        query = query.where(refusals.c.catalog_id.in_(list(catalog_ids)))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return {
        r.catalog_id: {
            "file": r.file,
            "reason": r.reason,
            "problems": r.problems,
            "refused_at": _iso(r.refused_at),
            "catalog_dir": r.catalog_dir,
            "served": {"source_digest": r.served_digest, "entries": r.served_entries} if r.served_digest else None,
        }
        for r in rows
    }


def last_reads(engine: Engine) -> dict[str, dict[str, Any]]:
    """Per catalog, the warnings of its last successful sync."""
    with engine.connect() as conn:
        rows = conn.execute(select(reads).order_by(reads.c.catalog_id)).all()
    return {
        r.catalog_id: {"warnings": list(r.warnings or []), "warning_count": r.warning_count, "synced_at": _iso(r.synced_at), "catalog_dir": r.catalog_dir}
        for r in rows
    }


def warning_counts(engine: Engine, catalog_ids: Iterable[str]) -> dict[str, int]:
    ids = list(catalog_ids)
    if not ids:
        return {}
    with engine.connect() as conn:
        return dict(conn.execute(select(reads.c.catalog_id, reads.c.warning_count).where(reads.c.catalog_id.in_(ids))).all())


def last_catalog_dir(engine: Engine) -> tuple[str | None, str | None]:
    """The catalog folder of the newest recorded read (refused or synced) and when; (None, None) if none."""
    with engine.connect() as conn:
        newest = [
            conn.execute(select(refusals.c.catalog_dir, refusals.c.refused_at).where(refusals.c.catalog_dir.is_not(None))
                         .order_by(refusals.c.refused_at.desc()).limit(1)).first(),
            conn.execute(select(reads.c.catalog_dir, reads.c.synced_at).where(reads.c.catalog_dir.is_not(None))
                         .order_by(reads.c.synced_at.desc()).limit(1)).first(),
        ]
    found = [(row[1], row[0]) for row in newest if row is not None]
    if not found:
        return None, None
    when, folder = max(found, key=lambda item: _aware(item[0]))
    return folder, _iso(when)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)  # SQLite returns naive datetimes


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else _aware(value).isoformat()
