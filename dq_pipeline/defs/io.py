"""How a parsed catalog is handed from the parse step to the embedding and write steps.

A parsed catalog's entries are an entry spool, a SQLite file (catalog/spool.py). Pickling it the
way Dagster's filesystem IO manager pickles any output would pickle only the file's path, and the
file belongs to the parse step's process, which deletes it when it ends. So this IO manager keeps
the file beside the pickle, under the instance's storage folder like every other step output: the
later steps (other processes, a retry, a re-execution from failure) open it read-only, and the
entries never pass through memory whole.

Each output gets a file of its own name (`<output>~<uuid>.entries.sqlite`: a catalog id never holds
a `~`, so no other partition's files match; with a `.` as the separator, catalog `sales` would
match, and delete, the files of catalog `sales.v2`), and writing one deletes the partition's
earlier files. A step that already loaded an earlier file keeps reading it (it works through the
spool's open connection only, never its path), and a step that loads the new pickle reads the new
file, so a pickle (with its source digest) and entries from different parses are never paired (I8).
The folder must be one every step can reach, as with `fs_io_manager`.
"""

from __future__ import annotations

import glob
import uuid
from typing import Any

from dagster import InitResourceContext, OutputContext
from dagster._check import not_none
from dagster._core.storage.fs_io_manager import FilesystemIOManager, PickledObjectFilesystemIOManager

from ..catalog import ParsedCatalog

ENTRIES_IO_MANAGER = "catalog_entries_io_manager"
_SUFFIX = ".entries.sqlite"


class _SpoolKeepingIOManager(PickledObjectFilesystemIOManager):
    def dump_to_path(self, context: OutputContext, obj: Any, path: Any) -> None:
        if isinstance(obj, ParsedCatalog):
            path.parent.mkdir(parents=True, exist_ok=True)
            kept = path.with_name(f"{path.name}~{uuid.uuid4().hex}{_SUFFIX}")
            obj.entries.move_to(kept)
            super().dump_to_path(context, obj, path)
            for earlier in _earlier_files(path):
                if earlier != kept:
                    earlier.unlink(missing_ok=True)
        else:
            super().dump_to_path(context, obj, path)


def _earlier_files(path: Any) -> list[Any]:
    """This output's kept spool files (never another partition's)."""
    return list(path.parent.glob(f"{glob.escape(path.name)}~*{_SUFFIX}"))


class CatalogEntriesIOManager(FilesystemIOManager):
    """`fs_io_manager` for parsed catalogs: the entry spool is kept beside the pickled output."""

    def create_io_manager(self, context: InitResourceContext) -> PickledObjectFilesystemIOManager:
        base_dir = self.base_dir or not_none(context.instance).storage_directory()
        return _SpoolKeepingIOManager(base_dir=base_dir)
