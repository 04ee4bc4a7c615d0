"""``omnistream sql`` and ``omnistream export parquet``: read the warehouse snapshot, never the live file.

Both open the snapshot the sink publishes read-only, so they run while the sink writes, without lock errors.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli.formats import OutputFormat, console_for, records, write_csv, write_json
from pipeline.cli.sink import warehouse_snapshot_path
from pipeline.settings import load_settings

if TYPE_CHECKING:
    import duckdb

export_app = typer.Typer(help="Export the warehouse snapshot for other engines.", no_args_is_help=True)

SnapshotOption = Annotated[
    Path | None, typer.Option(help="Snapshot to read (default: warehouse.snapshot.duckdb in the state dir)")
]


def sql(
    query: Annotated[str, typer.Argument(help='SQL to run, e.g. "SELECT * FROM daily_channel_metrics"')],
    snapshot: SnapshotOption = None,
    output: Annotated[OutputFormat, typer.Option("--format", help="table, csv or json")] = OutputFormat.table,
    limit: Annotated[int, typer.Option(min=1, help="Rows shown at most in table format")] = 200,
) -> None:
    """Run a read-only SQL query against the latest warehouse snapshot (docs/warehouse.md lists the tables)."""
    import duckdb

    from sinks.snapshot import published_at_ms

    path = snapshot or warehouse_snapshot_path(load_settings())
    console = console_for()
    con = open_snapshot_or_exit(path, console)
    with con:
        try:
            cur = con.execute(query)
        except duckdb.Error as error:
            console.print(f"[red]{type(error).__name__}[/]: {error}")
            raise typer.Exit(2) from error
        columns = [d[0] for d in cur.description or ()]
        rows = cur.fetchall()
        published = published_at_ms(con)
    if output is OutputFormat.json:
        write_json(records(columns, rows))
    elif output is OutputFormat.csv:
        write_csv(columns, rows)
    else:
        table = Table(*columns)
        for row in rows[:limit]:
            table.add_row(*("NULL" if v is None else str(v) for v in row))
        console.print(table)
        age = f"{time.time() - published / 1000:.0f}s old" if published else "age unknown"
        console.print(f"[dim]{len(rows)} rows · snapshot {path} ({age})[/]")


@export_app.command("parquet")
def parquet(
    out: Annotated[Path, typer.Argument(help="Output directory (one sub-directory per view or table)")] = Path(
        "warehouse-parquet"
    ),
    snapshot: SnapshotOption = None,
    tables: Annotated[
        str | None, typer.Option(help="Comma-separated views or tables (default: all the live ones present)")
    ] = None,
) -> None:
    """Write the live views and tables (no merged tombstones) as Hive-partitioned Parquet by business date,
    <out>/<name>/date=YYYY-MM-DD/ (the UTC day of the event time), readable by Spark, Trino or DuckDB
    (read_parquet('<out>/live_sessions/*/*.parquet', hive_partitioning=true))."""
    from sinks.export import export_parquet

    settings = load_settings()
    path = snapshot or warehouse_snapshot_path(settings)
    console = Console()
    con = open_snapshot_or_exit(path, console)
    names = [t.strip() for t in tables.split(",") if t.strip()] if tables else None
    with con, console.status("exporting") as status:
        try:
            written = export_parquet(con, out, names, progress=lambda t, n: status.update(f"exported {t} ({n:,} rows)"))
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--tables") from error
    for table, rows in written.items():
        console.print(f"  {table:<22} {rows:>10,} rows -> {out / table}")
    record_export(settings.state_dir, out)


def record_export(state_dir: Path, out: Path) -> None:
    """Note the export in ``<state dir>/exports.jsonl``: it holds personal data that erasure cannot reach, so
    ``omnistream privacy erase`` lists the exports written before it (docs/privacy.md)."""
    import json

    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "exports.jsonl").open("a") as log:
        log.write(json.dumps({"path": str(out.resolve()), "at": int(time.time() * 1000)}) + "\n")


def open_snapshot_or_exit(path: Path, console: Console) -> duckdb.DuckDBPyConnection:
    """Open the published snapshot read-only, or tell the user to start the sink and exit 1."""
    from sinks.snapshot import NoSnapshotError, open_snapshot

    try:
        return open_snapshot(path)
    except NoSnapshotError as error:
        console.print(f"[red]{error}[/]: start `omnistream sink` first")
        raise typer.Exit(1) from error
