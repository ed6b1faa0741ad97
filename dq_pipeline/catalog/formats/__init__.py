"""Catalog formats: each module turns one kind of file into located records or entries."""
