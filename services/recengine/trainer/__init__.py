"""The incremental trainer."""
