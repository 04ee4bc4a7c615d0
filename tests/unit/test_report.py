"""The report over a small warehouse built by the real sink: terminal in 100 columns, HTML charts, uplift CI."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from rich.console import Console

from pipeline.reports import html, terminal
from pipeline.reports.model import Report, collect
from pipeline.reports.uplift import uplift
from schemas.registry import FileSchemaRegistry
from sinks import synthetic as syn
from sinks.contract import Batch, SinkRow
from sinks.duckdb_sink import DuckDBSink
from sinks.snapshot import open_snapshot
from sinks.tables import DEFAULT_TABLES, TABLES, bind_tables


def build_snapshot(tmp: Path, customers: int = 400) -> Path:
    sink = DuckDBSink(tmp / "live.duckdb", tmp / "snap.duckdb", bind_tables(DEFAULT_TABLES, str, FileSchemaRegistry()))
    sink.open()
    batch = Batch()
    for table, records in syn.world(random.Random(4), customers).items():
        for offset, record in enumerate(records):
            batch.rows.append(SinkRow(table, TABLES[table].topic, 0, offset, record))
            batch.add_offset(TABLES[table].topic, 0, offset)
    sink.write(batch)
    sink.publish()
    sink.close()
    return tmp / "snap.duckdb"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    with open_snapshot(build_snapshot(tmp_path_factory.mktemp("wh"))) as con:
        return collect(con)


def test_terminal_report_fits_100_columns(report: Report) -> None:
    console = Console(width=100, record=True, force_terminal=False)
    terminal.render(report, console)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 100
    for title in ("Funnel by channel", "Churn risk", "Market basket", "Uplift vs randomised holdout", "Data quality"):
        assert title in text
    assert "p-000" in text  # the planted pair tops the basket table


def test_sections_hold_the_numbers_of_the_warehouse(report: Report) -> None:
    funnel = {r[0]: r[1:] for r in report.funnel.rows}
    for sessions, cart, checkout, purchase in funnel.values():
        assert sessions >= cart >= checkout >= purchase > 0
    top = report.rules.rows[0]
    assert {top[0], top[1]} == {"p-000", "p-001"} and top[5] > 1.2
    assert {u.arm for u in report.uplifts} <= set(syn.SIGNAL_TYPES) and report.uplifts
    assert {r[0] for r in report.cross_vs_single.rows} == {"cross-channel", "single-channel"}


def test_html_report_is_self_contained_with_every_chart(report: Report) -> None:
    page = html.render(report)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page must not load anything"
    for chart in html.CHARTS:
        figure = re.search(rf"data-chart='{chart}'>(.*?)</figure>", page, re.S)
        assert figure is not None and 'class="mark"' in figure.group(1), chart


def test_uplift_interval_matches_newcombe_1998() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80, method 10: 0.0524 to 0.3339.
    u = uplift("example", 70, 56, 80, 48)
    assert u.uplift == pytest.approx(0.2)
    assert (round(u.low, 4), round(u.high, 4)) == (0.0524, 0.3339)
    assert u.significant


def test_uplift_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="between 0 and the group size"):
        uplift("bad", 10, 11, 10, 1)
