"""Catalog parsing: files in the catalog folder become validated entries (no Dagster here)."""

from __future__ import annotations

from pathlib import Path

from .discovery import CatalogFile, discover, validate_catalog_id
from .entry import CatalogError, Entry, Problem
from .formats import records
from .generic import entries_from_records
from .source import read_text

_READERS = {
    "csv": records.read_csv,
    "json": records.read_json,
    "jsonl": records.read_jsonl,
    "yaml": records.read_yaml,
}


def parse_catalog(file: CatalogFile) -> list[Entry]:
    """Parse and validate one catalog file; raises CatalogError naming file, record and reason."""
    if file.error is not None:
        raise file.error
    text = read_text(file.path, file.display)
    return entries_from_records(_READERS[file.format](text, file.display), file.display)


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
    "validate_catalog_id",
]
