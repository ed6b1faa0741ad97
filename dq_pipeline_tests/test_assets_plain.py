"""The three assets and their check called as plain functions (Dagster's direct invocation with
`build_asset_context`), on real stores: the fast way to test what a step does, beside the runs that
test how Dagster wires them (test_dagster.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import Failure, build_asset_context

from dq_pipeline.defs.assets import SyncConfig, catalog_embeddings, catalog_entries, catalog_index
from dq_pipeline.defs.resources import CatalogFolder, EmbedderResource, SyncedStoreResource

CATALOG = "crm/customers"


@pytest.fixture
def resources(env: dict[str, str]) -> dict[str, object]:
    return {
        "catalog_folder": CatalogFolder(catalog_dir=env["DQ_CATALOG_DIR"]),
        "store": SyncedStoreResource(database_url=env["DQ_DATABASE_URL"], data_dir=env["DQ_DATA_DIR"]),
        "embedder": EmbedderResource(model="hashing:32"),
    }


def _materialize(resources: dict[str, object], catalog_id: str = CATALOG, force: bool = False):  # type: ignore[no-untyped-def]
    with build_asset_context(partition_key=catalog_id) as context:
        return _steps(context, resources, force)


def _steps(context, resources: dict[str, object], force: bool):  # type: ignore[no-untyped-def]
    def parse():  # type: ignore[no-untyped-def]
        # Each step closes its own handle on the entries (in a run, the IO manager loads one per step).
        return catalog_entries(context, catalog_folder=resources["catalog_folder"], store=resources["store"])

    parsed = parse()
    embeddings = catalog_embeddings(
        context, config=SyncConfig(force=force), catalog_entries=parse(), embedder=resources["embedder"], store=resources["store"]
    )
    return parsed, embeddings, catalog_index(
        context,
        config=SyncConfig(force=force),
        catalog_entries=parse(),
        catalog_embeddings=embeddings,
        catalog_folder=resources["catalog_folder"],
        embedder=resources["embedder"],
        store=resources["store"],
    )


def test_the_steps_as_functions_write_the_catalog_and_prove_it(resources: dict[str, object]) -> None:
    parsed, embeddings, result = _materialize(resources)
    (check,) = result.check_results
    assert check.passed and check.check_name == "ids_match"
    meta = result.metadata
    assert meta["inserted"] == embeddings["embedded"] == meta["entries"] > 0 and meta["deleted"] == 0
    assert meta["source_digest"] == parsed.source_digest

    _, embeddings, again = _materialize(resources)  # unchanged: nothing embedded, nothing written (I4)
    assert embeddings["embedded"] == 0 and again.metadata["embedded"] == 0
    assert (again.metadata["inserted"], again.metadata["updated"], again.metadata["unchanged"]) == (0, 0, meta["entries"])
    assert again.check_results[0].passed

    with resources["store"].open() as store:  # type: ignore[attr-defined]
        assert store.verify(CATALOG).in_sync


def test_a_refused_file_fails_the_parse_step_by_name_and_writes_nothing(resources: dict[str, object], env: dict[str, str]) -> None:
    broken = Path(env["DQ_CATALOG_DIR"]) / "broken.yaml"
    broken.write_text("tables:\n  - name: t\n    columns: [\n", encoding="utf-8")
    with pytest.raises(Failure) as refused, build_asset_context(partition_key="broken") as context:
        catalog_entries(context, catalog_folder=resources["catalog_folder"], store=resources["store"])
    assert "broken.yaml" in str(refused.value.description)
    assert refused.value.allow_retries is False  # refused input is terminal: no retry, no auto-repair
    with resources["store"].open() as store:  # type: ignore[attr-defined]
        assert "broken" not in store.known_catalogs()
