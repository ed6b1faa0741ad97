"""The index is not behind its source: every catalog file's digest is what the record committed.

`all_catalogs_in_sync` proves the two stores agree with each other; they can agree and both be
stale (a sync that failed for a transient reason, a removal that never ran). This check compares
the catalog folder with the system of record only (never Qdrant, so it needs no pool slot).
"""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from ..catalog import discover, source_digest
from ..sync import committed_source_digests
from .assets import catalog_index
from .folder_scan import load_done
from .resources import CatalogFolder, SyncedStoreResource

SAMPLE = 20


@asset_check(
    asset=catalog_index,
    name="index_matches_source",
    blocking=False,
    description="Every catalog file's source digest (the file and its companions) equals the digest its committed "
    "rows were parsed from, and no catalog whose file is gone is still recorded. Fails when the index is behind "
    "its source (the catalog sensor then requests the missing runs).",
)
def index_matches_source(
    context: AssetCheckExecutionContext, catalog_folder: CatalogFolder, store: SyncedStoreResource
) -> AssetCheckResult:
    folder = catalog_folder.path()
    try:
        files = discover(folder)
    except FileNotFoundError:
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR, description=f"catalog folder {folder} does not exist")
    with store.record() as engine:
        committed = committed_source_digests(engine)
        confirmed = load_done(engine)
    behind: dict[str, str] = {}
    unreadable: list[str] = []
    for catalog_id, file in sorted(files.items()):
        try:
            digest = source_digest(file)
        except OSError as exc:
            unreadable.append(f"{file.display} ({type(exc).__name__})")
            continue
        recorded = committed.get(catalog_id)
        if recorded is not None:
            if recorded != digest:
                behind[catalog_id] = "file changed since its last committed sync"
            continue
        # Not recorded, or recorded before digests were: current only if a sync of this very version
        # succeeded (an empty catalog, e.g. a dbt catalog.json beside its manifest, has no record row).
        seen = confirmed.get(catalog_id)
        if seen is None or seen[0] != digest or seen[1] is None:
            behind[catalog_id] = "no committed sync of this version of the file"
    if files or not committed:  # an empty folder (unmounted?) is reported, not read as "all removed"
        for catalog_id in sorted(set(committed) - set(files)):
            behind[catalog_id] = "file removed, catalog still recorded"
    else:
        behind["(folder)"] = f"catalog folder {folder} is empty but {len(committed)} catalogs are recorded"
    for display in unreadable:  # a file that cannot be read cannot be shown current
        behind[display] = "cannot be read: whether the index is behind it is unknown"
    sample = dict(list(behind.items())[:SAMPLE])
    return AssetCheckResult(
        passed=not behind,
        severity=AssetCheckSeverity.ERROR,
        description=None if not behind else f"index behind its source for {len(behind)} catalogs: {', '.join(sample)}",
        metadata={
            "catalog_files": len(files),
            "recorded": len(committed),
            "behind": len(behind),
            "unreadable_files": len(unreadable),
            "behind_sample": MetadataValue.json(sample),
            "unreadable_sample": MetadataValue.json(unreadable[:SAMPLE]),
        },
    )
