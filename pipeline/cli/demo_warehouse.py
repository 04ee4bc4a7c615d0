"""The warehouse half of ``omnistream demo``: run the sink until the snapshot holds every output, then report."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from rich.console import Console

from pipeline.cli.children import start_child, stop_child
from pipeline.settings import Settings
from pipeline.topic_reader import topic_end_total
from sinks.tables import SINK_TOPICS


def run_warehouse(console: Console, settings: Settings, env: dict[str, str], workdir: Path, timeout: float) -> int:
    """Start ``omnistream sink``, wait until its snapshot covers every message of its topics, print the report
    and write ``report.html`` beside it, stop the sink. Returns 0 on success, 1 otherwise."""
    live, snapshot = workdir / "warehouse.duckdb", workdir / "warehouse.snapshot.duckdb"
    for stale in (live, snapshot, live.with_suffix(".duckdb.wal")):
        stale.unlink(missing_ok=True)  # the demo recreates its topics: offsets stored for old ones must go
    sink_env = {
        **env,
        "OMNISTREAM_WAREHOUSE_PATH": str(live),
        "OMNISTREAM_SNAPSHOT_PATH": str(snapshot),
        "OMNISTREAM_SNAPSHOT_INTERVAL_S": "2",
    }
    log_path = workdir / "sink.log"
    sink = start_child("sink", sink_env, log_path)
    try:
        want = sum(topic_end_total(settings.kafka_bootstrap, settings.topic(t)) for t in SINK_TOPICS)
        if not _wait_snapshot(console, snapshot, want, sink, timeout):
            console.print(f"[red]the warehouse snapshot did not catch up (sink log: {log_path})[/]")
            return 1
        _report(console, snapshot, workdir / "report.html")
        return 0
    finally:
        code = stop_child(sink)
        console.print(f"sink stopped with exit code {code} (log: {log_path})")


def _wait_snapshot(console: Console, snapshot: Path, want: int, sink: subprocess.Popen[bytes], timeout: float) -> bool:
    import duckdb

    from sinks.snapshot import NoSnapshotError, open_snapshot

    deadline = time.monotonic() + timeout
    have = 0
    with console.status("warehouse sink catching up") as status:
        while time.monotonic() < deadline and sink.poll() is None:
            try:
                with open_snapshot(snapshot) as con:
                    row = con.execute("SELECT coalesce(sum(next_offset), 0) FROM _sink_offsets").fetchone()
                have = int(row[0]) if row else 0
            except (NoSnapshotError, duckdb.Error):  # not published yet, or being replaced: try again
                have = 0
            status.update(f"warehouse sink catching up: {have}/{want} messages in the snapshot")
            if have >= want:
                console.print(f"warehouse snapshot holds all {want} messages of {len(SINK_TOPICS)} topics")
                return True
            time.sleep(1)
    return False


def _report(console: Console, snapshot: Path, html_path: Path) -> None:
    from pipeline.reports import html, terminal
    from pipeline.reports.model import collect
    from sinks.snapshot import open_snapshot

    with open_snapshot(snapshot) as con:
        data = collect(con)
    terminal.render(data, Console(width=max(console.width, 100)))  # the report is laid out for 100 columns
    html_path.write_text(html.render(data), encoding="utf-8")
    console.print(f'HTML report: {html_path}  ·  query it: omnistream sql --snapshot {snapshot} "…"')
