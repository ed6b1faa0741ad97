"""Content-addressed point ids and per-model collection names.

A changed entry gets a new point id, so a failed update never overwrites the committed version's
point: compensation only ever deletes points that did not exist before.
"""

from __future__ import annotations

import hashlib
import re
import uuid

NAMESPACE = uuid.UUID("5d1f3c8e-6b1a-4c0e-9a57-2f0c4e8d7b21")


def point_id(catalog_id: str, entry_key: str, content_hash: str, model_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "\x1f".join((catalog_id, entry_key, content_hash, model_id))))


def collection_name(prefix: str, model_id: str, dimension: int) -> str:
    """One collection per model and dimension: a model change builds a new one beside the old."""
    slug = re.sub(r"[^a-z0-9]+", "-", model_id.lower()).strip("-")[:80]
    digest = hashlib.sha256(model_id.encode()).hexdigest()[:6]
    return f"{prefix}_{slug}_{digest}_{dimension}"


def vector_digest(vector_bytes: bytes) -> str:
    """A short digest of the float32 little-endian bytes the record holds for a point's vector.

    Carried in the point's payload, it lets `verify` prove a point holds the record's vector by
    comparing payloads only (Qdrant may renormalise what it stores, so its own copy of the vector
    is compared within a tolerance, by `verify --deep`)."""
    return hashlib.sha256(vector_bytes).hexdigest()[:16]


def point_payload(
    catalog_id: str, entry_key: str, content_hash: str, model_id: str, kind: str, vector_bytes: bytes, written_by: str | None
) -> dict[str, str | None]:
    """What every point carries: enough to check it against its row (and to filter searches), and
    the run that wrote it (deletes are conditional on it: guard.py)."""
    return {
        "catalog_id": catalog_id,
        "entry_key": entry_key,
        "content_hash": content_hash,
        "model": model_id,
        "kind": kind,
        "vector_digest": vector_digest(vector_bytes),
        "written_by": written_by,
    }
