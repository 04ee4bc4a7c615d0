"""Sinks: one writer contract, a DuckDB implementation."""
