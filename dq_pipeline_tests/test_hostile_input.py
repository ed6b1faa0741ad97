"""Hostile input and security (issue 5): what a broken export or an attacker can put in the catalog
folder, on the command line or in the environment.

Each hostile file is refused whole with a named error (file, line or record, reason), nothing is
written for it, and the other catalogs of the folder still sync (I6). Data that looks like SQL is
stored as data. Catalog ids never leave the catalog folder. Passwords and API keys never appear in
output, errors or Dagster's records. No SQL text is built from strings.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from dq_pipeline.catalog import (
    CatalogError,
    Entry,
    discover,
    load_catalog,
    parse_catalog,
    read_catalog,
    validate_catalog_id,
)
from dq_pipeline.catalog.builder import TEXT_MAX_CHARS
from dq_pipeline.embedding import HashingEmbedder
from dq_pipeline.sync import SyncedStore
from dq_pipeline.sync.stores.schema import entries as entries_table

from .conftest import REPO, reset_postgres
from .fake_qdrant import FakeQdrant

DQ_EXE = str(Path(sys.executable).with_name("dq-pipeline"))
PACKAGE = REPO / "dq_pipeline"

pytestmark = pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")


def cli_env(tmp_path: Path, database_url: str, catalog_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DQ_") and k != "DAGSTER_HOME"}
    env.update(
        DQ_DATABASE_URL=database_url,
        DQ_DATA_DIR=str(tmp_path / "data"),
        DQ_CATALOG_DIR=str(catalog_dir),
        DQ_EMBEDDING_MODEL="hashing:32",
        **extra,
    )
    return env


def dq(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DQ_EXE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def dq_all(env: dict[str, str], commands: list[tuple[str, ...]]) -> list[subprocess.CompletedProcess[str]]:
    """Independent commands run at once (their retries and timeouts overlap)."""
    started = [(c, subprocess.Popen([DQ_EXE, *c], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)) for c in commands]
    finished = []
    for command, proc in started:
        out, err = proc.communicate(timeout=300)
        finished.append(subprocess.CompletedProcess(list(command), proc.returncode, out, err))
    return finished


# =========================================================================== hostile files, one by one

GOOD_CSV = b"key,description\nk1,fine\n"

# name -> (relative path, content, location, reason): the refusal must name all three.
HOSTILE_FILES = {
    "csv-unclosed-quote": ("broken/quote.csv", b'table,column,description\norders,id,"unclosed\norders,b,x\n', "line 2", "malformed CSV"),
    "csv-ragged-row": ("broken/ragged.csv", b"table,column,description\norders,id,x,extra\n", "line 2", "expected 3 fields"),
    "json-truncated": ("broken/truncated.json", b'[{"key": "a", "description": "x"}, {"key": "b"', "line 1", "truncated JSON"),
    "jsonl-truncated-record": ("broken/records.jsonl", b'{"key": "a"}\n{"key": "b", "descr\n', "line 2", "invalid JSON"),
    "yaml-bad-indent": ("broken/bad.yaml", b"entries:\n  - key: a\n   description: x\n", "line", "invalid YAML"),
    "latin-1": ("enc/latin1.csv", "key,description\nk1,caf\u00e9 cr\u00e8me\n".encode("latin-1"), "line 2", "invalid UTF-8 byte 0xe9"),
    "utf-16-with-bom": ("enc/utf16.csv", "key,description\nk1,hello\n".encode("utf-16"), "line 1", "UTF-16"),
    "nul-byte": ("enc/nul.csv", b"key,description\nk1,hel\x00lo\n", "line 2", "NUL byte"),
    "binary-garbage": ("enc/garbage.json", bytes(range(256)) * 4, "line 1", "NUL byte"),
    "duplicate-keys": ("broken/dupes.csv", b"key,description\nk1,a\nk1,b\n", "line 3", "duplicate entry key"),
    "control-char-key": ("broken/ctrl.jsonl", b'{"key": "a\\u0007b"}\n', "line 1", "invalid entry key"),
    "sql-in-file-name": ("names/x'; DROP TABLE dq_entries; --.csv", GOOD_CSV, "file name", "invalid catalog id"),
}


def write_hostile(root: Path, name: str) -> str:
    relative, content, _, _ = HOSTILE_FILES[name]
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return str(Path(relative).with_suffix("").as_posix())


@pytest.mark.parametrize("name", list(HOSTILE_FILES))
def test_hostile_file_is_refused_with_a_named_error(tmp_path: Path, name: str) -> None:
    catalog_id = write_hostile(tmp_path, name)
    relative, _, location, reason = HOSTILE_FILES[name]
    with pytest.raises(CatalogError) as refused:
        parse_catalog(discover(tmp_path)[catalog_id])
    message = str(refused.value)
    assert relative in message and location in message and reason in message, message
    assert len(message) < 4000


def _symlinks(root: Path, outside: Path) -> None:
    outside.mkdir()
    (outside / "secret.csv").write_bytes(b"key,description\nroot,the password file\n")
    (outside / "deep").mkdir()
    (outside / "deep" / "inner.csv").write_bytes(GOOD_CSV)
    root.mkdir(exist_ok=True)
    (root / "good.csv").write_bytes(GOOD_CSV)
    (root / "links").mkdir()
    (root / "links" / "outside.csv").symlink_to(outside / "secret.csv")  # absolute, leaves the folder
    (root / "links" / "climb.csv").symlink_to(Path("..") / ".." / outside.name / "secret.csv")  # relative, climbs out
    (root / "links" / "dangling.csv").symlink_to(root / "missing.csv")
    (root / "links" / "loop_a.csv").symlink_to(root / "links" / "loop_b.csv")
    (root / "links" / "loop_b.csv").symlink_to(root / "links" / "loop_a.csv")
    (root / "links" / "inside.csv").symlink_to(Path("..") / "good.csv")  # stays inside: allowed
    (root / "linked_dir").symlink_to(outside, target_is_directory=True)  # a folder outside: not entered


def test_symlinks_cannot_read_outside_the_catalog_folder(tmp_path: Path) -> None:
    root = tmp_path / "catalogs"
    _symlinks(root, tmp_path / "outside")
    found = discover(root)
    assert "linked_dir/secret" not in found and "linked_dir/deep/inner" not in found  # never followed
    for catalog_id, reason in [
        ("links/outside", "symlink points outside the catalog folder"),
        ("links/climb", "symlink points outside the catalog folder"),
        ("links/dangling", "broken symlink"),
        ("links/loop_a", "broken symlink"),
    ]:
        with pytest.raises(CatalogError, match=reason):
            parse_catalog(found[catalog_id])
    assert [e.key for e in parse_catalog(found["links/inside"])] == ["k1"]
    assert load_catalog(root, "linked_dir/secret") == []  # not a file of the folder: nothing is read from outside


HOSTILE_IDS = [
    "../../etc/passwd",
    "../x",
    "a/../../b",
    "/etc/passwd",
    "a//b",
    "./a",
    "a/./b",
    "a/..",
    "~/x",
    "a\\..\\b",
    "C:/x",
    "%2e%2e/x",
    "a\x00b",
    "\uff0e\uff0e/x",  # fullwidth dots
    "...",
    "",
    "a/",
]


@pytest.mark.parametrize("catalog_id", HOSTILE_IDS)
def test_catalog_ids_cannot_climb_out_of_the_folder(tmp_path: Path, catalog_id: str) -> None:
    with pytest.raises(ValueError, match="invalid catalog id"):
        validate_catalog_id(catalog_id)
    with pytest.raises(ValueError, match="invalid catalog id"):
        load_catalog(tmp_path, catalog_id)


@pytest.mark.parametrize(
    "command",
    [
        ("sync", "--catalog", "../../etc/passwd"),
        ("verify", "--catalog", "../../etc/passwd"),
        ("repair", "--catalog", "a/../../b"),
        ("search", "x", "--catalog", "/etc/passwd"),
        ("reject", "--catalog", "../x", "k1"),
        ("cleanup-rejected", "--catalog", "../../etc/passwd"),
    ],
    ids=lambda c: c[0],
)
@pytest.mark.slow
def test_cli_refuses_a_climbing_catalog_id_with_exit_2(tmp_path: Path, command: tuple[str, ...]) -> None:
    (tmp_path / "catalogs").mkdir()
    env = cli_env(tmp_path, f"sqlite:///{tmp_path / 'dq.sqlite3'}", tmp_path / "catalogs")
    done = dq(env, *command)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: invalid catalog id") and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "dq.sqlite3").exists() and not (tmp_path / "data").exists()  # refused before any store opened


# =========================================================================== a real sync of a mixed folder

SQL_KEYS = [
    "'; DROP TABLE dq_entries; --",
    "x\" OR \"1\"=\"1",
    "$$; DELETE FROM dq_journal; $$",
    "%(k)s :k ? $1",
    "Robert'); DROP TABLE dq_catalogs;--",
]


def _sql_catalog(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"key": k, "kind": "rule", "description": f"{k} -- 1; SELECT pg_sleep(10); {k}", k: k}) for k in SQL_KEYS]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.postgres
def test_sync_of_a_folder_mixing_good_and_hostile_files(postgres_url: str, tmp_path: Path) -> None:
    """Hostile catalogs are refused whole, nothing is written for them, a good catalog turned hostile
    keeps its committed version, the good catalogs sync, and the stores stay in sync."""
    reset_postgres(postgres_url)
    root = tmp_path / "catalogs"
    root.mkdir()
    (root / "good").mkdir()
    (root / "good" / "plain.csv").write_bytes(b"table,column,description\norders,id,Order id\norders,total,Order total\n")
    _sql_catalog(root / "good" / "sql.jsonl")
    (root / "turns_bad.json").write_text(json.dumps([{"key": "a", "description": "v1"}, {"key": "b"}]), encoding="utf-8")
    env = cli_env(tmp_path, postgres_url, root)
    first = dq(env, "sync", "--json")
    assert first.returncode == 0, first.stderr

    hostile_ids = [write_hostile(root, name) for name in HOSTILE_FILES]
    _symlinks(root, tmp_path / "outside")
    (root / "turns_bad.json").write_bytes(b'[{"key": "a", "description": "v2"}, {"key": "b"')  # truncated
    (root / "good" / "plain.csv").write_bytes(b"table,column,description\norders,id,Order id\norders,total,Order total\norders,tax,Tax\n")

    done = dq(env, "sync", "--json")
    assert done.returncode == 1  # some catalogs failed
    result = json.loads(done.stdout)["catalogs"]
    for catalog_id in [*hostile_ids, "links/outside", "links/climb", "links/dangling", "links/loop_a", "turns_bad"]:
        assert result[catalog_id]["status"] == "failed", (catalog_id, result.get(catalog_id))
        error = result[catalog_id]["error"] or ""
        assert "refused" in error or "invalid catalog id" in error, result[catalog_id]
    assert "linked_dir/secret" not in result
    assert result["good/plain"] == {**result["good/plain"], "status": "ok", "inserted": 1, "unchanged": 2}
    assert result["links/inside"]["status"] == "ok" and result["good/sql"]["status"] == "ok"

    with SyncedStore.open(postgres_url, qdrant_path=str(tmp_path / "data" / "qdrant")) as store:
        with store.engine.connect() as conn:
            stored = set(conn.scalars(select(entries_table.c.catalog_id).distinct()))
            turned = dict(conn.execute(select(entries_table.c.entry_key, entries_table.c.text).where(entries_table.c.catalog_id == "turns_bad")).all())
            sql_keys = set(conn.scalars(select(entries_table.c.entry_key).where(entries_table.c.catalog_id == "good/sql")))
        assert stored == {"good", "good/plain", "good/sql", "turns_bad", "links/inside"}  # nothing for a refused catalog
        assert set(turned) == {"a", "b"} and "v1" in turned["a"]  # the committed version survived its corruption
        assert sql_keys == set(SQL_KEYS)
        assert {"dq_entries", "dq_journal", "dq_catalogs"} <= set(inspect(store.engine).get_table_names())
    verified = dq(env, "verify", "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["in_sync"], verified.stdout

    rejected = dq(env, "reject", "--catalog", "good/sql", SQL_KEYS[0], SQL_KEYS[3])  # keys as argv, not SQL
    assert rejected.returncode == 0 and "rejected 2 entries" in rejected.stdout, rejected.stderr
    cleaned = dq(env, "cleanup-rejected", "--json")
    assert cleaned.returncode == 0 and json.loads(cleaned.stdout)["catalogs"]["good/sql"]["deleted"] == 2
    assert dq(env, "verify").returncode == 0


@pytest.mark.postgres
def test_sql_looking_data_round_trips_exactly_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    reset_postgres(postgres_url)
    embedder = HashingEmbedder()
    wanted = [Entry(key=k, kind="rule", text=f"{k} text {k}", payload={k: [k, {"q": k}], "n": 1}) for k in SQL_KEYS]
    with SyncedStore.open(postgres_url, qdrant_path=str(tmp_path / "qdrant"), upsert_batch_size=2) as store:
        store.sync("sec/sql", wanted, embedder)
        with store.engine.connect() as conn:
            rows = {r.entry_key: (r.text, r.payload) for r in conn.execute(select(entries_table).where(entries_table.c.catalog_id == "sec/sql"))}
        assert rows == {e.key: (e.text, dict(e.payload)) for e in wanted}
        assert store.verify("sec/sql").in_sync
        hits = store.search(embedder, f"{SQL_KEYS[0]} text {SQL_KEYS[0]}", catalog_id="sec/sql", limit=1)
        assert hits and hits[0].entry_key == SQL_KEYS[0]
        assert store.reject("sec/sql", [SQL_KEYS[1]]) == 1
        assert store.cleanup_rejected("sec/sql").deleted == 1
        assert store.verify("sec/sql").in_sync


# =========================================================================== size: giant fields, many rows

MEASURE = r"""
import json, sys, time
from pathlib import Path
from dq_pipeline.catalog import load_catalog
# VmHWM, not ru_maxrss: Linux carries the parent's (pytest's, torch loaded) peak into ru_maxrss across exec.
def peak_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
started = time.perf_counter()
entries = load_catalog(Path(sys.argv[1]), sys.argv[2])
seconds = time.perf_counter() - started
hashed = len({e.content_hash for e in entries})
print(json.dumps({"entries": len(entries), "hashed": hashed, "seconds": seconds,
                  "max_rss_mb": peak_mb()}))
"""


def measure_parse(root: Path, catalog_id: str) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE, str(root), catalog_id], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
def test_many_tiny_rows_parse_in_bounded_memory(tmp_path: Path) -> None:
    """100,000 one-line rows (the million-row figure is in benchmarks/hostile_input.py and docs/RELIABILITY.md)."""
    rows = 100_000
    with (tmp_path / "many.csv").open("w", encoding="utf-8") as handle:
        handle.write("table,column\n")
        handle.writelines(f"t{i // 100},c{i}\n" for i in range(rows))
    figures = measure_parse(tmp_path, "many")
    assert figures["entries"] == figures["hashed"] == rows
    assert figures["max_rss_mb"] < 600, figures  # ~0.7 KB per entry on top of the interpreter


READ_RECORDS = r"""
import json, sys
from pathlib import Path
from dq_pipeline.catalog.formats.records import read_csv, read_jsonl
from dq_pipeline.catalog.source import text_lines
def peak_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
records = 0
if len(sys.argv) > 1:  # without a file: the baseline, the interpreter and the modules alone
    reader = read_csv if sys.argv[1].endswith(".csv") else read_jsonl
    records = sum(1 for _ in reader(text_lines(Path(sys.argv[1]), "big"), "big"))
print(json.dumps({"records": records, "peak_mb": peak_mb()}))
"""


def _read_records(*path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", READ_RECORDS, *map(str, path)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_line_based_catalogs_are_read_in_memory_bounded_by_the_longest_line(tmp_path: Path, suffix: str) -> None:
    """A ~100 MB file of 200,000 records is read (records only, no entries built) with a peak far
    below its size: the whole file was read at once before (its bytes and its text, twice its size)."""
    rows, filler = 200_000, "x" * 480
    path = tmp_path / f"big{suffix}"
    with path.open("w", encoding="utf-8") as handle:
        if suffix == ".csv":
            handle.write("key,description\n")
            handle.writelines(f'k{i},"{filler}\n{i}"\n' for i in range(rows))  # a quoted newline in each
        else:
            handle.writelines(json.dumps({"key": f"k{i}", "description": filler}) + "\n" for i in range(rows))
    size_mb = path.stat().st_size / 2**20
    baseline, read = _read_records(), _read_records(path)
    assert read["records"] == rows
    growth = read["peak_mb"] - baseline["peak_mb"]
    print(f"{suffix}: file {size_mb:.0f} MB, peak {read['peak_mb']:.0f} MB, baseline {baseline['peak_mb']:.0f} MB, growth {growth:.1f} MB")
    assert size_mb > 90 and growth < 0.4 * size_mb, {"file_mb": size_mb, "growth_mb": growth, **read}


def _big_jsonl(path: Path, rows: int, bad_line: int, bad: bytes, *, bom: bool = False) -> int:
    """A JSON Lines file with `bad` inside the description of line `bad_line`; the bad byte's offset."""
    offset = len(b"\xef\xbb\xbf") if bom else 0
    with path.open("wb") as handle:
        handle.write(b"\xef\xbb\xbf"[:offset])
        for i in range(1, rows + 1):
            line = json.dumps({"key": f"k{i}", "description": "x" * (i % 97)}).encode()
            if i == bad_line:
                at = line.index(b'"description": "') + len(b'"description": "') + 1
                line, found = line[:at] + bad + line[at:], offset + at
            handle.write(line + b"\n")
            offset += len(line) + 1
    return found


@pytest.mark.parametrize(
    "bad, reason",
    [(b"\x00", "NUL byte at offset {}: not a text file"), (b"\xff", "invalid UTF-8 byte 0xff at offset {} (save the file as UTF-8)")],
    ids=["nul", "invalid-utf8"],
)
@pytest.mark.parametrize("bom", [False, True], ids=["no-bom", "utf8-bom"])
def test_binary_bytes_deep_in_a_big_jsonl_name_their_line_and_offset(tmp_path: Path, bad: bytes, reason: str, bom: bool) -> None:
    from dq_pipeline.catalog.source import read_text, text_lines

    path = tmp_path / "big.jsonl"
    offset = _big_jsonl(path, 60_000, 43_210, bad, bom=bom)
    with pytest.raises(CatalogError) as refused:
        parse_catalog(discover(tmp_path)["big"])
    message = str(refused.value)
    assert f"  line 43210: {reason.format(offset)}" in message, message
    # The line reader and the whole-file reader refuse alike, before the first line is given.
    with pytest.raises(CatalogError) as by_lines:
        next(text_lines(path, "big"))
    with pytest.raises(CatalogError) as whole:
        read_text(path, "big")
    assert str(by_lines.value) == str(whole.value)


def test_a_nul_byte_anywhere_is_refused_before_an_earlier_invalid_byte_or_record(tmp_path: Path) -> None:
    """As when the whole file was read first: the NUL byte of line 50,000 is named, not the invalid
    UTF-8 of line 20,000 nor the broken JSON of line 10."""
    path = tmp_path / "big.jsonl"
    _big_jsonl(path, 60_000, 20_000, b"\xff")
    lines = path.read_bytes().split(b"\n")
    lines[9] = b'{"key": '
    lines.insert(49_999, b'{"key": "k\x00"}')
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(CatalogError) as refused:
        parse_catalog(discover(tmp_path)["big"])
    assert "line 50000: NUL byte at offset" in str(refused.value), str(refused.value)


@pytest.mark.postgres
def test_a_5mb_description_is_accepted_and_synced_in_bounded_memory(postgres_url: str, tmp_path: Path) -> None:
    """Far past any model's token limit: accepted, the payload stored whole, the embedded text cut to
    builder.TEXT_MAX_CHARS (the model would truncate it anyway)."""
    reset_postgres(postgres_url)
    root = tmp_path / "catalogs"
    root.mkdir()
    giant = "lorem ipsum dolor sit amet " * (5 * 1024 * 1024 // 27)
    (root / "giant.jsonl").write_text(json.dumps({"key": "huge", "description": giant}) + "\n" + json.dumps({"key": "small"}) + "\n", encoding="utf-8")
    env = cli_env(tmp_path, postgres_url, root)
    wrapper = (
        "import json, resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "print(json.dumps({'code': done.returncode, 'out': done.stdout, 'err': done.stderr, "
        "'max_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))"
    )
    measured = json.loads(subprocess.run([sys.executable, "-c", wrapper, DQ_EXE, "sync", "--json"], env=env, capture_output=True, text=True, timeout=300, check=True).stdout)
    assert measured["code"] == 0, measured["err"]
    assert json.loads(measured["out"])["catalogs"]["giant"]["inserted"] == 2
    assert measured["max_rss_mb"] < 1500, measured["max_rss_mb"]
    with SyncedStore.open(postgres_url, qdrant_path=str(tmp_path / "data" / "qdrant")) as store:
        with store.engine.connect() as conn:
            text, payload = conn.execute(
                select(entries_table.c.text, entries_table.c.payload).where(entries_table.c.entry_key == "huge")
            ).one()
        payload = json.loads(payload) if isinstance(payload, str) else payload
        assert payload["description"] == giant.strip()  # the record keeps the whole value
        assert len(text) == TEXT_MAX_CHARS and giant.strip().startswith(text[len("entry huge: "):])  # what is embedded is bounded
        assert store.verify("giant").in_sync


# =========================================================================== secrets

PASSWORD, API_KEY = "S3cret-Pw-9a1", "K3y-S3cret-77f"


def _no_secret(*outputs: str) -> None:
    for output in outputs:
        assert PASSWORD not in output and API_KEY not in output, output[-2000:]


COMMANDS = [
    ("status", "--json"),  # every command opens the stores the same way (cli._open_store): status and verify stand for them
    ("verify",),
    ("sync", "--catalog", "good"),  # through Dagster: the step fails (and is retried) inside the run
]


@pytest.mark.slow
def test_secrets_never_appear_when_the_stores_are_unreachable(tmp_path: Path) -> None:
    """Errors from drivers and clients, tracebacks included (`--verbose`), never show the password."""
    (tmp_path / "catalogs").mkdir()
    (tmp_path / "catalogs" / "good.csv").write_bytes(GOOD_CSV)
    env = cli_env(
        tmp_path,
        f"postgresql://dq_user:{PASSWORD}@127.0.0.1:1/dq",
        tmp_path / "catalogs",
        DQ_QDRANT_URL="http://127.0.0.1:1",
        DQ_QDRANT_API_KEY=API_KEY,
    )
    verbose = [("--verbose", "status"), ("--verbose", "sync", "--catalog", "good")]
    for done in dq_all(env, COMMANDS + verbose):
        assert done.returncode in (1, 2), (done.args, done.stdout, done.stderr)
        _no_secret(done.stdout, done.stderr)
        if "--verbose" not in done.args:
            assert "Traceback" not in done.stderr and done.stderr.strip(), (done.args, done.stderr)
        else:
            assert "Traceback" in done.stderr or "Stack Trace" in done.stderr, (done.args, done.stderr)  # what --verbose adds


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://dq_user:{PASSWORD}@127.0.0.1:notaport/dq",
        f"postgresql://dq_user:{PASSWORD}@[::1/dq",
        f"nosuchdialect://dq_user:{PASSWORD}@127.0.0.1/dq",
    ],
    ids=["bad-port", "bad-host", "bad-dialect"],
)
@pytest.mark.slow
def test_secrets_never_appear_for_malformed_database_urls(tmp_path: Path, url: str) -> None:
    (tmp_path / "catalogs").mkdir()
    env = cli_env(tmp_path, url, tmp_path / "catalogs")
    for done in dq_all(env, [("status",), ("--verbose", "verify", "--json")]):
        assert done.returncode in (1, 2), done.stderr
        _no_secret(done.stdout, done.stderr)


@pytest.fixture
def fake_qdrant() -> Iterator[FakeQdrant]:
    with FakeQdrant(api_key=API_KEY) as fake:
        yield fake


@pytest.mark.postgres
def test_cli_through_a_qdrant_server_outage_never_shows_secrets(postgres_url: str, tmp_path: Path, fake_qdrant: FakeQdrant) -> None:
    """`dq-pipeline` on PostgreSQL (a password in DQ_DATABASE_URL: the test server trusts, so any password
    works) and a Qdrant server that requires an API key. The server goes down mid-life: the sync fails in
    one line and writes nothing; it comes back: the next sync is in sync. No output, error, traceback
    (`--verbose`) or Dagster record ever shows the password or the key."""
    reset_postgres(postgres_url)
    with_password = postgres_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    assert PASSWORD in with_password
    root = tmp_path / "catalogs"
    root.mkdir()
    (root / "good.csv").write_bytes(b"table,column,description\norders,id,Order id\norders,total,Total\n")
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    env = cli_env(tmp_path, with_password, root, DQ_QDRANT_URL=fake_qdrant.url, DQ_QDRANT_API_KEY=API_KEY, DAGSTER_HOME=str(dagster_home))
    outputs: list[str] = []

    def run(*command: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        done = dq(env, *command)
        assert done.returncode == expect, (command, done.stdout, done.stderr)
        outputs.extend([done.stdout, done.stderr])
        return done

    run("sync", "--json")
    (root / "good.csv").write_bytes(b"table,column,description\norders,id,Order id v2\norders,total,Total v2\n")
    fake_qdrant.stop()
    down = run("sync", expect=1)
    lines = down.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("good: FAILED: ") and "Traceback" not in down.stderr, down.stderr
    run("--verbose", "verify", expect=1)  # the Qdrant client's own errors, with the key in its headers
    fake_qdrant.start()  # back, same port, same data
    verified = json.loads(run("verify", "--json").stdout)
    assert verified["in_sync"] and verified["catalogs"]["good"]["pg"] == 2  # still the first version, whole
    assert json.loads(run("--verbose", "sync", "--json").stdout)["catalogs"]["good"]["updated"] == 2
    assert json.loads(run("verify", "--json").stdout)["in_sync"]
    status = run("status", "--json")
    assert "***" in json.loads(status.stdout)["database"]
    run("--verbose", "status")
    run("search", "order", "--json")
    _no_secret(*outputs)
    assert fake_qdrant.requests  # the key was really used: the server refuses requests without it
    for path in dagster_home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert PASSWORD.encode() not in data and API_KEY.encode() not in data, path


# =========================================================================== SQL is never built from strings


def sql_built_from_strings(source: str, filename: str = "<source>") -> list[str]:
    """Calls that pass SQL text built at run time (f-string, concatenation, %-format, .format) to
    `text()`, `exec_driver_sql()`, `execute()` or `executemany()`, or any non-constant to `text()`."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        if isinstance(node.func, ast.Attribute):  # conn.execute(...), sqlalchemy.text(...); not some_object.text(...)
            name = node.func.attr
            if name in ("text", "literal_column") and getattr(node.func.value, "id", "") not in ("sa", "sqlalchemy"):
                continue
        else:
            name = getattr(node.func, "id", "")
        if name not in ("text", "exec_driver_sql", "execute", "executemany", "literal_column"):
            continue
        arg = node.args[0]
        options = [arg.body, arg.orelse] if isinstance(arg, ast.IfExp) else [arg]
        for option in options:
            built = isinstance(option, ast.JoinedStr | ast.BinOp) or (
                isinstance(option, ast.Call) and isinstance(option.func, ast.Attribute) and option.func.attr == "format"
            )
            not_constant = name in ("text", "exec_driver_sql", "literal_column") and not (
                isinstance(option, ast.Constant) and isinstance(option.value, str)
            )
            if built or not_constant:
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node)[:120]}")
    return found


def test_no_sql_text_is_built_from_strings_in_the_package() -> None:
    problems = [p for path in sorted(PACKAGE.rglob("*.py")) for p in sql_built_from_strings(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))]
    assert problems == []


def test_the_sql_check_catches_what_it_must() -> None:
    bad = textwrap.dedent(
        """
        conn.execute(text(f"SELECT * FROM dq_entries WHERE catalog_id = '{catalog_id}'"))
        conn.execute("DELETE FROM dq_journal WHERE run_id = '" + run_id + "'")
        cursor.execute("SELECT %s" % key)
        conn.exec_driver_sql("SELECT {}".format(key))
        conn.execute(text(query))
        """
    )
    good = textwrap.dedent(
        """
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
        conn.execute(select(entries).where(entries.c.catalog_id == catalog_id))
        """
    )
    assert len(sql_built_from_strings(bad)) == 5
    assert sql_built_from_strings(good) == []


# =========================================================================== issue 12: nesting, aliases, floods, huge values

RUN = "[" * 100_000 + "]" * 100_000  # 200 KB


def _children(depth: int) -> str:
    column = '{"name": "c", "dataType": "STRUCT", "children": ['
    return '{"tables": [{"name": "t", "columns": [' + column * depth + "]}" * depth + "]}]}"


def _alias_bomb() -> str:
    """A 'billion laughs' under `meta:` (nine aliases, eight levels: 43 million nodes once expanded)."""
    lines = ["version: 2", "models:", "  - name: m", "    meta:", "      l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"      l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


# name -> (file, content, location, reason fragment)
NESTED = {
    "deep.json": ("deep.json", RUN, "line 1", "nesting deeper than 100 levels"),
    "datapackage.json": ("datapackage.json", RUN, "line 1", "nesting deeper than 100 levels"),
    "data.json": ("data.json", RUN, "line 1", "nesting deeper than 100 levels"),
    "dcat-dataset": ("dcat/data.json", '{"conformsTo": "x", "dataset": ' + RUN + "}", "line 1", "nesting deeper than 100 levels"),
    "manifest.json": (
        "target/manifest.json",
        '{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"}, "nodes": {"a": ' + RUN + "}}",
        "line 1",
        "nesting deeper than 100 levels",
    ),
    "yaml-flow": ("deep.yaml", RUN, "line 1", "nesting deeper than 100 levels"),
    "yaml-block": ("block.yml", "entries:\n" + "".join("  " * i + "- \n" for i in range(1, 400)), "line 1", "nesting deeper than 100 levels"),
    "jsonl": ("records.jsonl", '{"key": "a"}\n' + RUN + "\n", "line 2", "nesting deeper than 100 levels"),
    "openmetadata-children": ("om/tables.json", _children(400), "line 1", "nesting deeper than 100 levels"),
    "yaml-alias-bomb": ("models/schema.yml", _alias_bomb(), "line ", "aliases expand this node to"),
    "yaml-recursive-alias": ("loop.yaml", "entries: &a\n  - *a\n", "line 1", "recursive alias"),
}

REFUSE = r"""
import json, sys, time
from pathlib import Path
from dq_pipeline.catalog import CatalogError, discover, parse_catalog
root = Path(sys.argv[1])
found = discover(root)
started = time.perf_counter()
try:
    parse_catalog(found[sys.argv[2]])
    outcome = {"refused": False}
except CatalogError as exc:
    outcome = {"refused": True, "message": str(exc), "location": exc.problems[0].location, "kind": type(exc).__name__}
outcome["seconds"] = time.perf_counter() - started
healthy = {cid: len(parse_catalog(f)) for cid, f in found.items() if cid != sys.argv[2]}
outcome["healthy"] = healthy
outcome["peak_mb"] = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
print(json.dumps(outcome))
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NESTED))
def test_deep_nesting_and_alias_bombs_are_refused_by_name_in_bounded_memory_and_time(tmp_path: Path, name: str) -> None:
    """Issue 12 items 4-6: refused as CatalogError (never RecursionError), naming file, line and reason,
    in a fresh process peaking under 300 MB, in well under a second (bound 10 s), and the healthy catalog
    beside it still parses."""
    relative, content, location, reason = NESTED[name]
    (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / relative).write_text(content, encoding="utf-8")
    (tmp_path / "healthy.csv").write_bytes(GOOD_CSV)
    done = subprocess.run([sys.executable, "-c", REFUSE, str(tmp_path), relative.rsplit(".", 1)[0]],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout)
    assert outcome["refused"], outcome
    assert outcome["message"].startswith(f"catalog {relative} refused: 1 problem(s)"), outcome["message"]
    assert outcome["location"].startswith(location) and reason in outcome["message"], outcome["message"]
    assert outcome["peak_mb"] < 300, outcome
    assert outcome["seconds"] < 10, outcome
    assert outcome["healthy"] == {"healthy": 1}


def test_yaml_anchors_within_the_alias_budget_are_read(tmp_path: Path) -> None:
    """Aliases are legal YAML: reusing an anchor is fine until the expansion budget."""
    (tmp_path / "c.yaml").write_text(
        "base: &base {table: orders, owner: sales}\nentries:\n"
        + "".join(f"  - {{<<: *base, column: c{i}}}\n" for i in range(500)),
        encoding="utf-8",
    )
    entries = load_catalog(tmp_path, "c")
    assert len(entries) == 500 and entries[7].key == "orders.c7" and entries[7].payload["owner"] == "sales"


def test_a_flood_of_problems_is_capped_with_short_locations(tmp_path: Path) -> None:
    """Issue 12 item 7: the first problems, shortened, and the count; never megabytes of error."""
    long_name = "n" * 5000
    (tmp_path / "flood.jsonl").write_text("".join(json.dumps({"key": f"{long_name}{i}"}) + "\n" for i in range(300)), encoding="utf-8")
    with pytest.raises(CatalogError) as refused:
        load_catalog(tmp_path, "flood")
    message = str(refused.value)
    assert message.startswith("catalog flood.jsonl refused: 300 problem(s)")
    assert "... and 280 more problem(s)" in message
    assert len(message) < 10_000, len(message)
    deep_path = "tables[0]" + ".columns[0].children[0]" * 250
    shown = str(CatalogError.single("x.json", deep_path, "bad"))
    assert "…" in shown and len(shown) < 400 and shown.endswith(".children[0]: bad")


@pytest.mark.slow
def test_huge_value_is_kept_whole_in_the_payload_and_bounded_in_the_text(tmp_path: Path) -> None:
    """Issue 12 item 8 (a 38 MB DCAT `spatial` in the field; 3 MB here): accepted with warnings."""
    spatial = {"type": "Polygon", "coordinates": [[[i * 0.001, 40.0] for i in range(120_000)]]}
    description = "Street trees. " * 2000
    (tmp_path / "data.json").write_text(json.dumps({"conformsTo": "https://project-open-data.cio.gov/v1.1/schema", "dataset": [
        {"identifier": "trees", "title": "Trees", "description": description, "spatial": spatial, "keyword": ["trees"], "modified": "2024"}
    ]}), encoding="utf-8")
    parsed = read_catalog(tmp_path, "data")
    (entry,) = parsed.entries
    assert entry.payload["spatial"] == spatial  # the record keeps the whole value
    assert len(entry.text) == TEXT_MAX_CHARS and entry.text.startswith("dataset Trees: Street trees.")
    reasons = [w.reason for w in parsed.warnings]
    assert [w.location for w in parsed.warnings] == ["data.json (dataset[0])", "data.json (dataset[0])"]
    assert reasons[0].startswith("entry 'trees': embedded text of 28,02") and "cut to its first 8,192" in reasons[0]
    assert "field `spatial`" in reasons[1] and "stored whole in the record" in reasons[1]


@pytest.mark.slow
def test_an_entry_payload_over_64_mib_is_refused_by_name() -> None:
    from dq_pipeline.catalog.builder import EntryCollector

    collector = EntryCollector("big.json")
    collector.add("dataset[0]", "k", "dataset", {"blob": "x" * (64 * 1024 * 1024 + 1)})
    with pytest.raises(CatalogError, match=r"dataset\[0\]: entry 'k': payload of 67,108,876 bytes \(field `blob`"):
        collector.finish()


def test_a_catalog_id_over_512_characters_is_refused_at_discovery(tmp_path: Path) -> None:
    """Issue 10 item 11: the id column holds 512 characters; a longer id was a raw StringDataRightTruncation."""
    folder = tmp_path
    for _ in range(3):
        folder = folder / ("d" * 200)
    folder.mkdir(parents=True)
    (folder / "x.csv").write_bytes(GOOD_CSV)
    (tmp_path / "ok.csv").write_bytes(GOOD_CSV)
    found = discover(tmp_path)
    (long_id,) = [cid for cid in found if cid != "ok"]
    assert len(long_id) == 604
    with pytest.raises(CatalogError, match="at most 512"):
        parse_catalog(found[long_id])
    with pytest.raises(ValueError, match="at most 512"):
        validate_catalog_id(long_id)
    assert [e.key for e in parse_catalog(found["ok"])] == ["k1"]
    validate_catalog_id("a" * 512)  # the bound itself is allowed
