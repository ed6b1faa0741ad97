"""The write protocol and the stores it keeps in sync (no Dagster here)."""

from .services.reconcile import CatalogVerification, RepairResult
from .services.review import UnknownEntries
from .services.search import Hit
from .store import SyncedStore, open_record, recorded_catalog_ids
from .stores.qdrant_index import EmbeddedQdrantBusy, IndexWriteError
from .stores.vector_index import InMemoryIndex, VectorIndex
from .write.hooks import Hooks, SimulatedCrash
from .write.locks import LockLost, LockTimeout
from .write.plan import committed_source_digests, new_contents, rebatched, stored_dimension, stored_hashes
from .write.protocol import Source, SyncFailed, SyncResult

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
from .services import refusals  # noqa: E402

__all__ += ["refusals"]

# Modules the Dagster layer and the CLI use as a whole (the model roles, the vector cache).
from .stores import vector_cache  # noqa: E402
from .write import model_roles  # noqa: E402

__all__ += ["model_roles", "vector_cache"]
