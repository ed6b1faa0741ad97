"""A no-op is nearly free (issue 13): an unchanged `dq-pipeline sync` loads neither torch nor the model.

Importing torch and sentence-transformers and loading the model would cost seconds, more than the
rest of a no-op. Each sync here is a fresh process (what was imported is the process's own), run
as the `dq-pipeline` script runs it, reporting `sys.modules` at its end. The first sync and a sync
after an edit must still load the real model and embed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from dq_pipeline.embedding import DEFAULT_MODEL
from dq_pipeline.sync.stores.schema import models

from .test_cli import _with_description

pytestmark = [pytest.mark.model, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

HEAVY = ("torch", "transformers", "sentence_transformers", "onnxruntime")
ROOT = Path(__file__).resolve().parents[1]

# What the `dq-pipeline` script runs, and at exit (registered first, so run after the command's
# own atexit handlers) which heavy modules the process imported.
PROBE = f"""
import atexit, json, os, sys
atexit.register(lambda: os.write(2, ("\\nLOADED " + json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}) + "\\n").encode()))
from dq_pipeline.cli import main
sys.argv = ["dq-pipeline", *sys.argv[1:]]
main()
"""


def sync(env: dict[str, str], catalog_dir: Path) -> tuple[dict, dict[str, bool]]:
    """`dq-pipeline sync --json` in a process of its own: its output and which heavy modules it imported."""
    environment = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "sync", "--catalog-dir", str(catalog_dir), "--json"],
        env=environment, capture_output=True, text=True, timeout=600, cwd=ROOT,  # `-c` puts its folder first on sys.path
    )
    assert done.returncode == 0, done.stderr
    loaded = next(line for line in done.stderr.splitlines() if line.startswith("LOADED "))
    return json.loads(done.stdout), json.loads(loaded.removeprefix("LOADED "))


def test_an_unchanged_sync_imports_no_torch_and_a_change_still_embeds(env: dict[str, str], catalog_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "one-catalog"
    (folder / "sales").mkdir(parents=True)
    orders = folder / "sales" / "orders.csv"
    shutil.copy(catalog_dir / "sales" / "orders.csv", orders)

    first, loaded = sync(env, folder)
    counts = first["catalogs"]["sales/orders"]
    assert first["ok"] and counts["embedded"] == counts["inserted"] == 60
    assert loaded["torch"] and loaded["sentence_transformers"], "the probe must see a model that was loaded"

    again, loaded = sync(env, folder)
    counts = again["catalogs"]["sales/orders"]
    assert again["ok"] and (counts["embedded"], counts["inserted"], counts["updated"], counts["unchanged"]) == (0, 0, 0, 60)
    assert not any(loaded.values()), f"an unchanged sync imported {[name for name, yes in loaded.items() if yes]}"

    lines = orders.read_text(encoding="utf-8").splitlines(keepends=True)
    edited = next(i for i, line in enumerate(lines) if line.startswith("orders,order_id,"))
    lines[edited] = _with_description(lines[edited], "Surrogate key of an order, assigned by the order service.")
    orders.write_text("".join(lines), encoding="utf-8")
    changed, loaded = sync(env, folder)
    counts = changed["catalogs"]["sales/orders"]
    assert changed["ok"] and (counts["embedded"], counts["updated"], counts["unchanged"]) == (1, 1, 59)
    assert loaded["torch"] and loaded["sentence_transformers"]



def test_a_first_sync_with_nothing_to_embed_loads_no_model(env: dict[str, str], tmp_path: Path) -> None:
    """Empty catalogs on empty stores: the dimension the model role and the collection need comes
    from the bundled model's config files (embedding/model_config.py), not from loading it."""
    folder = tmp_path / "empty-catalogs"
    (folder / "sales").mkdir(parents=True)
    (folder / "sales" / "orders.csv").write_text("table,column,kind,type,description\n", encoding="utf-8")
    (folder / "sales" / "events.jsonl").write_text("", encoding="utf-8")
    out, loaded = sync(env, folder)
    assert out["ok"] and set(out["catalogs"]) == {"sales/orders", "sales/events"}
    assert all(c["inserted"] == c["embedded"] == 0 for c in out["catalogs"].values())
    assert not any(loaded.values()), f"a sync with nothing to embed imported {[name for name, yes in loaded.items() if yes]}"
    engine = create_engine(env["DQ_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            assert conn.execute(select(models.c.role, models.c.model, models.c.dimension)).all() == [("live", DEFAULT_MODEL, 384)]
    finally:
        engine.dispose()
