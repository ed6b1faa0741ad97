"""The `--json` contract (dq_pipeline/results.py): the committed JSON schemas are the models' own,
and a drifting output is refused where it is made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from dq_pipeline.results import OUTPUTS, SyncCatalog, SyncOutput, schema_file, schema_of

SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schemas"


@pytest.mark.parametrize("command", sorted(OUTPUTS))
def test_the_committed_schema_is_the_contract_models_own(command: str) -> None:
    committed = json.loads((SCHEMAS / schema_file(command)).read_text(encoding="utf-8"))
    assert committed == schema_of(command), f"docs/schemas/{schema_file(command)} is stale: run `python -m dq_pipeline.results docs/schemas`"


def test_every_schema_file_belongs_to_a_command() -> None:
    assert {p.name for p in SCHEMAS.glob("*.schema.json")} == {schema_file(c) for c in OUTPUTS}


def test_an_output_with_a_renamed_or_missing_key_is_refused() -> None:
    good = {"status": "ok", "inserted": 1, "updated": 0, "deleted": 0, "unchanged": 2, "embedded": 1, "error": None, "warnings": [], "warning_count": 0}
    SyncOutput.model_validate({"ok": True, "catalogs": {"sales/orders": good}})
    renamed = {**{k: v for k, v in good.items() if k != "inserted"}, "added": 1}
    with pytest.raises(ValidationError, match="added"):
        SyncOutput.model_validate({"ok": True, "catalogs": {"sales/orders": renamed}})
    with pytest.raises(ValidationError, match="status"):
        SyncOutput.model_validate({"ok": True, "catalogs": {"sales/orders": {**good, "status": "partial"}}})


def test_the_counts_are_read_back_from_metadata_by_the_names_they_are_written_under() -> None:
    from dagster import MetadataValue

    written = {"inserted": MetadataValue.int(3), "updated": MetadataValue.int(1), "deleted": 0, "unchanged": 7, "embedded": 4, "model": "m"}
    assert SyncCatalog.counts_from_metadata(written) == {"inserted": 3, "updated": 1, "deleted": 0, "unchanged": 7, "embedded": 4}
