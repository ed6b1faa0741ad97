"""Every DQ_* setting is declared once (dq_pipeline/settings.py: SETTINGS and PROCESS_SETTINGS) and
read only through that declaration; README's configuration table is generated from it (issue 15)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from dq_pipeline import settings
from dq_pipeline.settings import (
    ALL_SETTINGS,
    ConfigurationError,
    markdown_table,
    readme_with_table,
    setting_value,
)

from .conftest import REPO

PACKAGE = REPO / "dq_pipeline"
_NAME = re.compile(r"\bDQ_[A-Z][A-Z0-9_]*\b")


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_readme_configuration_table_is_the_generated_one() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme_with_table(readme) == readme, (
        "README.md's configuration table differs from the declarations: run `python -m dq_pipeline.settings --update README.md`"
    )
    assert markdown_table() in readme


def test_the_table_is_printed_and_rewritten_by_the_module(tmp_path: Path) -> None:
    printed = subprocess.run([sys.executable, "-m", "dq_pipeline.settings", "--markdown"], capture_output=True, text=True, check=True, cwd=REPO)
    assert printed.stdout == markdown_table()
    stale = tmp_path / "README.md"
    stale.write_text("# x\n\n## Configuration\n\n| variable | default | meaning |\n|---|---|---|\n| `DQ_OLD` | x | y |\n\nprose stays\n")
    subprocess.run([sys.executable, "-m", "dq_pipeline.settings", "--update", str(stale)], check=True, cwd=REPO)
    assert stale.read_text() == f"# x\n\n## Configuration\n\n{markdown_table()}\nprose stays\n"


def test_each_variable_is_declared_once_with_a_parser_and_a_doc_line() -> None:
    names = [s.env for s in ALL_SETTINGS]
    assert len(names) == len(set(names))
    for s in ALL_SETTINGS:
        assert s.env.startswith("DQ_") and s.default and s.doc and callable(s.parse), s
        assert "|" not in s.default + s.doc, s  # would break the markdown table


def test_every_dq_variable_the_package_names_is_declared() -> None:
    declared = {s.env for s in ALL_SETTINGS}
    named = {name: path for path in _sources() for name in _NAME.findall(path.read_text(encoding="utf-8"))}
    assert {name: str(path.relative_to(REPO)) for name, path in named.items() if name not in declared} == {}


def test_no_dq_variable_is_read_from_the_environment_outside_settings() -> None:
    """The process environment is read for DQ_* values only by settings.py (its parsers); other
    modules go through `setting_value` or `Settings`. (`definitions.resources_from_env` binds the
    declared names as EnvVar, which reads them when the resources are built.)"""
    offending = []
    for path in _sources():
        if path == PACKAGE / "settings.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"environ|getenv", line) and (_NAME.search(line) or "_ENV" in line):
                offending.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offending == []


def test_production_code_reads_no_fault_hook_from_the_environment() -> None:
    """Crash tests inject their kill points (dq_pipeline_tests/failpoint_cli.py); the package has none."""
    assert [str(p.relative_to(REPO)) for p in _sources() if "FAILPOINT" in p.read_text(encoding="utf-8")] == []


def test_parsers_of_the_process_settings() -> None:
    assert setting_value("DQ_SYNC_CRON", {}) == settings.DEFAULT_CRON
    assert setting_value("DQ_SYNC_CRON", {"DQ_SYNC_CRON": " */5 * * * * "}) == "*/5 * * * *"
    with pytest.raises(ConfigurationError, match="DQ_SYNC_CRON='every night' is not a valid cron"):
        setting_value("DQ_SYNC_CRON", {"DQ_SYNC_CRON": "every night"})
    assert setting_value("DQ_EXECUTOR", {}) == "multiprocess"
    assert setting_value("DQ_EXECUTOR", {"DQ_EXECUTOR": " Celery "}) == "celery"
    with pytest.raises(ConfigurationError, match="DQ_EXECUTOR='threads' is not an executor"):
        setting_value("DQ_EXECUTOR", {"DQ_EXECUTOR": "threads"})
    # The sensor bounds are lenient (read at every tick): unreadable is the default, beyond is the bound.
    share = "DQ_SENSOR_MAX_REMOVAL_SHARE"
    assert [setting_value(share, {share: v}) for v in ("", "x", "nan", "0.5", "-1", "7")] == [0.25, 0.25, 0.25, 0.5, 0.0, 1.0]
    runs = "DQ_SENSOR_MAX_RUNS_PER_TICK"
    assert [setting_value(runs, {runs: v}) for v in ("", "0", "12.7", "1e9")] == [1000, 1, 12, 1_000_000]
    assert setting_value("DQ_CELERY_QUEUE", {"DQ_CELERY_QUEUE": "  "}) is None
    assert setting_value("DQ_CELERY_QUEUE", {"DQ_CELERY_QUEUE": " dq-prod "}) == "dq-prod"


def test_onnx_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dq_pipeline.embedding.onnx_backend import cache_root

    monkeypatch.delenv("DQ_ONNX_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "dq_pipeline" / "onnx"
    monkeypatch.setenv("DQ_ONNX_CACHE_DIR", str(tmp_path / "onnx"))
    assert cache_root() == tmp_path / "onnx"


def test_settings_module_imports_no_dagster_and_embedding_can_use_it() -> None:
    code = (
        "import sys; import dq_pipeline.settings, dq_pipeline.embedding.onnx_backend, dq_pipeline.errors as e; "
        "e.redact('x'); assert 'dagster' not in sys.modules, sorted(m for m in sys.modules if m.startswith('dagster'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# --------------------------------------------------------------------------- the test-only fault hook


def test_a_process_hook_sees_every_point_with_its_count_per_run() -> None:
    from dq_pipeline.sync.write import hooks

    calls: list[tuple[str, int, dict[str, object]]] = []
    previous = hooks.install_process_hook(lambda point, n, info: calls.append((point, n, info)))
    try:
        assert previous is None  # production installs none
        handled: list[object] = []
        run = hooks.Hooks({"qdrant_batch": lambda **info: handled.append(info)})
        run("qdrant_batch", batch=1)
        run("qdrant_batch", batch=2)
        hooks.Hooks()("qdrant_batch", batch=1)  # another run counts from 1
    finally:
        assert hooks.install_process_hook(None) is not None
    assert calls == [("qdrant_batch", 1, {"batch": 1}), ("qdrant_batch", 2, {"batch": 2}), ("qdrant_batch", 1, {"batch": 1})]
    assert handled == [{"batch": 1}, {"batch": 2}]
    hooks.Hooks()("locked")  # none installed: nothing happens
    assert len(calls) == 3


@pytest.mark.slow
def test_failpoint_cli_kills_the_real_command_at_its_point(tmp_path: Path) -> None:
    import os
    import signal

    catalogs = tmp_path / "catalogs"
    catalogs.mkdir()
    (catalogs / "shop.csv").write_text("table,column,kind,type,description\norders,id,column,int,order id\norders,total,column,float,order total\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DQ_") and k != "DAGSTER_HOME"}
    env.update(DQ_DATA_DIR=str(tmp_path / "data"), DQ_CATALOG_DIR=str(catalogs), DQ_EMBEDDING_MODEL="hashing:32")

    def launch(spec: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "dq_pipeline_tests.failpoint_cli", spec, "--", *args]
        return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)

    killed = launch("committed", "sync")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    finished = launch("qdrant_batch:99", "sync", "--json")  # a point this run never reaches that often
    assert finished.returncode == 0, finished.stderr
    unknown = launch("nowhere", "sync")
    assert unknown.returncode != 0 and "unknown point 'nowhere'" in unknown.stderr


def test_every_resource_field_a_setting_feeds_is_described_by_that_setting() -> None:
    """The Dagster UI's field descriptions come from the same declaration as the README's table."""
    from dq_pipeline.definitions import resources_for
    from dq_pipeline.settings import SETTINGS, Settings

    resources = resources_for(Settings.from_env(database_url="sqlite:///x.sqlite3"))
    for declared in SETTINGS:
        field = type(resources[declared.resource]).model_fields[declared.resource_field]
        assert field.default is None and declared.env in (field.description or ""), declared.env
        assert declared.doc.replace("`", "")[:40] in field.description, declared.env
