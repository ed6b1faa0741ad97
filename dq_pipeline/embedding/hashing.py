"""A fast deterministic stand-in embedder for tests of logic that does not depend on meaning,
and for benchmarks that isolate the pipeline's own cost. Never the product's default."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


class HashingEmbedder:
    def __init__(self, dimension: int = 32, model_id: str = "test/hashing"):
        self.dimension = dimension
        self.model_id = model_id
        self.calls: list[int] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
            vector = np.random.default_rng(seed).standard_normal(self.dimension).astype(np.float32)
            out[i] = vector / np.linalg.norm(vector)
        return out

    @property
    def embedded(self) -> int:
        return sum(self.calls)
