"""Catalog parsing: files in the catalog folder become validated entries (no Dagster here)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TransientError
from .builder import spooling
from .discovery import CatalogFile, discover, validate_catalog_id
from .entry import CatalogError, Entry, Problem
from .formats import choose
from .notices import collecting
from .spool import EntrySpool


def parse_catalog(file: CatalogFile) -> list[Entry]:
    """Parse and validate one catalog file; raises CatalogError naming file, record and reason."""
    return list(parse_with_warnings(file)[0])


def parse_with_warnings(file: CatalogFile, spool: EntrySpool | None = None) -> tuple[Sequence[Entry], list[Problem]]:
    """`parse_catalog`, and what the reader tolerated (as the format's own tool does): warnings with
    file and line (``schema.yml:12``), at most `notices.MAX_WARNINGS` of them plus their count.

    With `spool`, the entries are written into it as they are parsed and it is returned (sealed)."""
    if file.error is not None:
        raise file.error
    fmt = choose(file.root, file.path, file.display)
    with collecting(file.display) as warnings:
        if spool is None:
            return fmt.parse(file.path, file.display), warnings
        with spooling(spool):
            entries = fmt.parse(file.path, file.display)
    if entries is not spool:  # a format that built its list without a collector
        for entry in entries:
            spool.add(entry)
    return spool.seal(), warnings


def source_files(file: CatalogFile) -> list[Path]:
    """Every file the catalog's entries are built from: the file itself, then its companions."""
    if file.error is not None:
        return [file.path]
    fmt = choose(file.root, file.path, file.display)
    return [file.path, *(fmt.companions(file.path) if fmt.companions else [])]


ABSENT = "absent"  # the source digest of a catalog that has no file (its rows are to be deleted)


def source_digest(file: CatalogFile | None) -> str:
    """sha256 of what the catalog's entries are built from, or ABSENT.

    That is the bytes of its file, then of its companions, and where they apply the circumstances
    that change how those bytes parse: the file's `.dq-formats.yaml` setting (format, column mapping)
    and its format's context (a dbt catalog.json parses to nothing beside a manifest). Recorded with
    each commit, it is what "the index is level with its source" compares (I8): a parse made under
    other circumstances is another version. A plain file's digest is the sha256 of its bytes.

    Raises OSError when a file cannot be read now. A file discovery refused whose bytes cannot be
    read (a broken symlink) is fingerprinted by its refusal.
    """
    if file is None:
        return ABSENT
    try:
        paths = source_files(file)  # a dbt manifest changes when its catalog.json does
    except CatalogError:
        paths = [file.path]  # e.g. a bad format override: the run reports it
    try:
        digests = []
        for path in paths:
            with open(path, "rb") as handle:
                digests.append(hashlib.file_digest(handle, "sha256"))
    except OSError:
        if file.error is not None:
            return "refused-" + hashlib.sha256(str(file.error).encode()).hexdigest()
        raise
    circumstances = _parse_circumstances(file)
    if len(digests) == 1 and not circumstances:
        return digests[0].hexdigest()
    combined = hashlib.sha256(b"".join(d.digest() for d in digests))
    if circumstances:
        combined.update(b"\0" + circumstances.encode())
    return combined.hexdigest()


def _parse_circumstances(file: CatalogFile) -> str:
    """What besides the bytes decides the parse: the override that applies, the format's context."""
    if file.error is not None:
        return ""
    from .formats import override

    parts = []
    try:
        setting = override(file.root, file.path.relative_to(file.root).as_posix(), file.display)
    except CatalogError as exc:  # an unreadable override file: the run refuses it by name
        return "override refused: " + str(exc)
    if setting is not None:
        parts.append("override " + json.dumps(setting, sort_keys=True, default=str))
    try:
        fmt = choose(file.root, file.path, file.display)
    except CatalogError as exc:
        return "\n".join([*parts, "format refused: " + str(exc)])
    if fmt.context is not None:
        context = fmt.context(file.path, file.display)
        if context:
            parts.append(f"{fmt.name}: {context}")
    return "\n".join(parts)


def current_source_digest(catalog_dir: Path, catalog_id: str) -> str:
    """The digest of the catalog's source as it is on disk now (ABSENT when it has no file)."""
    return source_digest(discover(catalog_dir).get(catalog_id))


class SourceChanged(TransientError):
    """The file changed while it was being read; reading it again will see one version."""


@dataclass(frozen=True)
class ParsedCatalog:
    """One catalog read from disk: its entries (on disk, in an entry spool), the digest of exactly
    the bytes they came from (so a commit can refuse a parse older than the file, I8), and what the
    reader tolerated."""

    catalog_id: str
    entries: EntrySpool
    source_digest: str
    warnings: list[Problem] = field(default_factory=list)


class SourceUnreadable(TransientError):
    """A folder on the catalog's path could not be listed: whether its file is gone is unknown."""


def confirm_absent(catalog_dir: Path, catalog_id: str) -> None:
    """Positive evidence that a catalog has no file: every folder on its path that exists was listed.

    Discovery skips folders it cannot list (permissions, an NFS or SMB hiccup) without a word, and
    "not found" must never become "removed" (its rows and points deleted) on such a day.
    """
    folder = catalog_dir.resolve()
    for part in catalog_id.split("/")[:-1] + [None]:
        try:
            with os.scandir(folder) as listing:  # the primitive discovery's walk uses
                names = {item.name for item in listing}
        except OSError as exc:
            raise SourceUnreadable(f"catalog {catalog_id}: folder {folder} cannot be listed ({type(exc).__name__}); not treated as removed") from None
        if part is None or part not in names or not (folder / part).is_dir():
            return  # listed, and the next folder of the path (or the file) is not there: absent
        folder = folder / part


def read_catalog(catalog_dir: Path, catalog_id: str) -> ParsedCatalog:
    """Parse one catalog and fingerprint its source; a catalog whose file was removed is empty.

    Raises CatalogError (refused input), SourceChanged (the file changed while read) and
    SourceUnreadable (its folder cannot be listed: never read as removed)."""
    validate_catalog_id(catalog_id)
    file = discover(catalog_dir).get(catalog_id)
    if file is None:
        confirm_absent(catalog_dir, catalog_id)
    before = source_digest(file)
    spool = EntrySpool.create()
    try:
        warnings = [] if file is None else parse_with_warnings(file, spool)[1]
        after = current_source_digest(catalog_dir, catalog_id)
        if after != before:
            raise SourceChanged(f"catalog {catalog_id}: its file changed while it was being read; read it again")
    except BaseException:
        spool.close()
        raise
    return ParsedCatalog(catalog_id, spool.seal(), before, warnings)


def load_catalog(catalog_dir: Path, catalog_id: str) -> list[Entry]:
    """The entries of one catalog; a catalog whose file was removed is empty (its data is then deleted)."""
    parsed = read_catalog(catalog_dir, catalog_id)
    with parsed.entries:
        return list(parsed.entries)


__all__ = [
    "ABSENT",
    "CatalogError",
    "CatalogFile",
    "Entry",
    "EntrySpool",
    "ParsedCatalog",
    "Problem",
    "SourceChanged",
    "SourceUnreadable",
    "confirm_absent",
    "current_source_digest",
    "discover",
    "load_catalog",
    "parse_catalog",
    "parse_with_warnings",
    "read_catalog",
    "source_digest",
    "source_files",
    "validate_catalog_id",
]
