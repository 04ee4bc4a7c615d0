"""``omnistream export parquet`` and ``omnistream sql`` on a snapshot built by the real sink."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import duckdb
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.reports import export
from pipeline.reports.model import collect
from sinks.snapshot import open_snapshot
from tests.unit.test_report import build_snapshot


def test_export_writes_the_live_views_by_business_date_without_tombstones(tmp_path: Path) -> None:
    snap = build_snapshot(tmp_path, customers=60)
    merged = "UPDATE sessions SET status = 'merged', merged_into = 's:0:0' WHERE session_id LIKE 's:1%'"
    with duckdb.connect(str(snap)) as con:  # plant tombstones as the sink keeps them
        con.execute(merged)
    out = tmp_path / "parquet"
    for _ in range(2):  # a re-export replaces, never doubles
        result = CliRunner().invoke(app, ["export", "parquet", str(out), "--snapshot", str(snap)])
        assert result.exit_code == 0, result.output
    with open_snapshot(snap) as con:
        tombstones = con.execute("SELECT count(*) FROM sessions WHERE status = 'merged'").fetchone()
        views = {v for (v,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        want = {
            name: con.execute(f"SELECT count(*) FROM {name}").fetchone()
            for name in ("live_sessions", "customers", "signals", "daily_channel_metrics", "campaign_outcomes")
        }
    assert tombstones is not None and tombstones[0] > 0
    assert not (out / "sessions").exists()  # the raw table with its tombstones is not exported
    assert views - {"daily_channel_events"} <= {p.name for p in out.iterdir()}  # every view whose tables exist
    reader = duckdb.connect()
    for name, count in want.items():
        got = reader.execute(f"SELECT count(*) FROM read_parquet('{out}/{name}/*/*.parquet')").fetchone()
        assert got == count, name
    status = reader.execute(
        f"SELECT count(*) FILTER (WHERE status = 'merged'), count(*) FILTER (WHERE date <> CAST(start_ms AS DATE)) "
        f"FROM read_parquet('{out}/live_sessions/*/*.parquet', hive_partitioning = true)"
    ).fetchone()
    assert status == (0, 0)  # no tombstone; every row in the partition of the day its session started
    days = reader.execute(
        f"SELECT count(DISTINCT date), count(*) FILTER (WHERE date <> day) "
        f"FROM read_parquet('{out}/daily_channel_metrics/*/*.parquet', hive_partitioning = true)"
    ).fetchone()
    assert days is not None and days[0] > 1 and days[1] == 0


def test_export_refuses_the_raw_sessions_table(tmp_path: Path) -> None:
    snap = build_snapshot(tmp_path, customers=10)
    result = CliRunner().invoke(
        app, ["export", "parquet", str(tmp_path / "out"), "--snapshot", str(snap), "--tables", "sessions"]
    )
    assert result.exit_code == 2 and "live_sessions" in result.output


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


def test_sql_csv_and_a_table_printed_to_a_pipe_keep_whole_values(tmp_path: Path) -> None:
    snap = build_snapshot(tmp_path, customers=30)
    query = "SELECT session_id, CAST(start_ms AS VARCHAR) AS started, channel_path FROM sessions ORDER BY 1"
    with open_snapshot(snap) as con:
        want = con.execute(query).fetchall()
    csv_out = CliRunner().invoke(app, ["sql", query, "--snapshot", str(snap), "--format", "csv"])
    assert csv_out.exit_code == 0, csv_out.output
    assert [tuple(r) for r in csv.reader(io.StringIO(csv_out.output))][1:] == want
    table = CliRunner().invoke(app, ["sql", query, "--snapshot", str(snap)])  # not a TTY: laid out wide
    assert table.exit_code == 0 and "…" not in table.output
    assert all(sid in table.output and started in table.output for sid, started, _path in want)
    bad = CliRunner().invoke(app, ["sql", "SELECT 1", "--snapshot", str(snap), "--format", "xml"])
    assert bad.exit_code == 2 and "xml" in bad.output


def test_report_json_and_csv_carry_every_section(tmp_path: Path) -> None:
    snap = build_snapshot(tmp_path, customers=120)
    doc = CliRunner().invoke(app, ["report", "--snapshot", str(snap), "--format", "json"])
    assert doc.exit_code == 0, doc.output
    sections = json.loads(doc.output)["sections"]
    with open_snapshot(snap) as con:
        data = collect(con)
    assert sections.keys() == export.sections(data).keys()
    assert len(sections["funnel"]) == len(data.funnel) > 0
    long = CliRunner().invoke(app, ["report", "--snapshot", str(snap), "--format", "csv"])
    assert long.exit_code == 0, long.output
    rows = list(csv.DictReader(io.StringIO(long.output)))
    funnel = [r for r in rows if r["section"] == "funnel"]
    assert len(funnel) == len(data.funnel) * len(data.funnel.columns)
    assert {r["column"] for r in funnel} == set(data.funnel.columns)


def test_an_export_is_recorded_so_erasure_can_name_it(tmp_path: Path, monkeypatch: Any) -> None:
    from pipeline.cli.privacy import _exports
    from pipeline.settings import load_settings

    snap = build_snapshot(tmp_path, customers=20)
    monkeypatch.setenv("OMNISTREAM_STATE_DIR", str(tmp_path / "state"))
    outs = [tmp_path / "first", tmp_path / "second"]
    for out in outs:
        result = CliRunner().invoke(app, ["export", "parquet", str(out), "--snapshot", str(snap)])
        assert result.exit_code == 0, result.output
    assert _exports(load_settings()) == sorted(p.resolve() for p in outs)
    import shutil

    shutil.rmtree(outs[0])  # deleted by the operator: no longer listed
    assert _exports(load_settings()) == [outs[1].resolve()]
