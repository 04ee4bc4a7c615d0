"""Export the warehouse snapshot as Hive-partitioned Parquet (``<out>/<table>/date=YYYY-MM-DD/*.parquet``).

For users who outgrow one machine: Spark, Trino, Athena or any DuckDB read the layout directly
(``read_parquet('<out>/sessions/*/*.parquet', hive_partitioning = true)``). Reads a read-only snapshot, so it
runs next to the live sink without lock errors.

Guarantees: each table's directory is written by one ``COPY`` and replaced as a whole (``OVERWRITE``): a
re-export of the same snapshot gives the same files, never doubled rows. Does not guarantee: an atomic switch
of the whole directory for readers already listing it (export to a new directory and swap it if they do).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb

from sinks.duckdb_schema import quote

#: Table -> the timestamp column whose UTC date partitions it.
DATE_COLUMNS: dict[str, str] = {
    "sessions": "start_ms",
    "journey_transitions": "event_time",
    "signals": "event_time",
    "customers": "updated_at",
    "identity_merges": "event_time",
    "failed_events": "failed_at",
    "customer_events": "event_time",
}


def export_parquet(
    con: duckdb.DuckDBPyConnection,
    out: Path,
    tables: list[str] | None = None,
    progress: Callable[[str, int], None] = lambda table, rows: None,
) -> dict[str, int]:
    """Write every present table (or ``tables``) under ``out``; returns rows written per table."""
    present = {
        r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()
    }
    wanted = tables or [t for t in DATE_COLUMNS if t in present]
    unknown = [t for t in wanted if t not in DATE_COLUMNS or t not in present]
    if unknown:
        raise ValueError(
            f"cannot export {unknown}: not in this snapshot (tables: {sorted(present & set(DATE_COLUMNS))})"
        )
    written: dict[str, int] = {}
    for table in wanted:
        target = out / table
        target.mkdir(parents=True, exist_ok=True)
        date = quote(DATE_COLUMNS[table])
        sql = (
            f"COPY (SELECT *, CAST({date} AS DATE) AS date FROM {quote(table)}) TO '{_sql_str(target)}' "
            "(FORMAT parquet, PARTITION_BY (date), OVERWRITE)"
        )
        row = con.execute(sql).fetchone()
        written[table] = int(row[0]) if row else 0
        progress(table, written[table])
    return written


def _sql_str(path: Path) -> str:
    return str(path).replace("'", "''")
