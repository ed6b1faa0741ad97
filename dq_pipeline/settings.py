"""Where things live, from DQ_* environment variables; with none set, everything is embedded under ./.dq_data."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .embedding.embedder import resolve_backend
from .errors import ConfigurationError as ConfigError  # the old name of the one configuration error


@dataclass(frozen=True)
class Settings:
    catalog_dir: Path
    data_dir: Path
    database_url: str
    qdrant_url: str | None
    qdrant_api_key: str | None
    qdrant_path: str | None
    embedding_model: str
    qdrant_engine: str = "local"  # the embedded store: "local" (qdrant-client local mode) or "edge"
    embedding_backend: str = "torch"  # "torch" or, opt-in, "onnx" (ONNX Runtime fp32: same vectors, faster)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: str | None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str, override: str | None = None) -> str | None:
            return override or env.get(name) or None

        data_dir = Path(get("DQ_DATA_DIR", overrides.get("data_dir")) or ".dq_data").expanduser()
        qdrant_url = get("DQ_QDRANT_URL", overrides.get("qdrant_url"))
        return cls(
            catalog_dir=Path(get("DQ_CATALOG_DIR", overrides.get("catalog_dir")) or "catalogs").expanduser(),
            data_dir=data_dir,
            database_url=get("DQ_DATABASE_URL", overrides.get("database_url")) or f"sqlite:///{(data_dir / 'dq.sqlite3').resolve()}",
            qdrant_url=qdrant_url,
            qdrant_api_key=get("DQ_QDRANT_API_KEY", overrides.get("qdrant_api_key")),
            qdrant_path=None if qdrant_url else get("DQ_QDRANT_PATH", overrides.get("qdrant_path")) or str((data_dir / "qdrant").resolve()),
            embedding_model=get("DQ_EMBEDDING_MODEL", overrides.get("embedding_model")) or "",
            qdrant_engine=get("DQ_QDRANT_ENGINE", overrides.get("qdrant_engine")) or "local",
            embedding_backend=embedding_backend(get("DQ_EMBEDDING_BACKEND", overrides.get("embedding_backend"))),
        )


def embedding_backend(value: str | None) -> str:
    """DQ_EMBEDDING_BACKEND: torch (default) or onnx."""
    try:
        return resolve_backend(value)
    except ValueError:
        raise ConfigError(f"DQ_EMBEDDING_BACKEND={value!r} is not a backend: use torch (the default) or onnx") from None
