"""The write protocol and the stores it keeps in sync (no Dagster here)."""

from .hooks import Hooks, SimulatedCrash
from .locks import LockLost, LockTimeout
from .plan import committed_source_digests, new_contents, rebatched, stored_dimension, stored_hashes
from .protocol import Source, SyncFailed, SyncResult
from .qdrant_index import EmbeddedQdrantBusy, IndexWriteError
from .reconcile import CatalogVerification, RepairResult
from .review import UnknownEntries
from .search import Hit
from .store import SyncedStore, open_record, recorded_catalog_ids
from .vector_index import InMemoryIndex, VectorIndex

__all__ = [
    "recorded_catalog_ids",
    "InMemoryIndex",
    "VectorIndex",
    "CatalogVerification",
    "EmbeddedQdrantBusy",
    "Hit",
    "Hooks",
    "IndexWriteError",
    "LockLost",
    "LockTimeout",
    "RepairResult",
    "SimulatedCrash",
    "Source",
    "SyncFailed",
    "SyncResult",
    "SyncedStore",
    "UnknownEntries",
    "committed_source_digests",
    "new_contents",
    "rebatched",
    "open_record",
    "stored_dimension",
    "stored_hashes",
]

# Registers dq_refusals and dq_catalog_reads on schema.metadata before create_schema runs.
from . import refusals  # noqa: E402

__all__ += ["refusals"]
