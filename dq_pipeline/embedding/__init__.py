"""Embedding entries' text into vectors (no Dagster here)."""

from .embedder import (
    DEFAULT_MODEL,
    Embedder,
    LazyEmbedder,
    SentenceTransformerEmbedder,
    load_embedder,
    recorded_model_loader,
)
from .hashing import HashingEmbedder

__all__ = ["DEFAULT_MODEL", "Embedder", "HashingEmbedder", "LazyEmbedder", "SentenceTransformerEmbedder", "load_embedder", "recorded_model_loader"]
