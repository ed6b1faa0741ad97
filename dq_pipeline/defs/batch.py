"""The nightly sync of many catalogs in one run: one step, one process, one pool slot.

Why a job of its own and not the per-catalog assets over a partition range: a ranged run
(`BackfillPolicy.single_run()`) records a materialization for every partition of its range once
its step returns, so a refused or failed catalog would show as materialized and a step that fails
hides every catalog's result; a range also covers every key between its ends, which with dynamic
partitions (in the order they were added) includes catalogs whose file is gone, and the check
results of a ranged step carry no partition. One catalog per run (`sync_catalog`, what the sensor
requests) costs three step processes, 9-22 s each, so 300 catalogs took about 1.5 h every night.

This step syncs each catalog in turn with the same code as the three assets (`parse_catalog`,
`embed_new`, `write_catalog` in assets.py: the write protocol, its per-catalog lock and fence are
unchanged) and reports, per catalog partition, what a `sync_catalog` run would: a materialization
of `catalog_entries`, `catalog_embeddings` and `catalog_index` with the same metadata, and the
`ids_match` check evaluation of that partition. A catalog that fails is reported as it fails (an
observation of its `catalog_index` partition naming the error), the others go on, and the step
fails at the end naming every failed catalog; its failure metadata (`dq/catalog_failures`) says
for each whether the error was transient or refused, which the auto-repair and alert sensors
read (`batch_failures`).

The stores are opened once for the whole step: embedded Qdrant admits one process, which the
`dq_qdrant` pool slot the step claims before its process starts guarantees. The model loads only
if some catalog has new content (process-wide cache, embedding/embedder.py).
"""

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetRecordsFilter,
    Config,
    DagsterEventType,
    Failure,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    job,
    op,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from pydantic import Field

from ..catalog import ABSENT, current_source_digest, discover
from ..errors import ConfigurationError
from ..sync import SyncedStore
from .assets import (
    ERROR_KIND,
    IDS_MATCH,
    REFUSED,
    TRANSIENT,
    TRANSIENT_RETRY,
    embed_new,
    failure_facts,
    index_metadata,
    parse_catalog,
    step_failure,
    write_catalog,
)
from .jobs import TRIGGER_TAG
from .partitions import QDRANT_POOL, catalog_partitions
from .resources import CatalogFolder, EmbedderResource, SyncedStoreResource

BATCH_JOB = "sync_catalogs_batch"
BATCH_STEP = "sync_catalogs"
# The step failure's per-catalog report: {catalog id: {"error_kind", "transient", "refused", "error"}}.
FAILURES = "dq/catalog_failures"
ENTRIES_KEY, EMBEDDINGS_KEY, INDEX_KEY = AssetKey("catalog_entries"), AssetKey("catalog_embeddings"), AssetKey("catalog_index")
SHOWN = 20  # failed catalogs named in the failure's description (the metadata names them all)


class BatchSyncConfig(Config):
    catalog_ids: list[str] = Field(
        default_factory=list,
        description="Catalog partitions to sync, in this order; empty = every catalog partition whose file is in the folder.",
    )
    force: bool = Field(default=False, description="Re-embed and rewrite every entry (force reindex).")


def _failure(exc: BaseException, step: str) -> dict[str, Any]:
    facts = failure_facts(exc)
    # One catalog's line of the run's report: a refusal's lines are kept to their first 2,000 characters.
    return {**facts, "step": step, "error": facts["error"][:2000] if facts["refused"] else facts["error"]}


def headline(failure: dict[str, Any]) -> str:
    """A catalog's failure in one line: a refusal's first line only counts its problems, so the
    first problem (file, line, reason) follows it."""
    lines = [line.strip() for line in str(failure.get("error") or "failed").splitlines() if line.strip()]
    return "; ".join(lines[:2] if failure.get("refused") else lines[:1])


def _target(context: OpExecutionContext, catalog_id: str) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The materialization of `catalog_index` this run just recorded for the catalog (what a check
    result in a `sync_catalog` run points at, so the UI shows the check beside that materialization)."""
    records = context.instance.fetch_materializations(AssetRecordsFilter(asset_key=INDEX_KEY, asset_partitions=[catalog_id]), limit=1).records
    if records and records[0].run_id == context.run_id:
        return AssetCheckEvaluationTargetMaterializationData(
            run_id=records[0].run_id, storage_id=records[0].storage_id, timestamp=records[0].timestamp
        )
    return None


def _sync_one(
    context: OpExecutionContext,
    synced: SyncedStore,
    catalog_id: str,
    folder: Path,
    embedder: EmbedderResource,
    database: str,
    force: bool,
) -> Iterator[Any]:
    """One catalog, as the three steps of a `sync_catalog` run would do it: yields its events, and
    returns None when synced, a reason (str) when skipped, the failure (dict) when it failed."""
    step = "catalog_entries"
    try:
        parsed, parse_meta = parse_catalog(folder, catalog_id, lambda: nullcontext(synced.engine))
    except Exception as exc:
        return _failure(exc, step)
    with parsed.entries:
        if parsed.source_digest == ABSENT:
            # Gone since the tick listed it: removal belongs to the folder sensor, which asks for
            # evidence and holds bulk removals back; the nightly sync never removes a catalog.
            return "its file is no longer in the catalog folder (the folder sensor removes it)"
        yield AssetMaterialization(asset_key=ENTRIES_KEY, partition=catalog_id, metadata=parse_meta)
        try:
            step = "catalog_embeddings"
            embeddings, embed_meta = embed_new(synced.engine, catalog_id, parsed, embedder, force)
            yield AssetMaterialization(asset_key=EMBEDDINGS_KEY, partition=catalog_id, metadata=embed_meta)
            step = "catalog_index"
            result, verification = write_catalog(synced, catalog_id, parsed, embeddings, folder, embedder, force)
        except Exception as exc:
            return _failure(exc, step)
    for warning in (result.retire_error, result.standby_error):
        if warning:
            context.log.warning(f"{catalog_id}: {warning}")
    yield AssetMaterialization(asset_key=INDEX_KEY, partition=catalog_id, metadata=index_metadata(result, parsed, embeddings, database))
    # The blocking check of the write step, for this partition: each evaluation carries its
    # partition, so the instance keeps one per catalog (an unpartitioned evaluation is one row per
    # check and run, and each catalog's would replace the previous one's).
    yield AssetCheckEvaluation(
        asset_key=INDEX_KEY,
        check_name=IDS_MATCH,
        passed=verification.in_sync,
        severity=AssetCheckSeverity.ERROR,
        metadata={**verification.counts(), **({"samples": MetadataValue.json(verification.samples)} if verification.samples else {})},
        description=None if verification.in_sync else f"{catalog_id}: stores disagree ({verification.counts()})",
        target_materialization_data=_target(context, catalog_id),  # stored by now: the yield above was handled
        blocking=True,
        partition=catalog_id,
    )
    if not verification.in_sync:
        # As in a `sync_catalog` run, a failed blocking check fails the catalog; repair can fix it.
        return {
            "error_kind": "ids_match failed",
            "transient": True,
            "refused": False,
            "step": "catalog_index",
            "error": f"check ids_match failed: stores disagree ({verification.counts()})",
        }
    return None


def _removed_since_the_tick(context: OpExecutionContext, folder: Path, catalog_id: str) -> bool:
    """A scheduled run names the catalogs its tick saw as partitions with their file: one that has
    neither by now was removed by the folder sensor in between (a hand-named one is an error)."""
    if context.run.tags.get(TRIGGER_TAG) != "schedule":
        return False
    try:
        return current_source_digest(folder, catalog_id) == ABSENT
    except Exception:
        return False


def catalogs_to_sync(context: OpExecutionContext, config: BatchSyncConfig, folder: Path) -> list[str]:
    if config.catalog_ids:
        return list(dict.fromkeys(config.catalog_ids))
    try:
        present = set(discover(folder))
    except FileNotFoundError:
        raise step_failure(ConfigurationError(f"catalog folder {folder} does not exist: nothing synced")) from None
    return sorted(key for key in context.instance.get_dynamic_partitions(catalog_partitions.name) if key in present)


@op(
    name=BATCH_STEP,
    pool=QDRANT_POOL,
    retry_policy=TRANSIENT_RETRY,  # only for what fails the whole step (the stores cannot be opened)
    out=Out(Nothing),
    tags={"stage": "sync"},
    description="Sync many catalogs in one process: parse, embed what changed and write each through the "
    "journaled protocol, reporting per catalog partition the materializations of catalog_entries, "
    "catalog_embeddings and catalog_index and the ids_match check. A failed catalog does not stop the others; "
    "the step fails at the end naming each failed catalog.",
)
def sync_catalogs(
    context: OpExecutionContext,
    config: BatchSyncConfig,
    catalog_folder: CatalogFolder,
    embedder: EmbedderResource,
    store: SyncedStoreResource,
):
    started = time.perf_counter()
    folder = catalog_folder.path()
    catalog_ids = catalogs_to_sync(context, config, folder)
    partitions = set(context.instance.get_dynamic_partitions(catalog_partitions.name))
    failures: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    synced_ids: list[str] = []
    with ExitStack() as stack:
        try:
            synced = stack.enter_context(store.open())  # once for every catalog: embedded Qdrant admits one process
        except Exception as exc:
            raise step_failure(exc) from exc
        database = store.label()
        for catalog_id in catalog_ids:
            if catalog_id not in partitions and _removed_since_the_tick(context, folder, catalog_id):
                outcome: dict[str, Any] | str | None = "removed since the tick listed it (no partition, no file): the folder sensor removed it"
            elif catalog_id not in partitions:
                # Materializations of a partition that does not exist would be lost in the UI; the
                # folder sensor (or `dq-pipeline sync`) adds a catalog's partition.
                outcome = _failure(
                    ConfigurationError(f"{catalog_id} is not a partition of {catalog_partitions.name}"), "catalog_entries"
                )
            else:
                outcome = yield from _sync_one(context, synced, catalog_id, folder, embedder, database, config.force)
            if outcome is None:
                synced_ids.append(catalog_id)
            elif isinstance(outcome, str):
                skipped[catalog_id] = outcome
                context.log.info(f"{catalog_id}: skipped, {outcome}")
            else:
                failures[catalog_id] = outcome
                context.log.error(f"{catalog_id}: sync failed ({outcome['error_kind']}): {outcome['error']}")
                if catalog_id in partitions:
                    # Shown on the catalog's partition, beside its earlier materializations.
                    yield AssetObservation(
                        asset_key=INDEX_KEY,
                        partition=catalog_id,
                        metadata={"sync_failed": outcome["error"], "error_kind": outcome["error_kind"], "failed_step": outcome["step"]},
                    )
    summary: dict[str, Any] = {
        "catalogs": len(catalog_ids),
        "synced": len(synced_ids),
        "skipped": len(skipped),
        "failed": len(failures),
        "seconds": round(time.perf_counter() - started, 3),
        **({"skipped_catalogs": MetadataValue.json(skipped)} if skipped else {}),
    }
    if failures:
        names = sorted(failures)
        listed = "; ".join(f"{cid}: {headline(failures[cid])}" for cid in names[:SHOWN])
        more = f" (+{len(names) - SHOWN} more)" if len(names) > SHOWN else ""
        kinds = sorted({f["error_kind"] for f in failures.values()})
        raise Failure(
            description=f"{len(names)} of {len(catalog_ids)} catalogs failed: {listed}{more}",
            metadata={
                **summary,
                FAILURES: MetadataValue.json(failures),
                ERROR_KIND: ", ".join(kinds),
                # The run as a whole: terminal if any catalog's failure is (the sensors read each catalog's).
                TRANSIENT: all(f["transient"] for f in failures.values()),
                REFUSED: any(f["refused"] for f in failures.values()),
            },
            # The catalogs that synced are done and a retry would not fix a refusal; a transient
            # failure is left to auto-repair (and, if the file changes, to the folder sensor).
            allow_retries=False,
        )
    yield Output(None, metadata=summary)


def batch_failures(step_failures: Any) -> dict[str, dict[str, Any]]:
    """{catalog id: its failure} from a batch run's STEP_FAILURE events (empty for any other run)."""
    found: dict[str, dict[str, Any]] = {}
    for event in step_failures:
        data = getattr(event, "step_failure_data", None)
        user = getattr(data, "user_failure_data", None) if data is not None else None
        value = (getattr(user, "metadata", None) or {}).get(FAILURES)
        raw = getattr(value, "value", value)
        if isinstance(raw, str):
            raw = json.loads(raw)
        if isinstance(raw, dict):
            found.update({str(k): dict(v) for k, v in raw.items() if isinstance(v, dict)})
    return found


def batch_run_failures(instance: Any, run_id: str, step_failures: Any) -> dict[str, dict[str, Any]]:
    """{catalog id: its failure} of a failed batch run: what its step failure names, and each catalog
    the step was writing when it ended without reporting (a crash, a kill, an error that escaped the
    loop): its entries were materialized by the run but neither its index nor a failure was. Such a
    catalog may have left a pending journal row, so it counts as transient (repair finishes it)."""
    found = batch_failures(step_failures)
    started: set[str] = set()
    written: set[str] = set()
    for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION, limit=None).records:
        materialization = record.event_log_entry.asset_materialization
        if materialization is None or materialization.partition is None:
            continue
        if materialization.asset_key == ENTRIES_KEY:
            started.add(materialization.partition)
        elif materialization.asset_key == INDEX_KEY:
            written.add(materialization.partition)
    for catalog_id in sorted(started - written - set(found)):
        found[catalog_id] = {
            "error_kind": "interrupted",
            "transient": True,
            "refused": False,
            "step": "catalog_index",
            "error": "the batch step ended while it was syncing this catalog (crash, kill or an unreported error); "
            "repair or its next sync finishes what the write left",
        }
    return found


@job(
    name=BATCH_JOB,
    description="Sync many catalogs (config `catalog_ids`, empty = every catalog partition whose file is there) "
    "in one run of one step, as the nightly schedule does; each catalog is still its own partition of "
    "catalog_entries, catalog_embeddings and catalog_index, with its ids_match check. A failed catalog "
    "fails the run at its end, named in the failure.",
    tags={"dq/batch": "true"},
)
def sync_catalogs_batch_job():
    sync_catalogs()
