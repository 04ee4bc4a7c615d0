"""``omnistream export parquet`` and ``omnistream sql`` on a snapshot built by the real sink."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
from typer.testing import CliRunner

from pipeline.cli import app
from sinks.snapshot import open_snapshot
from tests.unit.test_report import build_snapshot


def test_export_writes_hive_partitions_with_every_row(tmp_path: Path) -> None:
    snap = build_snapshot(tmp_path, customers=60)
    out = tmp_path / "parquet"
    for _ in range(2):  # a re-export replaces, never doubles
        result = CliRunner().invoke(app, ["export", "parquet", str(out), "--snapshot", str(snap)])
        assert result.exit_code == 0, result.output
    assert list((out / "sessions").glob("date=*/*.parquet"))
    with open_snapshot(snap) as con:
        want = con.execute("SELECT count(*), count(DISTINCT CAST(start_ms AS DATE)) FROM sessions").fetchone()
    got = (
        duckdb.connect()
        .execute(f"SELECT count(*), count(DISTINCT date) FROM read_parquet('{out}/sessions/*/*.parquet')")
        .fetchone()
    )
    assert got == want


def test_sql_reads_the_snapshot(tmp_path: Path) -> None:
    snap = build_snapshot(tmp_path, customers=30)
    result = CliRunner().invoke(
        app, ["sql", "SELECT count(*) AS n FROM customers", "--snapshot", str(snap), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"n": 30}]
    bad = CliRunner().invoke(app, ["sql", "SELECT * FROM nope", "--snapshot", str(snap)])
    assert bad.exit_code == 2 and "CatalogException" in bad.output
    missing = CliRunner().invoke(app, ["sql", "SELECT 1", "--snapshot", str(tmp_path / "none.duckdb")])
    assert missing.exit_code == 1
