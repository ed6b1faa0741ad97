from dagster import DynamicPartitionsDefinition

# One partition per catalog id (e.g. "finance/ledger"); added by the CLI and the catalog sensor.
catalog_partitions = DynamicPartitionsDefinition(name="catalogs")

# Steps that open Qdrant claim a slot of this pool: the embedded store admits one process at a time,
# so the default instance (dagster.yaml) limits the pool to 1; a Qdrant server may allow more.
QDRANT_POOL = "dq_qdrant"
