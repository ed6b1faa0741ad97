"""Catalog formats: one module each, chosen by content and extension, overridable per file.

A format module defines ``FORMAT = Format(...)``: its name, the file suffixes it may read, a
`detect` predicate over the first bytes of the file (decoded), and `parse(path, display)` which
returns validated entries or raises CatalogError. Specific formats are tried before the generic
record formats, which accept any file with their suffix.

Per-file override: a hidden ``.dq-formats.yaml`` in the catalog folder maps glob patterns
(relative to the folder) to format names, e.g. ``{"warehouse/*.json": "dbt_manifest"}``.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..entry import CatalogError, Entry

HEAD_BYTES = 65536
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


def _head(path: Path) -> str:
    with path.open("rb") as handle:
        return handle.read(HEAD_BYTES).decode("utf-8-sig", errors="replace")


def _override(root: Path, relative: str, display: str) -> str | None:
    overrides = root / OVERRIDES_FILE
    if not overrides.is_file():
        return None
    import yaml

    try:
        mapping = yaml.safe_load(overrides.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise CatalogError.single(OVERRIDES_FILE, "document", f"invalid YAML: {exc}") from None
    if not isinstance(mapping, dict):
        raise CatalogError.single(OVERRIDES_FILE, "document", "expected a mapping of glob pattern to format name")
    for pattern, name in mapping.items():
        if fnmatch.fnmatch(relative, str(pattern)):
            return str(name)
    return None


def choose(root: Path, path: Path, display: str) -> Format:
    """The format of one file: the override if any, else the first format whose detector accepts it."""
    relative = path.relative_to(root).as_posix()
    forced = _override(root, relative, display)
    if forced is not None:
        try:
            return by_name(forced)
        except KeyError:
            names = ", ".join(sorted(f.name for f in registry()))
            raise CatalogError.single(display, OVERRIDES_FILE, f"unknown format {forced!r} (known: {names})") from None
    suffix = path.suffix.lower()
    candidates = [fmt for fmt in registry() if suffix in fmt.suffixes]
    head = _head(path) if candidates else ""
    for fmt in candidates:
        if fmt.detect(head):
            return fmt
    raise CatalogError.single(display, "file", f"no catalog format reads {suffix or 'files without a suffix'}")
