"""Two deployments on one Qdrant: DQ_NAMESPACE keeps their collections, and so their points, apart.

Each deployment has its own system of record; they share one Qdrant server (the REST stand-in,
fake_qdrant.py, reached through qdrant-client's HTTP path as production is). Each catalog id exists in
both with different content, the case where one deployment's points are orphans to the other: before
DQ_NAMESPACE both used the prefix "dq", and `repair` in one deleted the other's points.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from dq_pipeline.cli import cli
from dq_pipeline.errors import ConfigurationError
from dq_pipeline.settings import Settings

from .fake_qdrant import FakeQdrant


@pytest.mark.parametrize("value", ["dq", "staging", "team-a1", "0", "a" * 32])
def test_a_namespace_is_accepted(value: str) -> None:
    assert Settings.from_env({"DQ_NAMESPACE": value}).namespace == value


def test_the_default_namespace_is_dq() -> None:
    assert Settings.from_env({}).namespace == "dq"


@pytest.mark.parametrize("value", ["", "  ", "dq_staging", "Team", "-dq", "a" * 33, "a/b", "a b", "dq.prod", "ns\n"])
def test_a_bad_namespace_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigurationError, match="DQ_NAMESPACE"):
        Settings.from_env({"DQ_NAMESPACE": value})


def test_the_cli_refuses_a_bad_namespace_with_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dq_pipeline.cli import main

    monkeypatch.setenv("DQ_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DQ_NAMESPACE", "dq_staging")
    monkeypatch.setattr("sys.argv", ["dq-pipeline", "status"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2


@pytest.fixture
def qdrant() -> Iterator[FakeQdrant]:
    with FakeQdrant() as server:
        yield server


class Deployment:
    """The environment of one deployment; `dq(...)` runs the command in it (in-process click)."""

    def __init__(self, root: Path, qdrant_url: str, namespace: str | None, monkeypatch: pytest.MonkeyPatch):
        self.root, self.monkeypatch = root, monkeypatch
        self.catalogs = root / "catalogs"
        self.catalogs.mkdir(parents=True)
        self.env = {
            "DQ_DATABASE_URL": f"sqlite:///{root / 'dq.sqlite3'}",
            "DQ_DATA_DIR": str(root / "data"),
            "DQ_CATALOG_DIR": str(self.catalogs),
            "DQ_QDRANT_URL": qdrant_url,
            "DQ_EMBEDDING_MODEL": "hashing:32",
        }
        if namespace is not None:
            self.env["DQ_NAMESPACE"] = namespace

    def _apply(self) -> None:
        for name in ("DQ_NAMESPACE", "DQ_QDRANT_PATH", "DQ_QDRANT_API_KEY", "DAGSTER_HOME"):
            self.monkeypatch.delenv(name, raising=False)
        for name, value in self.env.items():
            self.monkeypatch.setenv(name, value)

    def main(self, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
        """The real entry point (exit codes, the one-line error): (exit code, stderr)."""
        from dq_pipeline.cli import main

        self._apply()
        capsys.readouterr()
        self.monkeypatch.setattr("sys.argv", ["dq-pipeline", *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        return int(exit_info.value.code or 0), capsys.readouterr().err

    def dq(self, *args: str, expect: int = 0) -> str:
        self._apply()
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == expect, (args, result.output)
        return result.stdout

    def json(self, *args: str, expect: int = 0) -> dict:
        return json.loads(self.dq(*args, "--json", expect=expect))


@pytest.mark.slow
def test_verify_and_repair_in_one_namespace_never_touch_the_other(tmp_path: Path, qdrant: FakeQdrant, monkeypatch: pytest.MonkeyPatch) -> None:
    prod = Deployment(tmp_path / "prod", qdrant.url, None, monkeypatch)  # the default namespace, "dq"
    staging = Deployment(tmp_path / "staging", qdrant.url, "dq-staging", monkeypatch)  # "dq" is a prefix of it
    (prod.catalogs / "sales.csv").write_text("table,column,description\norders,id,Order id\norders,total,Total\n", encoding="utf-8")
    (staging.catalogs / "sales.csv").write_text(
        "table,column,description\norders,id,Order id (staging)\norders,total,Total (staging)\norders,tax,Tax\n", encoding="utf-8"
    )
    (staging.catalogs / "only_staging.csv").write_text("table,column,description\nx,y,Only in staging\n", encoding="utf-8")

    assert prod.json("sync")["ok"] and staging.json("sync")["ok"]  # through the Dagster job: its resources carry the namespace
    prod_collections = [n for n in qdrant.collections if n.startswith("dq_")]
    staging_collections = [n for n in qdrant.collections if n.startswith("dq-staging_")]
    assert len(prod_collections) == 1 and len(staging_collections) == 1 and len(qdrant.collections) == 2, sorted(qdrant.collections)
    (prod_c,), (staging_c,) = prod_collections, staging_collections
    prod_points, staging_points = set(qdrant.point_ids(prod_c)), set(qdrant.point_ids(staging_c))
    assert (len(prod_points), len(staging_points)) == (2, 4)

    assert prod.json("status")["namespace"] == "dq" and staging.json("status")["namespace"] == "dq-staging"
    assert "namespace:   dq-staging" in staging.dq("status")
    assert prod.json("status")["collections"] == [prod_c]

    prod_verified = prod.json("verify")
    assert prod_verified["in_sync"] is True and set(prod_verified["catalogs"]) == {"sales"}  # staging's catalogs are not its own
    assert prod_verified["catalogs"]["sales"]["qdrant"] == 2 and prod_verified["catalogs"]["sales"]["orphans"] == 0
    assert staging.json("verify")["in_sync"] is True

    assert prod.json("repair")["in_sync"] is True  # nothing of staging's is an orphan here
    assert qdrant.point_ids(staging_c) == staging_points and qdrant.point_ids(prod_c) == prod_points

    # Damage staging only: prod still verifies clean and its repair leaves staging's damage alone.
    victim = sorted(qdrant.point_ids(staging_c, "sales"))[0]
    with qdrant.lock:
        del qdrant.collections[staging_c].points[victim]
    assert prod.json("verify")["in_sync"] is True
    prod.json("repair")
    assert victim not in qdrant.point_ids(staging_c)
    broken = staging.json("verify", expect=1)
    assert broken["catalogs"]["sales"]["missing"] == 1
    assert staging.json("repair")["catalogs"]["sales"]["restored"] == 1
    assert qdrant.point_ids(staging_c) == staging_points and qdrant.point_ids(prod_c) == prod_points

    # A catalog removed in prod is deleted there only (named: the folder is empty now, and an empty
    # folder never removes every catalog by itself).
    (prod.catalogs / "sales.csv").unlink()
    assert prod.json("sync", "--catalog", "sales")["catalogs"]["sales"]["deleted"] == 2
    assert qdrant.point_ids(prod_c) == set() and qdrant.point_ids(staging_c) == staging_points
    assert staging.json("verify")["in_sync"] is True


@pytest.mark.slow
def test_a_namespace_changed_in_place_is_refused(
    tmp_path: Path, qdrant: FakeQdrant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows record their collection: under another namespace, repair would write into the old one's."""
    prod = Deployment(tmp_path / "prod", qdrant.url, None, monkeypatch)
    (prod.catalogs / "sales.csv").write_text("table,column,description\norders,id,Order id\n", encoding="utf-8")
    assert prod.json("sync")["ok"]
    before = {name: set(qdrant.point_ids(name)) for name in qdrant.collections}
    prod.env["DQ_NAMESPACE"] = "other"
    for command in (("status",), ("verify",), ("repair",), ("sync",)):
        code, err = prod.main(*command, capsys=capsys)
        assert code == 2 and err.startswith("error: ") and "DQ_NAMESPACE='other'" in err and "dq_" in err, (command, err)
    assert {name: set(qdrant.point_ids(name)) for name in qdrant.collections} == before
    del prod.env["DQ_NAMESPACE"]
    assert prod.json("verify")["in_sync"] is True
