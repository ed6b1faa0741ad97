"""The content digest of a local model folder: what names its model id.

A model id is folded into every point id and recorded with every row, so it must change whenever
the vectors could: two folders whose weights differ in one byte, same names and sizes (a fine-tune),
must not share an id. The digest covers the content of every file of the folder (weights, configs,
tokenizer, vocabulary, pooling/normalize sub-modules), recursively, file symlinks followed (a Hugging Face
cache snapshot is links to blobs; linked folders are not walked, so a loop cannot hang it), except hidden paths (`.git`, `.cache`, ...) and documentation
(README, *.md, LICENSE, NOTICE).

Hashing costs about 0.07 s for the 90 MB all-MiniLM-L6-v2 from the page cache (0.2 s cold) and
grows with the weights (seconds for a GB-sized model), and the id is resolved several times per run
and in each Dagster step process. So a digest is cached, in memory per process and in a small JSON
file (`$XDG_CACHE_HOME/dq_pipeline/model-digests.json`, else `~/.cache/...`), under a fingerprint of
every file's path, size, mtime_ns, ctime_ns, inode and device. The kernel sets ctime on every write
and no user call can set it back, so rewritten weights miss the cache even when size and mtime were
restored; a miss costs only a re-hash. A file that changes while it is hashed is not cached. The file
cache is best effort: unreadable or unwritable, the digest is just computed.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

CACHE_FILE_NAME = "model-digests.json"
CACHE_LIMIT = 256  # fingerprints kept in the file (the newest)
_DOC_PREFIXES = ("readme", "license", "licence", "notice")

_memory: dict[str, str] = {}
_lock = threading.Lock()


def model_files(folder: Path) -> list[Path]:
    """The files that make up a model, relative to its folder, sorted."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            lowered = name.lower()
            if name.startswith(".") or lowered.endswith(".md") or lowered.startswith(_DOC_PREFIXES):
                continue
            path = Path(root, name)
            if path.is_file():
                found.append(path.relative_to(folder))
    return sorted(found, key=lambda p: p.as_posix())


def _fingerprint(folder: Path, files: list[Path]) -> str:
    parts = [str(folder)]
    for rel in files:
        st = (folder / rel).stat()
        parts.append(f"{rel.as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\0{st.st_dev}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def compute_digest(folder: Path, files: list[Path]) -> str:
    """sha256 over (relative path, size, sha256 of content) of every model file."""
    digest = hashlib.sha256()
    for rel in files:
        with open(folder / rel, "rb") as fh:
            content = hashlib.file_digest(fh, "sha256").hexdigest()
        digest.update(f"{rel.as_posix()}\0{(folder / rel).stat().st_size}\0{content}\n".encode())
    return digest.hexdigest()


def cache_file() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "dq_pipeline" / CACHE_FILE_NAME


def _read_cache(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}


def _write_cache(path: Path, fingerprint: str, digest: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = _read_cache(path)
        entries.pop(fingerprint, None)
        entries[fingerprint] = digest  # newest last
        kept = dict(list(entries.items())[-CACHE_LIMIT:])
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(kept, indent=0), encoding="utf-8")
        os.replace(tmp, path)  # atomic: concurrent step processes never read half a file
    except OSError:
        pass


def folder_digest(folder: Path) -> str:
    """The content digest of a model folder (hex sha256), from the cache when every file is unchanged."""
    folder = folder.resolve()
    files = model_files(folder)
    if not files:
        raise ValueError(f"the model folder {folder} holds no model files")
    fingerprint = _fingerprint(folder, files)
    with _lock:
        cached = _memory.get(fingerprint)
    if cached is not None:
        return cached
    store = cache_file()
    cached = _read_cache(store).get(fingerprint)
    if cached is not None:
        with _lock:
            _memory[fingerprint] = cached
        return cached
    digest = compute_digest(folder, files)
    if _fingerprint(folder, files) == fingerprint:  # nothing changed while hashing: safe to remember
        with _lock:
            _memory[fingerprint] = digest
        _write_cache(store, fingerprint, digest)
    return digest


def forget() -> None:
    """Drop the in-memory cache (tests; the file cache stays)."""
    with _lock:
        _memory.clear()
