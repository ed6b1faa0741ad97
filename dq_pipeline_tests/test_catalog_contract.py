"""The contract every catalog format keeps (issue 12), checked over the format registry itself.

For each registered format: its module header says what it reads, ignores, refuses and warns about,
and which duplicate-key rule applies; its fixture (a real file where the license allows, see
fixtures/*/ATTRIBUTION.md, else a repository sample catalog) is detected as that format and parsed;
the fixture cut short inside a string is refused naming the file, a line or record, and a reason;
and the fixture with a 200 KB run of nesting added (``[`` x 100,000) is refused by name, in a fresh
process whose peak memory (VmHWM) stays under 300 MB, in seconds. A format added to the registry
without a fixture here fails `test_every_registered_format_has_a_contract_fixture`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dq_pipeline.catalog import CatalogError, discover, parse_catalog
from dq_pipeline.catalog.formats import Format, choose, registry

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures"
DEPTH = 100_000

# format name -> (file name in the catalog folder, source file)
CONTRACT = {
    "dbt_manifest": ("target/manifest.json", FIXTURES / "dbt/hubspot/manifest.json"),
    "dbt_catalog": ("target/catalog.json", FIXTURES / "dbt/hubspot/catalog.json"),
    "dbt_schema": ("models/marketing.yml", FIXTURES / "dbt/marketing.yml"),
    "frictionless": ("datapackage.json", FIXTURES / "open/frictionless/country-codes.datapackage.json"),
    "dcat": ("data.json", FIXTURES / "open/dcat/dcatus_with_none.trimmed.json"),
    "openmetadata": ("tableTests.json", FIXTURES / "open/openmetadata/tableTests.json"),
    "datahub": ("mce.json", FIXTURES / "open/datahub/bootstrap_mce.trimmed.json"),
    "great_expectations": ("suite.json", FIXTURES / "open/great_expectations/BasicDatasetProfiler_expectations.json"),
    "csv": ("orders.csv", REPO / "catalogs/sales/orders.csv"),
    "json": ("ledger.json", REPO / "catalogs/finance/ledger.json"),
    "jsonl": ("events.jsonl", REPO / "catalogs/marketing/events.jsonl"),
    "yaml": ("customers.yaml", REPO / "catalogs/crm/customers.yaml"),
}

FORMATS = {fmt.name: fmt for fmt in registry()}


def module_doc(fmt: Format) -> str:
    return sys.modules[fmt.parse.__module__].__doc__ or ""


def place(root: Path, name: str, data: bytes) -> str:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return name.rsplit(".", 1)[0]


def truncated(data: bytes) -> bytes:
    """The file cut just after an opening quote past its middle: no format can read that as complete."""
    cut = data.index(b'"', len(data) // 2)
    if data[:cut].count(b'"') % 2:  # the quote found closes a string: take the next one, which opens
        cut = data.index(b'"', cut + 1)
    return data[: cut + 1]


def deeply_nested(name: str, data: bytes) -> bytes:
    """The fixture with a run of nesting added after what it holds, so its format is still detected."""
    run = b"[" * DEPTH + b"]" * DEPTH
    text = data.rstrip()
    if name.endswith(".jsonl"):
        return text + b"\n" + run + b"\n"
    if name.endswith((".yml", ".yaml")):
        return text + b"\nzz_deep: " + run + b"\n"
    if text.endswith(b"}"):
        return text[:-1].rstrip() + b', "zz_deep": ' + run + b"}"
    assert text.endswith(b"]"), name
    return text[:-1].rstrip() + b", " + run + b"]"


def test_every_registered_format_has_a_contract_fixture() -> None:
    assert sorted(FORMATS) == sorted(CONTRACT)


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_module_header_states_what_it_reads_ignores_refuses_and_warns_about(name: str) -> None:
    doc = module_doc(FORMATS[name])
    for heading in ("Reads", "Ignores", "Refuses", "Warns", "Duplicate keys"):
        assert f"{heading}" in doc, f"{FORMATS[name].parse.__module__}: header lacks {heading!r}"


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_detects_and_parses_its_fixture(tmp_path: Path, name: str) -> None:
    relative, source = CONTRACT[name]
    catalog_id = place(tmp_path, relative, source.read_bytes())
    file = discover(tmp_path)[catalog_id]
    assert choose(file.root, file.path, file.display).name == name
    entries = parse_catalog(file)
    assert len(entries) >= 5
    assert all(e.key and e.text for e in entries)


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_refuses_truncated_input_by_name(tmp_path: Path, name: str) -> None:
    relative, source = CONTRACT[name]
    catalog_id = place(tmp_path, relative, truncated(source.read_bytes()))
    with pytest.raises(CatalogError) as refused:
        parse_catalog(discover(tmp_path)[catalog_id])
    err = refused.value
    assert err.path == relative
    where = err.problems[0].location
    assert where.startswith("line ") or where in ("document", "file") or "[" in where, where
    assert any(word in str(err) for word in ("truncated", "invalid", "malformed", "unclosed")), str(err)


MEASURE = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from dq_pipeline.catalog import CatalogError, discover, parse_catalog
from dq_pipeline.catalog.formats import choose
file = discover(Path(sys.argv[1]))[sys.argv[2]]
started = time.perf_counter()
try:
    chosen = choose(file.root, file.path, file.display).name
    parse_catalog(file)
    outcome = {"refused": False, "format": chosen}
except CatalogError as exc:
    outcome = {"refused": True, "format": chosen, "path": exc.path, "location": exc.problems[0].location,
               "reason": exc.problems[0].reason, "message": str(exc)}
outcome["seconds"] = time.perf_counter() - started
outcome["peak_mb"] = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
print(json.dumps(outcome))
"""


def refuse_in_fresh_process(root: Path, catalog_id: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(root), catalog_id, str(REPO)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_refuses_deep_nesting_by_name_in_bounded_memory(tmp_path: Path, name: str) -> None:
    relative, source = CONTRACT[name]
    if name == "csv":
        pytest.skip("CSV has no nesting: a cell of brackets is text (test_hostile_input covers huge cells)")
    catalog_id = place(tmp_path, relative, deeply_nested(relative, source.read_bytes()))
    outcome = refuse_in_fresh_process(tmp_path, catalog_id)
    assert outcome["format"] == name  # the format's own reader refused it, not a fallback
    assert outcome["refused"], outcome
    assert outcome["path"] == relative
    assert outcome["location"].startswith("line "), outcome
    assert "nesting deeper than 100 levels" in outcome["reason"], outcome
    assert len(outcome["message"]) < 2000
    assert outcome["peak_mb"] < 300, outcome
    assert outcome["seconds"] < 10, outcome  # generous: about 0.05 s measured
