"""Catalog formats: one module each, chosen by content and extension, overridable per file.

A format module defines ``FORMAT = Format(...)``: its name, the file suffixes it may read, a
`detect` predicate over the first bytes of the file (decoded), and `parse(path, display)` which
returns validated entries or raises CatalogError. Specific formats are tried before the generic
record formats, which accept any file with their suffix.

Per-file override: a hidden ``.dq-formats.yaml`` in the catalog folder maps glob patterns
(relative to the folder) to format names, e.g. ``{"warehouse/*.json": "dbt_manifest"}``, or, for
the record formats (csv, json, jsonl, yaml), to a format and the file's columns::

    "dictionaries/*.csv":
      format: csv                 # optional: detected as usual when left out
      columns:                    # field of an entry: the file's column holding it
        table: TABNAME
        column: FIELD
        description: NOTES
        key: null                 # no column is the entry key (it is table.column)

The first pattern that matches a file applies. Unknown formats or fields, and columns mapped for a
format that has no columns, are refused naming `.dq-formats.yaml`.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..entry import CatalogError, Entry
from .toolkit.sniffing import read_head

OVERRIDES_FILE = ".dq-formats.yaml"


@dataclass(frozen=True)
class Format:
    name: str
    suffixes: tuple[str, ...]
    detect: Callable[[str], bool]
    parse: Callable[[Path, str], list[Entry]]
    # Other files this file's entries are built from (a dbt manifest's catalog.json): a change to
    # any of them changes the catalog, so whoever watches files must watch these too.
    companions: Callable[[Path], list[Path]] | None = None
    # What besides the bytes changes what this file parses to (a dbt catalog.json parses to nothing
    # while a manifest is beside it): a short text, empty when nothing applies. It is part of the
    # source digest, so the record can tell a parse made under other circumstances (I8).
    context: Callable[[Path, str], str] | None = None
    # The files `context` looks at (present or not): whoever caches a digest must key it on them.
    watches: Callable[[Path], list[Path]] | None = None


# Specific formats first; the generic records formats last (they accept anything with their suffix).
_MODULES = (
    "dbt_manifest",
    "dbt_catalog",
    "dbt_schema",
    "frictionless",
    "dcat",
    "openmetadata",
    "datahub",
    "great_expectations",
    "records",
)


def registry() -> list[Format]:
    found: list[Format] = []
    for name in _MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        formats = getattr(module, "FORMATS", None) or [module.FORMAT]
        found.extend(formats)
    return found


def by_name(name: str) -> Format:
    for fmt in registry():
        if fmt.name == name:
            return fmt
    raise KeyError(name)


def suffixes() -> set[str]:
    return {suffix for fmt in registry() for suffix in fmt.suffixes}


def override(root: Path, relative: str, display: str) -> str | dict | None:
    """The .dq-formats.yaml setting that applies to a file (a format name, or a mapping), or None."""
    overrides = root / OVERRIDES_FILE
    if not overrides.is_file():
        return None
    from ..source import read_text
    from .records import load_yaml

    # The strict loader: nesting and aliases bounded, errors with their line (a hostile override
    # file is refused by name like a catalog).
    mapping = load_yaml(read_text(overrides, OVERRIDES_FILE), OVERRIDES_FILE)[0] or {}
    if not isinstance(mapping, dict):
        raise CatalogError.single(OVERRIDES_FILE, "document", "expected a mapping of glob pattern to format name")
    for pattern, name in mapping.items():
        if fnmatch.fnmatch(relative, str(pattern)):
            return name if isinstance(name, dict) else str(name)
    return None


def choose(root: Path, path: Path, display: str) -> Format:
    """The format of one file: the override if any, else the first format whose detector accepts it."""
    relative = path.relative_to(root).as_posix()
    forced = override(root, relative, display)
    columns = None
    if isinstance(forced, dict):
        unknown = sorted(str(k) for k in forced if k not in ("format", "columns"))
        if unknown:
            raise CatalogError.single(display, OVERRIDES_FILE, f"unknown setting(s) {', '.join(unknown)} (use format, columns)")
        columns = forced.get("columns")
        forced = None if forced.get("format") is None else str(forced["format"])
    if forced is not None:
        try:
            fmt = by_name(forced)
        except KeyError:
            names = ", ".join(sorted(f.name for f in registry()))
            raise CatalogError.single(display, OVERRIDES_FILE, f"unknown format {forced!r} (known: {names})") from None
    else:
        fmt = _detect(path, display)
    return fmt if columns is None else _with_columns(fmt, columns, display)


def _with_columns(fmt: Format, columns: object, display: str) -> Format:
    from .records import RECORD_FIELDS, with_columns

    if fmt.name not in ("csv", "json", "jsonl", "yaml"):
        raise CatalogError.single(display, OVERRIDES_FILE, f"`columns` applies to csv, json, jsonl and yaml files, not {fmt.name}")
    if not isinstance(columns, dict) or not all(isinstance(v, str) or v is None for v in columns.values()):
        raise CatalogError.single(display, OVERRIDES_FILE, "`columns` must map entry fields to column names (or null)")
    unknown = sorted(str(k) for k in columns if k not in RECORD_FIELDS)
    if unknown:
        raise CatalogError.single(
            display, OVERRIDES_FILE, f"unknown field(s) {', '.join(unknown)} in `columns` (known: {', '.join(RECORD_FIELDS)})"
        )
    return with_columns(fmt, {str(k): v for k, v in columns.items()})


def _detect(path: Path, display: str) -> Format:
    suffix = path.suffix.lower()
    candidates = [fmt for fmt in registry() if suffix in fmt.suffixes]
    head = read_head(path) if candidates else ""
    for fmt in candidates:
        if fmt.detect(head):
            return fmt
    raise CatalogError.single(display, "file", f"no catalog format reads {suffix or 'files without a suffix'}")
