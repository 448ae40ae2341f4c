"""Audit trail over the Firehose archive (Athena in AWS, DuckDB locally)."""
