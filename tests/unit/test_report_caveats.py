"""The report says in words what a reader must know: money per currency, small samples, degenerate fits,
why a section is empty; charts name their axes and units, counts print as integers."""

from __future__ import annotations

import json
import random
import re
from html import escape
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.models.bgnbd import BgParams
from pipeline.models.gammagamma import GgParams
from pipeline.models.params import ModelParams, save
from pipeline.reports import caveats, html, svg, terminal
from pipeline.reports.model import collect
from pipeline.reports.queries import Frame
from schemas.registry import FileSchemaRegistry
from sinks import synthetic as syn
from sinks.contract import Batch, SinkRow
from sinks.duckdb_sink import DuckDBSink
from sinks.snapshot import open_snapshot
from sinks.tables import DEFAULT_TABLES, TABLES, bind_tables
from tests.unit.test_report import build_snapshot

T0 = 1_700_000_000_000


def snapshot_of(tmp: Path, records: dict[str, list[dict[str, Any]]]) -> Path:
    """A snapshot the real sink wrote from ``records`` per table."""
    sink = DuckDBSink(tmp / "live.duckdb", tmp / "snap.duckdb", bind_tables(DEFAULT_TABLES, str, FileSchemaRegistry()))
    sink.open()
    batch = Batch()
    for table, rows in records.items():
        for offset, record in enumerate(rows):
            batch.rows.append(SinkRow(table, TABLES[table].topic, 0, offset, record))
            batch.add_offset(TABLES[table].topic, 0, offset)
    sink.write(batch)
    sink.publish()
    sink.close()
    return tmp / "snap.duckdb"


def params(a: float = 0.793, q: float = 3.74, p: float = 6.25) -> ModelParams:
    # CDNOW's published BG/NBD and Gamma-Gamma estimates, unless a test makes one degenerate.
    return ModelParams(
        "test-1", "bgnbd", BgParams(0.243, 4.414, a, 2.426), GgParams(p, q, 15.44), 7.0, -9582.4, 2357,
        "1997-09-30", "2026-01-01T00:00:00Z",
    )  # fmt: skip


def test_money_is_shown_per_currency_never_added(tmp_path: Path) -> None:
    rng = random.Random(1)
    sessions = []
    for i in range(6):
        s = syn.session(rng, f"s{i}", f"c:{i}", T0 + i * 1000, bought=["p-1"] * (i + 1))
        s["products_bought"] = ["p-1"]
        s["revenue_minor"] = 1000 * (i + 1)
        s["currency"] = "EUR" if i % 2 else "USD"
        sessions.append(s)
    snap = snapshot_of(tmp_path, {"sessions": sessions})
    with open_snapshot(snap) as con:
        report = collect(con)
        want = dict(con.execute("SELECT currency, sum(revenue_minor) FROM sessions GROUP BY 1").fetchall())
    assert want == {"EUR": 12_000, "USD": 9_000}
    headline = dict(zip(report.headline.columns, report.headline.rows[0], strict=True))
    assert headline["revenue"] == "EUR 120.00; USD 90.00"
    per_currency: dict[str, float] = {}
    for currency, _journey, _sessions, revenue in report.revenue.rows:
        per_currency[currency] = per_currency.get(currency, 0) + revenue
    assert per_currency == {c: v / 100 for c, v in want.items()}
    page = html.render(report)
    assert "EUR 120.00; USD 90.00" in page and "210.00" not in page


def test_small_samples_are_flagged_with_their_base() -> None:
    frame = Frame(("path", "sessions", "conversion_pct"), [("web>store", 7, 42.86), ("web>mobile", 300, 50.0)])
    notes = caveats.percentage_caveats(frame, "path", "sessions", "session")
    assert len(notes) == 1
    assert "web>store" in notes[0] and "only 7 sessions" in notes[0] and "14 points" in notes[0]
    assert caveats.small_base("x", caveats.MIN_SAMPLE, "session") is None


def test_a_small_warehouse_gets_caveats_in_every_output(tmp_path: Path) -> None:
    snap = build_snapshot(tmp_path, customers=6)
    with open_snapshot(snap) as con:
        report = collect(con)
    assert any("fewer than 30" in n for n in report.notes["cross_vs_single"])
    console = Console(width=100, record=True, force_terminal=False)
    terminal.render(report, console)
    text = " ".join(console.export_text().split())
    page = html.render(report)
    for note in report.notes["cross_vs_single"]:
        assert note in text
        assert escape(note) in page
    doc = CliRunner().invoke(app, ["report", "--snapshot", str(snap), "--format", "json"])
    assert json.loads(doc.output)["notes"] == report.notes


def profiles(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [syn.profile(f"c:{i}", 1, T0, **extra) for i in range(n)]


def churn_signal(i: int, holdout: bool) -> dict[str, Any]:
    rng = random.Random(i)
    record = next(
        s for s in syn.world(rng, 30)["signals"] if s["signal_type"] == "churn_risk"
    )  # a valid churn_risk record, re-aimed at customer i
    return {**record, "signal_id": f"g{i}", "customer_id": f"c:{i}", "holdout": holdout}


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        ({"customers": []}, "no customer profile"),
        ({"customers": profiles(4)}, "none of the 4 customers has bought"),
        ({"customers": profiles(4, purchase_days=2, revenue_minor=500, currency="EUR")}, "without model parameters"),
        ({"customers": profiles(4, purchase_days=2, p_alive=0.9)}, "none has entered the churn band"),
        (
            {"customers": profiles(4, purchase_days=2, p_alive=0.1), "signals": [churn_signal(0, True)]},
            "all 1 churn-risk signals went to the randomised holdout",
        ),
    ],
)
def test_an_empty_churn_table_says_why(tmp_path: Path, records: dict[str, list[dict[str, Any]]], reason: str) -> None:
    with open_snapshot(snapshot_of(tmp_path, records)) as con:
        report = collect(con)
    assert report.churn.rows == []
    assert any(reason in n for n in report.notes["churn"]), report.notes.get("churn")


def test_a_degenerate_fit_is_named_where_its_scores_are_shown(tmp_path: Path) -> None:
    assert caveats.fit_caveats(params()) == []
    bad_bg = caveats.fit_caveats(params(a=1.2e5))
    assert len(bad_bg) == 1 and "degenerate" in bad_bg[0] and "a = 1.2e+05" in bad_bg[0]
    bad_gg = caveats.fit_caveats(params(p=9e6))
    assert len(bad_gg) == 1 and "spend model" in bad_gg[0] and "p = 9e+06" in bad_gg[0]
    assert "CLV is not computed" in caveats.fit_caveats(params(q=0.8))[0]

    snap = build_snapshot(tmp_path, customers=40)
    model = tmp_path / "btyd.json"
    save(params(a=1.2e5), model)
    result = CliRunner().invoke(
        app,
        ["report", "--snapshot", str(snap), "--format", "json"],
        env={"OMNISTREAM_MODEL_PARAMS_PATH": str(model)},
    )
    assert result.exit_code == 0, result.output
    notes = json.loads(result.output)["notes"]
    assert any("a = 1.2e+05" in n for n in notes["churn"]) and any("a = 1.2e+05" in n for n in notes["clv"])


def test_charts_name_their_axes_and_count_in_integers(tmp_path: Path) -> None:
    assert (svg.num(6.0), svg.num(1234.0), svg.num(1.5)) == ("6", "1,234", "1.50")
    with open_snapshot(build_snapshot(tmp_path, customers=120)) as con:
        page = html.render(collect(con))
    for chart in html.CHARTS:
        figure = re.search(rf"data-chart='{chart}'>(.*?)</figure>", page, re.S)
        assert figure is not None, chart
        titles = re.findall(r'class="axis-title"[^>]*>([^<]+)<', figure.group(1))
        assert titles and all(t.strip() for t in titles), chart
        # every axis title says its unit or measure in parentheses, or is a plain category axis
        assert any("(" in t for t in titles), (chart, titles)
    counts = re.search(r"data-chart='rfm'>(.*?)</figure>", page, re.S)
    assert counts is not None
    labels = re.findall(r'font-size="11">([\d,.]+)</text>', counts.group(1))
    assert labels and all("." not in label for label in labels)


def test_every_section_of_an_empty_warehouse_says_why_it_is_empty(tmp_path: Path) -> None:
    with open_snapshot(snapshot_of(tmp_path, {})) as con:
        report = collect(con)
    explained = ("headline", "funnel", "cross_vs_single", "revenue", "paths", "stages", "churn", "clv", "rfm",
                 "basket", "engagement", "uplift")  # fmt: skip
    for section in explained:
        assert report.notes_for(section), section
    page = html.render(report)
    assert page.count("class='caveat'") >= len(explained)
    assert "no customer profile" in page and "No basket yet" in page
