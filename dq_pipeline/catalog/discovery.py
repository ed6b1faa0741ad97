"""Finding catalog files in the catalog folder and naming them (catalog ids)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .entry import CatalogError
from .formats import suffixes

_ID_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\- ]*$")
CATALOG_ID_MAX_LENGTH = 512  # the database column (sync/stores/schema.py: String(512))


@dataclass(frozen=True)
class CatalogFile:
    """A catalog file; `error` is set when the file cannot be synced at all (it is then refused alone)."""

    catalog_id: str
    path: Path
    root: Path
    display: str
    error: CatalogError | None = None


def catalog_id_for(relative: PurePosixPath) -> str:
    return str(relative.with_suffix(""))


# A valid id at once (one match instead of one per part): every part matches _ID_PART, so none is
# empty, "." or ".."; used only to accept, anything it does not match is judged part by part below.
_VALID_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\- ]*(?:/[A-Za-z0-9_][A-Za-z0-9_.\- ]*)*")


def validate_catalog_id(catalog_id: str) -> str:
    """A catalog id is a relative path without extension; it may never climb out of the folder."""
    if len(catalog_id) <= CATALOG_ID_MAX_LENGTH and "..." not in catalog_id and _VALID_ID.fullmatch(catalog_id):
        return catalog_id
    if len(catalog_id) > CATALOG_ID_MAX_LENGTH:
        raise ValueError(
            f"invalid catalog id {catalog_id[:60]!r}... ({len(catalog_id)} characters): "
            f"at most {CATALOG_ID_MAX_LENGTH}; shorten the file's path"
        )
    parts = catalog_id.split("/")
    if not catalog_id or any(p in ("", ".", "..") or not _ID_PART.match(p) or "..." in p for p in parts):
        raise ValueError(f"invalid catalog id {catalog_id!r}: use a relative path like 'finance/ledger'")
    return catalog_id


def _candidates(root: Path) -> list[tuple[Path, bool]]:
    """(path, whether it is a symlink) of each candidate file, in Path order."""
    known = suffixes()
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in known or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        link = path.is_symlink()
        if link or path.is_file():
            found.append((path, link))
    return found


def _describe(root: Path, path: Path, link: bool = True) -> CatalogFile:
    """`link` False: a regular file (not a symlink) reached from the resolved root without following
    a symlinked folder (rglob does not follow them), so it resolves to itself: nothing to resolve."""
    relative = PurePosixPath(path.relative_to(root).as_posix())
    display = str(relative)
    catalog_id = catalog_id_for(relative)
    file = CatalogFile(catalog_id, path, root, display)
    if link:
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError):  # a dangling link or a symlink loop
            return _refused(file, "file", "broken symlink (missing target or a loop)")
        if not target.is_relative_to(root) or not target.is_file():
            return _refused(file, "file", "symlink points outside the catalog folder or to no file")
    try:
        validate_catalog_id(catalog_id)
    except ValueError as exc:
        return _refused(file, "file name", str(exc))
    return file


def _refused(file: CatalogFile, where: str, reason: str) -> CatalogFile:
    return CatalogFile(file.catalog_id, file.path, file.root, file.display, CatalogError.single(file.display, where, reason))


def discover(catalog_dir: Path) -> dict[str, CatalogFile]:
    """Every catalog file under `catalog_dir`, by catalog id; hidden files and unknown suffixes are skipped.

    A file that cannot be synced (bad name, symlink leaving the folder, two files sharing one id
    like ``a.csv`` and ``a.json``) is returned with its `error`, so it is refused alone and the
    other catalogs still sync (I6).
    """
    root = catalog_dir.resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"catalog folder {catalog_dir} does not exist")
    found: dict[str, CatalogFile] = {}
    for path, link in _candidates(root):
        file = _describe(root, path, link)
        if file.catalog_id in found:
            other = found[file.catalog_id]
            file = _refused(file, "file name", f"catalog id {file.catalog_id!r} is used by both {other.display} and {file.display}")
        found[file.catalog_id] = file
    return found
