"""Export what marketing queries as Hive-partitioned Parquet by business date (``<out>/<name>/date=YYYY-MM-DD/``).

For users who outgrow one machine: Spark, Trino, Athena or any DuckDB read the layout directly
(``read_parquet('<out>/live_sessions/*/*.parquet', hive_partitioning = true)``). Reads a read-only snapshot, so
it runs next to the live sink without lock errors.

What is exported are the **live views and the tables without tombstones** (``EXPORTS``), never the raw
``sessions`` table: its merged tombstones (sessions absorbed into another, kept so a late lower version cannot
resurrect them) would count twice in any engine that does not know the rule. ``date`` is the **business
date**: the UTC day of an event-time column (when it happened), never of a processing time, so a late or
replayed event lands in the partition of the day it happened. Not exported: ``failed_events`` (no event
time; operations read them with ``omnistream failed``) and the underscore bookkeeping tables.

Guarantees: each relation's directory is written by one ``COPY`` and replaced as a whole (``OVERWRITE``): a
re-export of the same snapshot gives the same files, never doubled rows. Does not guarantee: an atomic switch
of the whole directory for readers already listing it (export to a new directory and swap it if they do).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb

from sinks.duckdb_schema import quote

#: Exported relation -> the event-time column (TIMESTAMP or DATE) whose UTC day is its ``date`` partition.
EXPORTS: dict[str, str] = {
    "live_sessions": "start_ms",
    "customers": "updated_at",
    "journey_transitions": "event_time",
    "signals": "event_time",
    "identity_merges": "event_time",
    "customer_events": "event_time",
    "daily_channel_metrics": "day",
    "session_baskets": "day",
    "campaign_exposures": "day",
    "campaign_outcomes": "event_time",
    "daily_channel_events": "day",
    "order_lines": "event_time",
    "purchases": "event_time",
}

#: Raw tables a user may ask for by habit, and what to export instead.
INSTEAD = {"sessions": "live_sessions"}


def export_parquet(
    con: duckdb.DuckDBPyConnection,
    out: Path,
    tables: list[str] | None = None,
    progress: Callable[[str, int], None] = lambda table, rows: None,
) -> dict[str, int]:
    """Write every present relation of ``EXPORTS`` (or those named in ``tables``) under ``out``; returns rows
    written per relation. Raises ValueError for a name that is not exported or not in this snapshot."""
    present = {
        r[0]
        for r in con.execute(
            """SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'
               UNION ALL SELECT view_name FROM duckdb_views() WHERE schema_name = 'main' AND NOT internal"""
        ).fetchall()
    }
    wanted = tables or [t for t in EXPORTS if t in present]
    unknown = [t for t in wanted if t not in EXPORTS or t not in present]
    if unknown:
        hints = "".join(f"; {t} holds tombstones, export {INSTEAD[t]}" for t in unknown if t in INSTEAD)
        raise ValueError(
            f"cannot export {unknown}: not an exported relation of this snapshot "
            f"(available: {sorted(present & set(EXPORTS))}){hints}"
        )
    written: dict[str, int] = {}
    for name in wanted:
        target = out / name
        target.mkdir(parents=True, exist_ok=True)
        date = quote(EXPORTS[name])
        sql = (
            f"COPY (SELECT *, CAST({date} AS DATE) AS date FROM {quote(name)}) TO '{_sql_str(target)}' "
            "(FORMAT parquet, PARTITION_BY (date), OVERWRITE)"
        )
        row = con.execute(sql).fetchone()
        written[name] = int(row[0]) if row else 0
        progress(name, written[name])
    return written


def _sql_str(path: Path) -> str:
    return str(path).replace("'", "''")
