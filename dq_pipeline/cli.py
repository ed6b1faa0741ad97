"""The `dq-pipeline` command. Its options, JSON shapes and exit codes are a stable contract (docs/DESIGN.md, "Command-line contract").

Exit codes: 0 success, 1 a check or sync failed, 2 usage or configuration error. Errors are one
line on stderr; `--verbose` adds the traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from . import results as results_contract
from .catalog import validate_catalog_id
from .settings import ConfigError, Settings, check_namespace

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class ConfigurationError(click.ClickException):
    exit_code = EXIT_USAGE


def _quiet_libraries() -> None:
    warnings.filterwarnings("ignore")
    for name in ("dagster", "httpx", "sentence_transformers", "transformers", "qdrant_client"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # The protocol's own log lines (a clean-up left to the next run, ...) repeat what the command's
    # one-line result says; they show with --verbose.
    logging.getLogger("dq_pipeline").setLevel(logging.CRITICAL)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _quiet_model_loading() -> None:
    """Model loading says nothing on stderr. Importing transformers for this costs ~0.7 s, so a run
    that embeds nothing (a no-op sync, verify, status) sets what transformers reads at its import;
    only if it is loaded already are its loggers told directly."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()


def _catalog_ids(values: Iterable[str]) -> list[str]:
    try:
        return [validate_catalog_id(v) for v in values]
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def _open_store(settings: Settings):  # -> SyncedStore
    from .sync import SyncedStore

    try:
        store = SyncedStore.open(
            settings.database_url,
            qdrant_url=settings.qdrant_url,
            qdrant_api_key=settings.qdrant_api_key,
            qdrant_path=settings.qdrant_path,
            collection_prefix=settings.namespace,
            embedded_engine=settings.qdrant_engine,
        )
    except Exception as exc:
        from sqlalchemy.exc import ArgumentError

        if isinstance(exc, (ArgumentError, ValueError)):
            raise ConfigurationError(f"invalid store configuration: {exc}") from None
        raise
    try:
        check_namespace(store.engine, settings.namespace)
    except BaseException:
        store.close()
        raise
    from .embedding import recorded_model_loader

    store.load_model = recorded_model_loader(backend=settings.embedding_backend)
    return store


def _emit(as_json: bool, payload: dict[str, Any], text: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(payload, indent=2, sort_keys=True))
    else:
        text()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", is_flag=True, help="Show tracebacks and library logs.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Keep a PostgreSQL system of record and a Qdrant search index of data catalogs in sync."""
    ctx.obj = {"verbose": verbose}
    if not verbose:
        _quiet_libraries()


@cli.command()
@click.option("--catalog-dir", type=click.Path(file_okay=False, path_type=Path), help="Folder of catalog files.")
@click.option("--catalog", "catalogs", multiple=True, help="Catalog id to sync (repeatable); default: all.")
@click.option("--force", is_flag=True, help="Re-embed and rewrite every entry (force reindex).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def sync(catalog_dir: Path | None, catalogs: tuple[str, ...], force: bool, as_json: bool) -> None:
    """Sync catalogs into both stores by running the Dagster job, one run per catalog."""
    from .runner import run_sync

    if not click.get_current_context().find_root().obj["verbose"]:
        _quiet_model_loading()
    settings = Settings.from_env(catalog_dir=str(catalog_dir) if catalog_dir else None)
    if not settings.catalog_dir.is_dir():
        raise ConfigurationError(f"catalog folder {settings.catalog_dir} does not exist (set DQ_CATALOG_DIR or --catalog-dir)")
    verbose = click.get_current_context().find_root().obj["verbose"]
    try:
        results = run_sync(
            settings, _catalog_ids(catalogs), force=force, progress=None if as_json else _sync_printer(settings), verbose=verbose
        )
    except ConfigError as exc:
        raise ConfigurationError(str(exc)) from None
    _forget_removed_refusals(settings)
    if as_json:
        _exact_warning_counts(settings, results)
    ok = all(r["status"] == "ok" for r in results.values())
    if as_json:
        click.echo(json.dumps(results_contract.SyncOutput(ok=ok, catalogs=results).to_dict(), indent=2, sort_keys=True))
    elif not results:
        click.echo(f"no catalogs found in {settings.catalog_dir}")
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


def _print_sync_line(catalog_id: str, r: dict[str, Any]) -> None:
    if r["status"] == "ok":
        click.echo(
            f"{catalog_id}: inserted {r['inserted']}, updated {r['updated']}, deleted {r['deleted']}, "
            f"unchanged {r['unchanged']}, embedded {r['embedded']}"
        )
    else:
        click.echo(f"{catalog_id}: FAILED: {r['error']}", err=True)
    if r.get("standby_error"):
        click.echo(f"{catalog_id}: warning: {r['standby_error']}", err=True)
    _print_warnings(r.get("warnings") or [], r.get("warning_count") or 0)


def _print_warnings(lines: list[str], count: int, indent: str = "  ") -> None:
    """One line per warning ("  warning: file:line: reason"), at most the ones listed, then how many more."""
    for line in lines:
        click.echo(f"{indent}warning: {line}")
    if count > len(lines):
        click.echo(f"{indent}... and {count - len(lines)} more warning(s)")


def _sync_printer(settings: Settings) -> Callable[[str, dict[str, Any]], None]:
    def progress(catalog_id: str, row: dict[str, Any]) -> None:
        _exact_warning_counts(settings, {catalog_id: row})
        _print_sync_line(catalog_id, row)

    return progress


def _exact_warning_counts(settings: Settings, results: dict[str, dict[str, Any]]) -> None:
    """The parse step's metadata counts the reader's cap (100 warnings, then one line counting the
    rest); past it the exact count is the one the write step recorded (sync/services/refusals.py)."""
    from .catalog.notices import MAX_WARNINGS

    capped = [cid for cid, r in results.items() if r["status"] == "ok" and r.get("warning_count", 0) > MAX_WARNINGS]
    if not capped:
        return
    from .sync import open_record, refusals

    engine = open_record(settings.database_url)
    try:
        for cid, count in refusals.warning_counts(engine, capped).items():
            results[cid]["warning_count"] = count
    finally:
        engine.dispose()


def _forget_removed_refusals(settings: Settings) -> None:
    """A refused file that served nothing and was then removed is synced by nobody: forget its refusal."""
    from .catalog import discover
    from .sync import open_record, refusals

    try:
        on_disk = discover(settings.catalog_dir)
    except Exception:  # a folder that cannot be listed now is no evidence that a file is gone
        return
    engine = open_record(settings.database_url)
    try:
        refusals.forget_missing(engine, settings.catalog_dir, on_disk)
    finally:
        engine.dispose()


@cli.command()
@click.option("--catalog", "catalogs", multiple=True, help="Catalog id to verify (repeatable); default: all.")
@click.option("--deep", is_flag=True, help="Also compare every point's vector with the record's (reads all vectors).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def verify(catalogs: tuple[str, ...], deep: bool, as_json: bool) -> None:
    """Compare the ID sets, payloads and vector digests of both stores; exit 0 iff in sync."""
    from .sync import refusals

    ids = _catalog_ids(catalogs)
    with _open_store(Settings.from_env()) as store:
        results = [store.verify(cid, deep=deep) for cid in (ids or store.known_catalogs())]
        # Points that name no catalog belong to none of the above: counted once, for the whole namespace.
        unattributed, sample = store.verify_unattributed() if not ids else (0, [])
        # Catalogs whose latest read was refused: the stores agree on the version still served, so
        # they do not change the exit code, but they are not what the folder holds.
        refused = refusals.refused(store.engine, ids)
    in_sync = all(v.in_sync for v in results) and not unattributed
    payload = results_contract.VerifyOutput(
        in_sync=in_sync,
        catalogs={v.catalog_id: v.counts() for v in results},
        unattributed=unattributed,
        refused=refused,
    ).to_dict()

    def text() -> None:
        for v in results:
            state = "in sync" if v.in_sync else "OUT OF SYNC"
            counts = ", ".join(f"{k} {n}" for k, n in v.counts().items())
            click.echo(f"{v.catalog_id}: {state} ({counts})")
            for kind, found in v.samples.items():
                click.echo(f"  {kind}: {', '.join(found)}")
        if unattributed:
            click.echo(f"{unattributed} point(s) name no catalog: {', '.join(sample)}")
        _print_refused(refused)
        click.echo("in sync" if in_sync else "OUT OF SYNC: run `dq-pipeline repair`")

    _emit(as_json, payload, text)
    sys.exit(EXIT_OK if in_sync else EXIT_FAILED)


@cli.command()
@click.option("--catalog", "catalogs", multiple=True, help="Catalog id to repair (repeatable); default: all.")
@click.option("--deep", is_flag=True, help="Also rewrite points whose vector differs from the record's.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def repair(catalogs: tuple[str, ...], deep: bool, as_json: bool) -> None:
    """Finish the journal, restore missing points from PostgreSQL's vectors, delete orphans. Never embeds."""
    ids = _catalog_ids(catalogs)
    with _open_store(Settings.from_env()) as store:
        results = [store.repair(cid, deep=deep) for cid in (ids or store.known_catalogs())]
        unattributed_deleted = store.repair_unattributed() if not ids else 0
        unattributed_left = store.verify_unattributed()[0] if not ids else 0
    in_sync = all(r.after.in_sync for r in results) and not unattributed_left
    payload = results_contract.RepairOutput(
        in_sync=in_sync,
        catalogs={
            r.catalog_id: results_contract.RepairCatalog(
                journal_rows_finished=r.journal_rows_finished,
                restored=r.restored,
                rewritten=r.rewritten,
                orphans_deleted=r.orphans_deleted,
                in_sync=r.after.in_sync,
            )
            for r in results
        },
        unattributed_deleted=unattributed_deleted,
    ).to_dict()

    def text() -> None:
        for r in results:
            click.echo(
                f"{r.catalog_id}: finished {r.journal_rows_finished} journal row(s), restored {r.restored}, "
                f"rewrote {r.rewritten}, deleted {r.orphans_deleted} orphan(s): "
                + ("in sync" if r.after.in_sync else "STILL OUT OF SYNC")
            )
        if unattributed_deleted:
            click.echo(f"deleted {unattributed_deleted} point(s) that named no catalog")

    _emit(as_json, payload, text)
    sys.exit(EXIT_OK if in_sync else EXIT_FAILED)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(as_json: bool) -> None:
    """Catalogs, entry counts, last change, pending journal rows, model and stores (secrets masked)."""
    from .embedding.embedder import resolve_model
    from .sync import refusals

    settings = Settings.from_env()
    with _open_store(settings) as store:
        report = store.status()
        refused = refusals.refused(store.engine)
        reads = refusals.last_reads(store.engine)
        last_dir, last_read = refusals.last_catalog_dir(store.engine)
    # The folder the last sync read (a sync may be given --catalog-dir), else the configured one.
    configured = str(settings.catalog_dir)
    report["catalog_dir"] = last_dir or configured
    report["catalog_dir_source"] = "last sync" if last_dir else "configured"
    report["configured_catalog_dir"] = configured
    report["model"] = resolve_model(settings.embedding_model)[1]
    report["namespace"] = settings.namespace
    for cid, c in report["catalogs"].items():  # the warnings of each catalog's last successful sync
        read = reads.get(cid, {})
        c["warnings"], c["warning_count"] = read.get("warnings", []), read.get("warning_count", 0)
    report["refused"] = refused
    report = results_contract.StatusOutput.model_validate(report).to_dict()

    def text() -> None:
        click.echo(f"database:    {report['database']}")
        click.echo(f"qdrant:      {report['qdrant']}")
        click.echo(f"namespace:   {report['namespace']} (collections {report['namespace']}_*)")
        models = report["models"]
        live, standby = models["live"], models["standby"]
        click.echo(f"model:       {live['model'] if live else report['model']} (live)" + ("" if not live or live["model"] == report["model"] else f"; configured: {report['model']}"))
        if standby:
            click.echo(f"standby:     {standby['model']} ({standby['state']}, built for {standby['catalogs_done']}/{standby['catalogs_total']} catalogs)")
        if last_dir is None:
            click.echo(f"catalog dir: {configured} (configured; nothing synced yet)")
        elif Path(configured).expanduser().resolve() == Path(last_dir):
            click.echo(f"catalog dir: {last_dir} (configured; last sync {last_read})")
        else:
            click.echo(f"catalog dir: {last_dir} (last sync {last_read}; configured: {configured})")
        for cid, c in report["catalogs"].items():
            click.echo(
                f"  {cid}: {c['entries']} entries ({c['rejected']} rejected), last change {c['last_change'] or '-'}, "
                f"pending journal {c['pending_journal']}" + (f", {c['warning_count']} warning(s)" if c["warning_count"] else "")
            )
            _print_warnings(c["warnings"][:STATUS_WARNINGS], c["warning_count"], indent="    ")
        _print_refused(refused)

    _emit(as_json, report, text)


STATUS_WARNINGS = 5  # warnings listed per catalog in `status` text (--json lists the 50 recorded)


def _print_refused(refused: dict[str, dict[str, Any]]) -> None:
    """Catalogs whose latest read was refused: file, when, the version still served, and the reason."""
    if not refused:
        return
    click.echo(f"refused ({len(refused)}): the version still served is kept until the file is fixed")
    for cid, r in refused.items():
        served = r["served"]
        still = f"still serving {served['entries']} entries (source {served['source_digest'][:19]})" if served else "nothing served"
        click.echo(f"  {cid}: {r['file'] or '-'} refused at {r['refused_at']}, {r['problems']} problem(s); {still}")
        for line in r["reason"].splitlines()[1:4] or r["reason"].splitlines()[:1]:
            click.echo(f"    {line.strip()}")


@cli.command()
@click.argument("query")
@click.option("--catalog", "catalog_id", help="Search one catalog only.")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 1000), help="How many hits.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def search(query: str, catalog_id: str | None, limit: int, as_json: bool) -> None:
    """Semantic search over the index; every hit is checked against PostgreSQL (rejected entries never show)."""
    from .embedding import load_embedder

    if catalog_id is not None:
        _catalog_ids([catalog_id])
    settings = Settings.from_env()
    if not click.get_current_context().find_root().obj["verbose"]:
        _quiet_model_loading()
    embedder = load_embedder(settings.embedding_model, backend=settings.embedding_backend)
    with _open_store(settings) as store:
        hits = store.search(embedder, query, catalog_id=catalog_id, limit=limit)

    def text() -> None:
        if not hits:
            click.echo("no matches (has `dq-pipeline sync` run?)")
            return
        width = max(len(f"{h.catalog_id}:{h.entry_key}") for h in hits)
        for h in hits:
            name = f"{h.catalog_id}:{h.entry_key}"
            summary = h.text if len(h.text) <= 110 else h.text[:107] + "..."
            click.echo(f"{h.score:6.3f}  {name:<{width}}  {h.kind:<8} {summary}")

    _emit(as_json, results_contract.SearchOutput(query=query, hits=[h.as_dict() for h in hits]).to_dict(), text)


@cli.command()
@click.option("--catalog", "catalog_id", required=True, help="The catalog holding the entries.")
@click.argument("entry_keys", nargs=-1, required=True)
@click.option("--by", "reviewer", help="Who rejects (recorded with the entry).")
@click.option("--reason", help="Why (recorded with the entry).")
def reject(catalog_id: str, entry_keys: tuple[str, ...], reviewer: str | None, reason: str | None) -> None:
    """Mark entries rejected: out of search at once, out of both stores at the next cleanup-rejected.

    A rejected entry is not brought back by syncing an unchanged file; it returns when its content changes.
    """
    from .sync import UnknownEntries

    _catalog_ids([catalog_id])
    with _open_store(Settings.from_env()) as store:
        try:
            count = store.reject(catalog_id, list(entry_keys), by=reviewer or os.environ.get("USER"), reason=reason)
        except UnknownEntries as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILED)
    click.echo(f"{catalog_id}: rejected {count} entr{'y' if count == 1 else 'ies'} ({len(entry_keys) - count} already rejected)")


@cli.command("cleanup-rejected")
@click.option("--catalog", "catalogs", multiple=True, help="Catalog id (repeatable); default: every catalog with rejections.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def cleanup_rejected(catalogs: tuple[str, ...], as_json: bool) -> None:
    """Remove rejected entries from PostgreSQL and Qdrant through the write protocol."""
    from .sync import SyncFailed

    ids = _catalog_ids(catalogs)
    results: dict[str, dict[str, Any]] = {}
    with _open_store(Settings.from_env()) as store:
        for cid in ids or store.catalogs_with_rejections():
            try:
                r = store.cleanup_rejected(cid)
                results[cid] = {"status": "ok", "deleted": r.deleted, "remaining": r.unchanged, "error": r.retire_error}
            except SyncFailed as exc:
                results[cid] = {"status": "failed", "deleted": 0, "remaining": None, "error": str(exc)}
    ok = all(r["status"] == "ok" for r in results.values())

    def text() -> None:
        if not results:
            click.echo("no rejected entries")
        for cid, r in results.items():
            click.echo(f"{cid}: deleted {r['deleted']} rejected entr{'y' if r['deleted'] == 1 else 'ies'}" if r["status"] == "ok" else f"{cid}: FAILED: {r['error']}")

    _emit(as_json, results_contract.CleanupOutput(ok=ok, catalogs=results).to_dict(), text)
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


@cli.command()
@click.option("--serve", "port", type=int, default=None, help="Serve /metrics on this port until interrupted (default: print once).")
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to serve on (0.0.0.0: every interface).")
@click.option("--interval", type=float, default=60.0, show_default=True, help="Seconds between collections while serving.")
def metrics(port: int | None, address: str, interval: float) -> None:
    """Prometheus metrics of both stores (what verify proves, per catalog); exit 1 if a store is down."""
    from . import metrics as prometheus

    settings = Settings.from_env()
    try:
        _open_store(settings).close()  # a configuration error is exit 2 now, not a dq_up 0 at every scrape
    except ConfigurationError:
        raise
    except Exception:
        pass  # a store that is down: the collection reports it (dq_up 0)

    def open_store():  # -> SyncedStore, opened per collection: an embedded Qdrant admits one process
        return _open_store(settings)

    if port is None:
        snapshot = prometheus.collect(open_store)
        click.echo(prometheus.exposition_of(snapshot).decode(), nl=False)
        if not snapshot.up:
            click.echo(f"error: {snapshot.error}", err=True)
            sys.exit(EXIT_FAILED)
        return
    click.echo(f"serving http://{address}:{port}/metrics (collecting at most every {interval:g} s)", err=True)
    prometheus.serve(open_store, port, address=address, interval=interval)


@cli.group()
def model() -> None:
    """The live embedding model and a zero-downtime change of it (build, switch, rollback, drop-old).

    Configuring another model (DQ_EMBEDDING_MODEL) records it as the standby: search keeps serving
    the live model while syncs and `model build` embed the standby beside it; `model switch` then
    makes it live in one atomic step, and `model rollback` switches back, embedding nothing, until
    `model drop-old` deletes the old model's rows and collection.
    """


@model.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def model_status(as_json: bool) -> None:
    """The live and standby models, and how far the standby is built (catalogs done / total)."""
    with _open_store(Settings.from_env()) as store:
        report = results_contract.ModelStatusOutput.model_validate(store.model_status()).to_dict()

    def text() -> None:
        live, standby = report["live"], report["standby"]
        click.echo(f"live:    {live['model']} ({live['collection']}, since {live['since']})" if live else "live:    none recorded (nothing synced yet)")
        if standby is None:
            click.echo("standby: none")
        else:
            click.echo(
                f"standby: {standby['model']} ({standby['state']}; built for {standby['catalogs_done']}/{standby['catalogs_total']} catalogs"
                + ("; ready to switch)" if standby["complete"] else f"; behind: {', '.join(standby['behind'][:5])})")
            )
        click.echo(f"alias:   {report['alias']} -> {report['alias_target'] or '(not set)'}")

    _emit(as_json, report, text)


@model.command("build")
@click.option("--catalog", "catalogs", multiple=True, help="Catalog id to build (repeatable); default: all.")
def model_build(catalogs: tuple[str, ...]) -> None:
    """Embed the standby model (the configured one, if it is not live) for every catalog now."""
    from .embedding import load_embedder

    settings = Settings.from_env()
    if not click.get_current_context().find_root().obj["verbose"]:
        _quiet_model_loading()
    with _open_store(settings) as store:
        live = store.models().get("live")
        configured = None
        if live is None or resolve_model_id(settings) != live.model_id:
            configured = load_embedder(settings.embedding_model, backend=settings.embedding_backend)
        done = 0

        def report(result) -> None:  # type: ignore[no-untyped-def]
            nonlocal done
            done += 1
            click.echo(f"  {result.catalog_id}: inserted {result.inserted}, updated {result.updated}, deleted {result.deleted}, "
                       f"unchanged {result.unchanged}, embedded {result.embedded}")

        results = store.build_standby(configured, _catalog_ids(catalogs) or None, on_catalog=report)
        status = store.model_status()["standby"]
    click.echo(f"standby {status['model']}: built for {status['catalogs_done']}/{status['catalogs_total']} catalogs"
               + ("; ready: dq-pipeline model switch" if status["complete"] else ""))
    sys.exit(EXIT_OK if results is not None else EXIT_FAILED)


def resolve_model_id(settings: Settings) -> str:
    from .embedding.embedder import resolve_model

    return resolve_model(settings.embedding_model)[1]


@model.command("switch")
def model_switch() -> None:
    """Make the standby model live (refused unless it is built for every catalog and both stores verify)."""
    with _open_store(Settings.from_env()) as store:
        live, previous = store.switch_model()
    click.echo(f"live: {live.model_id}; standby: {previous.model_id} (previous: `dq-pipeline model rollback` switches back)")


@model.command("rollback")
def model_rollback() -> None:
    """Switch back to the model the last switch replaced (instant, embeds nothing)."""
    with _open_store(Settings.from_env()) as store:
        live, previous = store.switch_model(rollback=True)
    click.echo(f"live: {live.model_id}; standby: {previous.model_id}")


@model.command("drop-old")
def model_drop_old() -> None:
    """Delete the standby model's rows and collection (no rollback to it afterwards)."""
    with _open_store(Settings.from_env()) as store:
        role = store.models().get("standby")
        collection = store.drop_standby()
    click.echo(f"dropped {role.model_id if role else 'the standby model'}" + (f" and collection {collection}" if collection else ""))


def main() -> None:
    # No garbage-collector tuning here: a raised threshold let cyclic garbage pile up during real
    # work (a sync's peak extrapolated to 1M entries went from ~660 to ~1,540 MiB,
    # test_attack_protocol.py::test_sync_verify_and_repair_of_a_million_entries_stay_under_one_gib),
    # and `gc.freeze()` at exit made the interpreter's shutdown crash with SIGSEGV after a failed
    # Qdrant call (exit -11 instead of 1, test_metrics.py::test_a_store_that_is_down_*).
    _main()


def _main() -> None:
    verbose = "--verbose" in sys.argv[1:]
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_FAILED)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(EXIT_USAGE if exc.exit_code == 2 else exc.exit_code)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)

    except SystemExit:
        raise
    except BaseException as exc:  # one clear line; the traceback only when asked for
        if verbose:
            traceback.print_exc()
        from .errors import DqError, one_line, redact

        message = one_line(exc) if isinstance(exc, DqError) else redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        click.echo(f"error: {message}", err=True)
        sys.exit(EXIT_FAILED)
