"""Catalog parsing: files in the catalog folder become validated entries (no Dagster here)."""

from __future__ import annotations

from pathlib import Path

from .discovery import CatalogFile, discover, validate_catalog_id
from .entry import CatalogError, Entry, Problem
from .formats import choose


def parse_catalog(file: CatalogFile) -> list[Entry]:
    """Parse and validate one catalog file; raises CatalogError naming file, record and reason."""
    if file.error is not None:
        raise file.error
    return choose(file.root, file.path, file.display).parse(file.path, file.display)


def source_files(file: CatalogFile) -> list[Path]:
    """Every file the catalog's entries are built from: the file itself, then its companions."""
    if file.error is not None:
        return [file.path]
    fmt = choose(file.root, file.path, file.display)
    return [file.path, *(fmt.companions(file.path) if fmt.companions else [])]


def load_catalog(catalog_dir: Path, catalog_id: str) -> list[Entry]:
    """The entries of one catalog; a catalog whose file was removed is empty (its data is then deleted)."""
    validate_catalog_id(catalog_id)
    file = discover(catalog_dir).get(catalog_id)
    return [] if file is None else parse_catalog(file)


__all__ = [
    "CatalogError",
    "CatalogFile",
    "Entry",
    "Problem",
    "discover",
    "load_catalog",
    "parse_catalog",
    "source_files",
    "validate_catalog_id",
]
