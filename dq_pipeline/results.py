"""The command line's JSON contract: one model per `--json` output, and the JSON schemas made from them.

Scripts depend on these shapes (docs/DESIGN.md, "Command-line contract"). Each command builds
its output from the model named after it, so an output that drifts from its schema fails where it
is made; the schemas in `docs/schemas/` are generated from these models (`python -m
dq_pipeline.results docs/schemas`), and a test checks that the committed files are current and
that every `--json` output of the test suite validates against them. Extra keys are refused: a
new key is a change of the contract, made here first.

The Dagster layer reports a sync's counts as asset metadata under the names of `SyncCounts`'s
fields, and the command line reads them back by the same names (`SyncCatalog.from_metadata`):
one list of names, so neither side can rename one alone.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# --- sync ---------------------------------------------------------------------------------------


class SyncCounts(_Contract):
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    embedded: int = 0

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(cls.model_fields)


class SyncCatalog(SyncCounts):
    status: Literal["ok", "failed"]
    error: str | None = None
    warnings: list[str] = []
    warning_count: int = 0
    # Set while a standby model is built and this catalog's standby rows could not follow (the
    # live commit stands; the build stays behind for it until a later sync succeeds).
    standby_error: str | None = None

    @classmethod
    def counts_from_metadata(cls, metadata: Mapping[str, Any]) -> dict[str, int]:
        """The counts the write step reported (metadata values or plain numbers), by field name."""
        return {name: int(getattr(metadata[name], "value", metadata[name])) for name in SyncCounts.names() if name in metadata}


class SyncOutput(_Contract):
    ok: bool
    catalogs: dict[str, SyncCatalog]


# --- verify and repair --------------------------------------------------------------------------


class VerifyCounts(_Contract):
    pg: int
    qdrant: int
    missing: int
    orphans: int
    mismatched: int
    pending_journal: int


class ServedVersion(_Contract):
    source_digest: str
    entries: int | None


class Refusal(_Contract):
    file: str | None
    reason: str
    problems: int
    refused_at: str | None
    catalog_dir: str | None
    served: ServedVersion | None


class VerifyOutput(_Contract):
    in_sync: bool
    unattributed: int
    catalogs: dict[str, VerifyCounts]
    refused: dict[str, Refusal]


class RepairCatalog(_Contract):
    journal_rows_finished: int
    restored: int
    rewritten: int
    orphans_deleted: int
    in_sync: bool


class RepairOutput(_Contract):
    in_sync: bool
    catalogs: dict[str, RepairCatalog]
    unattributed_deleted: int


# --- review and search --------------------------------------------------------------------------


class CleanupCatalog(_Contract):
    status: Literal["ok", "failed"]
    deleted: int
    remaining: int | None
    error: str | None


class CleanupOutput(_Contract):
    ok: bool
    catalogs: dict[str, CleanupCatalog]


class SearchHit(_Contract):
    score: float
    catalog_id: str
    entry_key: str
    kind: str
    text: str


class SearchOutput(_Contract):
    query: str
    hits: list[SearchHit]


# --- models and status --------------------------------------------------------------------------


class ModelRoleInfo(_Contract):
    model: str
    dimension: int
    collection: str
    state: Literal["live", "building", "previous"]
    since: str


class StandbyInfo(ModelRoleInfo):
    catalogs_done: int
    catalogs_total: int
    behind: list[str]
    complete: bool


class ModelStatusOutput(_Contract):
    live: ModelRoleInfo | None
    standby: StandbyInfo | None
    alias: str
    alias_target: str | None


class StatusCatalog(_Contract):
    entries: int
    rejected: int
    models: list[str]
    last_change: str | None
    pending_journal: int
    warnings: list[str]
    warning_count: int


class StatusOutput(_Contract):
    database: str
    qdrant: str
    namespace: str
    collections: list[str]
    models: ModelStatusOutput
    model: str
    catalog_dir: str
    catalog_dir_source: Literal["last sync", "configured"]
    configured_catalog_dir: str
    catalogs: dict[str, StatusCatalog]
    refused: dict[str, Refusal]


# The outputs by command, as `dq-pipeline <command> --json` prints them.
OUTPUTS: dict[str, type[_Contract]] = {
    "sync": SyncOutput,
    "verify": VerifyOutput,
    "repair": RepairOutput,
    "cleanup-rejected": CleanupOutput,
    "search": SearchOutput,
    "status": StatusOutput,
    "model status": ModelStatusOutput,
}


def schema_of(command: str) -> dict[str, Any]:
    schema = OUTPUTS[command].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"dq-pipeline {command} --json"
    return schema


def schema_file(command: str) -> str:
    return f"{command.replace(' ', '-')}.schema.json"


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for command in OUTPUTS:
        path = folder / schema_file(command)
        path.write_text(json.dumps(schema_of(command), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_schemas(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas")):
        print(path)
