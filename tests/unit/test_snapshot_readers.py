"""Snapshots open in the DuckDB CLI from PyPI (``duckdb-cli``, a dev dependency), not only in this DuckDB.

The CLI lags the Python client (duckdb-cli 1.5.x reads storage versions 64-68; DuckDB 2.0 writes 69 by
default), so this reads a snapshot the real sink published with the real CLI binary.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from sinks.snapshot import STORAGE_VERSION, open_snapshot, publish_snapshot, readable_by, storage_of
from tests.unit.test_report import build_snapshot


def duckdb_cli() -> str:
    beside = Path(sys.executable).with_name("duckdb")  # the venv's bin/, where pip puts duckdb-cli
    path = str(beside) if beside.is_file() else shutil.which("duckdb")
    assert path, "the DuckDB CLI is required: pip install duckdb-cli (in the dev extras)"
    return path


def cli(snapshot: Path, sql: str) -> list[dict[str, str]]:
    done = subprocess.run(
        [duckdb_cli(), "-readonly", "-csv", str(snapshot), "-c", sql], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return list(csv.DictReader(io.StringIO(done.stdout)))


QUERY = """SELECT (SELECT count(*) FROM customers) AS customers, (SELECT count(*) FROM live_sessions) AS live,
                  (SELECT count(*) FROM daily_channel_metrics) AS days,
                  (SELECT sum(revenue_minor) FROM sessions) AS revenue"""


def test_the_duckdb_cli_reads_a_snapshot_the_sink_published(tmp_path: Path) -> None:
    snap = build_snapshot(tmp_path, customers=80)
    with open_snapshot(snap) as con:
        want = con.execute(QUERY).fetchone()
        assert readable_by(storage_of(con), STORAGE_VERSION)
    assert want is not None and want[0] == 80 and want[1] > 0
    got = cli(snap, QUERY)
    assert [tuple(int(v) for v in row.values()) for row in got] == [want]


def test_a_live_file_in_the_readers_format_is_published_by_a_plain_copy(tmp_path: Path) -> None:
    live, snap = tmp_path / "live.duckdb", tmp_path / "snap.duckdb"
    con = duckdb.connect(str(live), config={"storage_compatibility_version": STORAGE_VERSION})
    con.execute("CREATE TABLE t AS SELECT range AS i FROM range(1000)")
    info = publish_snapshot(con, live, snap)
    assert info.how in {"copy", "reflink"}
    assert cli(snap, "SELECT sum(i) AS s FROM t") == [{"s": str(sum(range(1000)))}]


def test_a_live_file_in_a_newer_format_is_converted(tmp_path: Path) -> None:
    live, snap = tmp_path / "live.duckdb", tmp_path / "snap.duckdb"
    con = duckdb.connect(str(live), config={"storage_compatibility_version": "latest"})
    if readable_by(storage_of(con), STORAGE_VERSION):
        pytest.fail(f"this DuckDB ({duckdb.__version__}) writes no format newer than {STORAGE_VERSION}")
    con.execute("CREATE TABLE t AS SELECT range AS i, [range] AS l FROM range(1000)")
    info = publish_snapshot(con, live, snap)
    assert info.how == "attach"
    with open_snapshot(snap) as reader:
        assert readable_by(storage_of(reader), STORAGE_VERSION)
    assert cli(snap, "SELECT count(*) AS n, sum(len(l)) AS m FROM t") == [{"n": "1000", "m": "1000"}]
    con.execute("INSERT INTO t VALUES (1000, [])")  # the live file stays writable after the conversion
    publish_snapshot(con, live, snap)
    assert cli(snap, "SELECT count(*) AS n FROM t") == [{"n": "1001"}]
