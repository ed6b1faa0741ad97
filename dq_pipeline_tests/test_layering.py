"""The package's layering (docs/DESIGN.md, "Layout"), read from the import statements themselves:
`catalog/`, `embedding/` and `sync/` are plain Python that never imports Dagster, and `sync/` is
three layers that only look down: `stores/` (the adapters), `write/` (the protocol, on the
stores), `services/` (reconcile, review, search, on both); `sync/store.py` is the facade on top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dq_pipeline"
SYNC_LAYERS = ("stores", "write", "services")


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + (node.module.split(".") if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from . import journal`
    return found


@pytest.mark.parametrize("folder", ["catalog", "embedding", "sync"])
def test_the_plain_python_folders_never_import_dagster(folder: str) -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(m for m in _imports(path) if m.split(".")[0].startswith("dagster") or ".defs" in m)
        for path in (PACKAGE / folder).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_each_sync_layer_imports_only_the_layers_below_it() -> None:
    upward: list[str] = []
    for rank, layer in enumerate(SYNC_LAYERS):
        above = SYNC_LAYERS[rank + 1 :]
        for path in (PACKAGE / "sync" / layer).rglob("*.py"):
            for module in _imports(path):
                names = module.split(".")
                if names[:2] == ["dq_pipeline", "sync"] and (
                    (len(names) > 2 and names[2] in above) or (len(names) > 2 and names[2] == "store")
                ):
                    upward.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert upward == []


def test_every_sync_module_sits_in_a_layer() -> None:
    loose = {p.name for p in (PACKAGE / "sync").glob("*.py")} - {"__init__.py", "store.py"}
    assert loose == set(), "a new sync module belongs in stores/, write/ or services/"


def test_catalog_and_embedding_know_nothing_of_the_stores() -> None:
    for folder in ("catalog", "embedding"):
        for path in (PACKAGE / folder).rglob("*.py"):
            assert not {m for m in _imports(path) if m.startswith(("dq_pipeline.sync", "dq_pipeline.defs"))}, path
