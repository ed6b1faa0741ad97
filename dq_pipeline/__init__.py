"""dq_pipeline: a data-catalog search index kept provably in sync with its system of record."""

__version__ = "0.1.0"
