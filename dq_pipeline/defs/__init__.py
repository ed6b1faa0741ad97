"""The Dagster layer: wires resources to catalog/, embedding/ and sync/, and reports what they did."""
