"""The opt-in ONNX Runtime backend (DQ_EMBEDDING_BACKEND=onnx): the same model, fp32, faster on CPU.

The transformer is exported once with torch.onnx.export to a cache folder outside site-packages
(`$XDG_CACHE_HOME/dq_pipeline/onnx/<hash>`, or DQ_ONNX_CACHE_DIR); encoding then tokenises exactly as
sentence-transformers does, runs the graph in ONNX Runtime and mean-pools and normalises in numpy.
The vectors equal the torch backend's to float tolerance (max |cos - 1| ~2e-7 on the sample
catalogs), so rows keep the same model id.

Not sentence-transformers' own `backend="onnx"`: that needs optimum-onnx, whose only release
requires transformers<4.58 while sentence-transformers 6 requires transformers>=5. This path
needs only onnxruntime and onnx (`pip install "dq_pipeline[onnx]"`).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# A plain module (no Dagster; it imports nothing of embedding at import time): no cycle.
from ..settings import setting_value

INSTALL_HINT = 'the onnx embedding backend needs onnxruntime and onnx: install dq_pipeline[onnx] (pip install -e ".[onnx]")'
EXPORT_FORMAT = "1"  # bump when the exported graph changes, so caches are made anew
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def require_onnx() -> None:
    """One clear line when the extra is missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(f"{INSTALL_HINT} ({exc})") from None


def cache_root() -> Path:
    """DQ_ONNX_CACHE_DIR (default under $XDG_CACHE_HOME), read through its declaration."""
    return setting_value("DQ_ONNX_CACHE_DIR")


def cache_dir(model_id: str, source: str) -> Path:
    """Per model id, model files and export toolchain: another model, weights or torch re-exports."""
    import torch
    import transformers

    digest = hashlib.sha256(f"{EXPORT_FORMAT}\0{model_id}\0{torch.__version__}\0{transformers.__version__}".encode())
    folder = Path(source)
    if folder.is_dir():
        for part in sorted(folder.rglob("*.json")) + sorted(folder.rglob("*.safetensors")) + sorted(folder.rglob("*.bin")):
            stat = part.stat()
            digest.update(f"\0{part.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    else:
        digest.update(f"\0{source}".encode())
    return cache_root() / digest.hexdigest()[:16]


def _check_supported(model) -> None:
    """Transformer, mean pooling, optional Normalize: what encode() reproduces in numpy."""
    names = [type(module).__name__ for module in model]
    pooling = getattr(model[1], "pooling_mode", None) if len(names) > 1 else None
    if names[:2] != ["Transformer", "Pooling"] or names[2:] not in ([], ["Normalize"]) or pooling not in ("mean", ["mean"]):
        raise ValueError(f"the onnx embedding backend supports Transformer + mean Pooling models; this one is {names} "
                         f"(pooling {pooling!r}): use DQ_EMBEDDING_BACKEND=torch")


def export(model, target: Path) -> None:
    """The transformer's token embeddings as an ONNX graph with dynamic batch and length, written atomically."""
    import torch

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, transformer):
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.transformer(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    sample = _features(model, ["a short one", "and a somewhat longer sentence, to pad the first"])
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                TokenEmbeddings(model[0].auto_model).eval(), tuple(torch.from_numpy(sample[n]) for n in _INPUTS), str(partial),
                dynamo=False, input_names=list(_INPUTS), output_names=["token_embeddings"], opset_version=17,
                dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*_INPUTS, "token_embeddings"]},
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _features(model, texts: list[str]) -> dict[str, np.ndarray]:
    features = model.preprocess(texts)
    out = {}
    for name in _INPUTS:
        value = features.get(name)
        if value is None and name == "token_type_ids":
            value = np.zeros_like(out["input_ids"])
        out[name] = np.asarray(value, dtype=np.int64)
    return out


class OnnxEncoder:
    """encode(texts) -> unit vectors, as SentenceTransformer.encode(normalize_embeddings=True) gives."""

    def __init__(self, model, model_id: str, source: str, threads: int | None = None, graph: Path | None = None):
        """`graph`: run this ONNX file instead of the cached export (the benchmark's int8 copy)."""
        require_onnx()
        import onnxruntime as ort
        from filelock import FileLock

        _check_supported(model)
        folder = cache_dir(model_id, source)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "model.onnx"
        with FileLock(str(folder / ".export.lock")):  # one process exports, the others wait and reuse it
            if not self.path.exists():
                export(model, self.path)
        if graph is not None:
            self.path = graph
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self._model = model  # for its tokenizer (sentence-transformers' own preprocessing)

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        texts = list(texts)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths batch together, as encode() does
        out: np.ndarray | None = None
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            feed = _features(self._model, [texts[i] for i in idx])
            tokens = self._session.run(None, feed)[0]
            mask = feed["attention_mask"][..., None].astype(np.float32)
            pooled = (tokens * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            if out is None:
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[idx] = pooled
        assert out is not None
        return out
