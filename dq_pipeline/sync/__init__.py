"""The write protocol and the stores it keeps in sync (no Dagster here)."""

from .hooks import Hooks, SimulatedCrash
from .plan import committed_source_digests, stored_dimension, stored_hashes
from .protocol import SyncFailed, SyncResult
from .qdrant_index import EmbeddedQdrantBusy, IndexWriteError
from .reconcile import CatalogVerification, RepairResult
from .review import UnknownEntries
from .search import Hit
from .store import SyncedStore, open_record

__all__ = [
    "CatalogVerification",
    "EmbeddedQdrantBusy",
    "Hit",
    "Hooks",
    "IndexWriteError",
    "RepairResult",
    "SimulatedCrash",
    "SyncFailed",
    "SyncResult",
    "SyncedStore",
    "UnknownEntries",
    "committed_source_digests",
    "open_record",
    "stored_dimension",
    "stored_hashes",
]
