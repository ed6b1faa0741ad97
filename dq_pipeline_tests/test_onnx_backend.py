"""The opt-in ONNX Runtime backend: the real model, a real export, against torch on the sample catalogs.

onnxruntime and onnx come with the [test] extra (via [onnx]), so the README's test command always runs these.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from dq_pipeline.catalog import discover, parse_catalog
from dq_pipeline.settings import ConfigError, Settings

from .conftest import SAMPLE_CATALOGS


def top10(vectors: np.ndarray) -> np.ndarray:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :10]


def test_onnx_vectors_match_torch_on_the_sample_catalogs(real_embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dq_pipeline.embedding import SentenceTransformerEmbedder

    monkeypatch.setenv("DQ_ONNX_CACHE_DIR", str(tmp_path / "onnx"))
    entries = [(f"{cid}:{e.key}", e.text) for cid, f in sorted(discover(SAMPLE_CATALOGS).items()) for e in parse_catalog(f)]
    texts = [t for _, t in entries]
    onnx = SentenceTransformerEmbedder(backend="onnx")
    assert (onnx.model_id, onnx.dimension) == (real_embedder.model_id, real_embedder.dimension)  # same rows, same points

    exported = list((tmp_path / "onnx").rglob("model.onnx"))
    assert len(exported) == 1, "exported once, into the cache folder (never next to the model in site-packages)"
    reference, vectors = real_embedder.embed(texts), onnx.embed(texts)
    assert vectors.dtype == np.float32 and vectors.shape == reference.shape
    cosines = np.sum(reference * vectors, axis=1)
    assert np.max(np.abs(cosines - 1)) < 1e-5
    assert np.max(np.abs(reference - vectors)) < 1e-4
    agreement = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top10(reference), top10(vectors), strict=True)])
    assert agreement >= 0.95

    query = "customer email address"
    top5 = [[entries[i][0] for i in np.argsort(-(m @ e.embed([query])[0]))[:5]] for m, e in ((reference, real_embedder), (vectors, onnx))]
    assert top5[0] == top5[1] and top5[1][0] == "crm/customers:customers.email"

    modified = exported[0].stat().st_mtime_ns
    again = SentenceTransformerEmbedder(backend="onnx", batch_size=8)  # reuses the export
    assert exported[0].stat().st_mtime_ns == modified
    assert np.max(np.abs(again.embed(texts[:20]) - vectors[:20])) < 1e-5  # batch composition does not matter


def test_onnx_backend_without_the_extra_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from dq_pipeline.embedding import SentenceTransformerEmbedder

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(RuntimeError, match=r"install dq_pipeline\[onnx\]"):
        SentenceTransformerEmbedder(backend="onnx")


def test_embedding_backend_setting() -> None:
    assert Settings.from_env({}).embedding_backend == "torch"
    assert Settings.from_env({"DQ_EMBEDDING_BACKEND": "ONNX"}).embedding_backend == "onnx"
    with pytest.raises(ConfigError, match="DQ_EMBEDDING_BACKEND"):
        Settings.from_env({"DQ_EMBEDDING_BACKEND": "tensorrt"})
