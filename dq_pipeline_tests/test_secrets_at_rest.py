"""Nothing the Dagster instance stores holds a secret (docs/DESIGN.md, "Secrets").

`dq-pipeline sync` (the installed executable, a subprocess) runs with DAGSTER_HOME set, a password in
DQ_DATABASE_URL (the test PostgreSQL trusts, so any password works) and a Qdrant server (the REST
stand-in) that refuses requests without the API key, so both secrets are really used. Afterwards every
file under DAGSTER_HOME is opened — SQLite databases table by table, column by column — and every
stored value is searched for either secret: as stored, zlib/gzip-decompressed (Dagster compresses job
and execution-plan snapshots) and base64-decoded, recursively. A failed run (Qdrant down) is included,
so error events and their stack traces are searched too, and so are the commands' stdout and stderr.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import sqlite3
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from .conftest import reset_postgres
from .fake_qdrant import FakeQdrant

pytestmark = [pytest.mark.postgres, pytest.mark.dagster]

DQ_EXE = str(Path(sys.executable).with_name("dq-pipeline"))
PASSWORD, API_KEY = "s3cr3t-PW-xyz", "qk-S3cr3t-4a7f"
SECRETS = (PASSWORD.encode(), API_KEY.encode())
_BASE64_TOKEN = re.compile(rb"[A-Za-z0-9+/_-]{16,}={0,2}")


def expansions(blob: bytes, depth: int = 0) -> Iterator[bytes]:
    """The blob and everything it decodes to: zlib/gzip/raw deflate, base64 (plain and url-safe), recursively."""
    yield blob
    if depth >= 4 or len(blob) < 8:
        return
    for wbits in (zlib.MAX_WBITS, zlib.MAX_WBITS | 16, -zlib.MAX_WBITS):
        try:
            inflated = zlib.decompressobj(wbits).decompress(blob, 64 * 1024 * 1024)
        except zlib.error:
            continue
        if inflated:
            yield from expansions(inflated, depth + 1)
            break
    for token in _BASE64_TOKEN.findall(blob):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                decoded = decode(token + b"=" * (-len(token) % 4))
            except (binascii.Error, ValueError):
                continue
            yield from expansions(decoded, depth + 1)


def leaks(blob: bytes) -> list[bytes]:
    return [secret for part in expansions(blob) for secret in SECRETS if secret in part]


def stored_values(path: Path) -> Iterator[tuple[str, bytes]]:
    """(where, value) for the file's bytes and, for a SQLite database, every text/blob cell of every table."""
    data = path.read_bytes()
    yield str(path), data
    if not data.startswith(b"SQLite format 3\x00"):
        return
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            quoted = '"' + table.replace('"', '""') + '"'
            for row in conn.execute(f"SELECT * FROM {quoted}"):  # noqa: S608 - a table name read from the file itself
                for column, value in enumerate(row):
                    if isinstance(value, str):
                        yield f"{path}:{table}[{column}]", value.encode()
                    elif isinstance(value, bytes):
                        yield f"{path}:{table}[{column}]", value
    finally:
        conn.close()


def instance_leaks(dagster_home: Path) -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = {}
    for path in sorted(dagster_home.rglob("*")):
        if path.is_file():
            for where, value in stored_values(path):
                hits = leaks(value)
                if hits:
                    found.setdefault(where, []).extend(hits)
    return found


def test_the_scanner_finds_a_secret_compressed_and_encoded(tmp_path: Path) -> None:
    """The check itself: a secret zlib-compressed in a blob, base64'd inside JSON text, is found."""
    db = tmp_path / "home" / "runs.db"
    db.parent.mkdir()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE snapshots (body BLOB, note TEXT)")
    hidden = base64.b64encode(zlib.compress(b'{"database_url": "postgresql://u:' + PASSWORD.encode() + b'@h/db"}')).decode()
    conn.execute("INSERT INTO snapshots VALUES (?, ?)", (zlib.compress(b"api_key=" + API_KEY.encode()), f'{{"x": "{hidden}"}}'))
    conn.commit()
    conn.close()
    found = instance_leaks(db.parent)
    assert sorted({s for hits in found.values() for s in hits}) == sorted(SECRETS)
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "runs.db").write_bytes(zlib.compress(b"postgresql://u:***@h/db"))
    assert instance_leaks(clean) == {}


def _env(tmp_path: Path, database_url: str, qdrant_url: str, dagster_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DQ_") and k != "DAGSTER_HOME"}
    env.update(
        DQ_DATABASE_URL=database_url,
        DQ_QDRANT_URL=qdrant_url,
        DQ_QDRANT_API_KEY=API_KEY,
        DQ_DATA_DIR=str(tmp_path / "data"),
        DQ_CATALOG_DIR=str(tmp_path / "catalogs"),
        DQ_EMBEDDING_MODEL="hashing:32",
        DAGSTER_HOME=str(dagster_home),
    )
    return env


def test_sync_with_dagster_home_stores_no_secret(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reset_postgres(postgres_url)
    with_password = make_url(postgres_url).set(password=PASSWORD).render_as_string(hide_password=False)
    assert PASSWORD in with_password
    catalogs = tmp_path / "catalogs"
    catalogs.mkdir()
    (catalogs / "orders.csv").write_text("table,column,description\norders,id,Order id\norders,total,Order total\n", encoding="utf-8")
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    outputs: list[str] = []

    def dq(env: dict[str, str], *args: str, expect: int) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([DQ_EXE, *args], env=env, capture_output=True, text=True, timeout=300, check=False)
        outputs.extend([done.stdout, done.stderr])
        assert done.returncode == expect, (args, done.stdout, done.stderr)
        return done

    with FakeQdrant(api_key=API_KEY) as qdrant:
        env = _env(tmp_path, with_password, qdrant.url, dagster_home)
        dq(env, "sync", "--json", expect=0)
        (catalogs / "orders.csv").write_text("table,column,description\norders,id,Order id v2\n", encoding="utf-8")
        dq(env, "--verbose", "sync", expect=0)
        assert qdrant.requests  # the key was used: the stand-in refuses requests without it
        qdrant.stop()
        (catalogs / "orders.csv").write_text("table,column,description\norders,id,Order id v3\n", encoding="utf-8")
        dq(env, "--verbose", "sync", "--json", expect=1)  # a failed run: error events, stack traces

    from dagster import DagsterInstance

    stored = sorted(p.relative_to(dagster_home).as_posix() for p in dagster_home.rglob("*") if p.is_file())
    assert any(p.endswith(".db") for p in stored), stored  # the runs really were recorded in this instance
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    instance = DagsterInstance.get()
    try:
        runs = instance.get_runs()
    finally:
        instance.dispose()
    assert len(runs) == 3, [r.run_id for r in runs]
    assert instance_leaks(dagster_home) == {}
    for output in outputs:
        assert PASSWORD not in output and API_KEY not in output, output[-2000:]



# --------------------------------------------------------------------------- how resources get secrets


def _job_snapshot_text(resources: dict) -> str:
    from dagster._serdes import serialize_value

    from dq_pipeline.definitions import build_definitions

    job = build_definitions(resources).resolve_job_def("sync_catalog")
    return serialize_value(job.get_job_snapshot())


def _secret_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    values = {
        "DQ_DATABASE_URL": f"postgresql+psycopg://dq:{PASSWORD}@db.example:5432/dq",
        "DQ_QDRANT_URL": "https://qdrant.example:6333",
        "DQ_QDRANT_API_KEY": API_KEY,
        "DQ_DATA_DIR": str(tmp_path / "data"),
    }
    for name in ("DQ_QDRANT_PATH", "DQ_NAMESPACE", "DQ_CATALOG_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_resources_take_secrets_by_variable_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dq_pipeline.definitions import resources_for
    from dq_pipeline.settings import Settings

    _secret_environment(monkeypatch, tmp_path)
    resources = resources_for(Settings.from_env(catalog_dir=str(tmp_path / "catalogs")))
    snapshot = _job_snapshot_text(resources)
    assert PASSWORD not in snapshot and API_KEY not in snapshot
    assert "DQ_DATABASE_URL" in snapshot and "DQ_QDRANT_API_KEY" in snapshot  # the names, which the UI shows
    assert str(tmp_path / "catalogs") in snapshot  # a value given on the command line stays a value
    from dagster import build_resources

    with build_resources({"store": resources["store"]}) as built:  # as Dagster builds it for a step
        assert built.store.settings().database_url.endswith(f"dq:{PASSWORD}@db.example:5432/dq")
        assert built.store.settings().qdrant_api_key == API_KEY


def test_a_secret_outside_the_environment_is_refused_or_exported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dq_pipeline.definitions import resources_for
    from dq_pipeline.errors import ConfigurationError
    from dq_pipeline.settings import Settings, exported

    values = _secret_environment(monkeypatch, tmp_path)
    for name in values:
        monkeypatch.delenv(name)
    settings = Settings.from_env(values)  # given, not read from the process environment
    with pytest.raises(ConfigurationError, match="DQ_DATABASE_URL") as refused:
        resources_for(settings)
    assert PASSWORD not in str(refused.value)
    with exported(settings):
        snapshot = _job_snapshot_text(resources_for(settings))
        assert os.environ["DQ_QDRANT_API_KEY"] == API_KEY
    assert PASSWORD not in snapshot and API_KEY not in snapshot
    assert "DQ_DATABASE_URL" not in os.environ and "DQ_QDRANT_API_KEY" not in os.environ  # restored
    plain = Settings.from_env({"DQ_DATABASE_URL": f"sqlite:///{tmp_path / 'dq.sqlite3'}", "DQ_DATA_DIR": str(tmp_path)})
    assert resources_for(plain)["store"].database_url == plain.database_url  # no secret: a plain value


def test_every_setting_is_declared_once_and_every_secret_is_masked() -> None:
    from dq_pipeline.defs.resources import (
        AlertWebhook,
        CatalogFolder,
        EmbedderResource,
        Pushgateway,
        SyncedStoreResource,
    )
    from dq_pipeline.errors import SECRET_ENV
    from dq_pipeline.settings import SETTINGS, Settings, secret_env_names

    classes = {"catalog_folder": CatalogFolder, "embedder": EmbedderResource, "store": SyncedStoreResource, "alerts": AlertWebhook, "pushgateway": Pushgateway}
    assert len({s.env for s in SETTINGS}) == len({s.field for s in SETTINGS}) == len(SETTINGS)
    assert {s.field for s in SETTINGS} == set(Settings.__dataclass_fields__)
    for s in SETTINGS:
        assert s.resource_field in classes[s.resource].model_fields, s
    assert set(secret_env_names()) == {"DQ_DATABASE_URL", "DQ_QDRANT_URL", "DQ_QDRANT_API_KEY", "DQ_ALERT_WEBHOOK_URL", "DQ_PUSHGATEWAY_URL",
                                       "DQ_CELERY_BROKER_URL", "DQ_CELERY_BACKEND_URL"}  # the broker's URLs: not resource fields
    assert set(secret_env_names()) <= set(SECRET_ENV)  # errors.redact masks each of them
