"""Purchase-file layouts: the CDNOW sample (5 columns), the full CDNOW layout without sample id (4 columns: CDs,
then dollars), amount-first columns and CSV give the same money; an ambiguous file is refused, not guessed."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.models.fit import fit_gammagamma
from pipeline.models.transactions import (
    BadLine,
    Layout,
    LayoutError,
    Transaction,
    detect_layout,
    read_transactions,
    summarise,
)

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLE = DATA / "cdnow_sample.txt"


def revenue(rows: list[Transaction | BadLine]) -> dict[str, float]:
    out: defaultdict[str, float] = defaultdict(float)
    for r in rows:
        assert isinstance(r, Transaction), r
        out[r.customer] += r.amount
    return dict(out)


@pytest.fixture(scope="module")
def four_columns(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample with its sample-id column dropped: customer, date, CDs, dollars."""
    path = tmp_path_factory.mktemp("cdnow") / "cdnow4.txt"
    lines = [line.split() for line in SAMPLE.read_text().splitlines() if line.strip()]
    path.write_text("".join(f"{c[0]} {c[2]} {c[3]} {c[4]}\n" for c in lines))
    return path


def test_the_four_column_cdnow_layout_reads_dollars_not_cds(four_columns: Path) -> None:
    five = list(read_transactions(SAMPLE))
    four = list(read_transactions(four_columns))
    assert detect_layout(four_columns.open()) is Layout.cdnow4
    assert revenue(four) == revenue(five)
    assert sum(revenue(four).values()) == pytest.approx(sum(float(ln.split()[4]) for ln in SAMPLE.read_text()
                                                             .splitlines() if ln.strip()))  # fmt: skip
    assert [t.items for t in four] == [t.items for t in five]  # type: ignore[union-attr]


def test_gamma_gamma_from_the_four_column_file_equals_the_fit_from_the_sample(four_columns: Path) -> None:
    end = date(1997, 9, 30)

    def fit(path: Path) -> tuple[float, ...]:
        summary = summarise([t for t in read_transactions(path) if isinstance(t, Transaction)], end)
        params, _ll = fit_gammagamma(summary.x, summary.monetary)
        return tuple(params)

    assert fit(four_columns) == pytest.approx(fit(SAMPLE), rel=1e-4)


def test_an_ambiguous_four_column_file_is_refused_unless_the_layout_is_given(tmp_path: Path) -> None:
    path = tmp_path / "whole.txt"
    path.write_text("a 19970101 2 30\nb 19970102 1 15\n")
    with pytest.raises(LayoutError, match="cannot tell"):
        list(read_transactions(path))
    assert revenue(list(read_transactions(path, Layout.cdnow4))) == {"a": 30.0, "b": 15.0}
    assert revenue(list(read_transactions(path, Layout.amount_items))) == {"a": 2.0, "b": 1.0}
    refused = CliRunner().invoke(app, ["model", "fit", "--transactions", str(path)])
    assert refused.exit_code == 2 and "--layout" in refused.output


def test_a_line_of_another_width_in_a_fixed_layout_is_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "mixed.txt"
    path.write_text("a 19970101 2 29.99\nb 19970102 15.50\n")
    rows = list(read_transactions(path))
    assert isinstance(rows[0], Transaction) and rows[0].amount == 29.99
    assert isinstance(rows[1], BadLine) and "expected 4 columns" in rows[1].reason


@given(st.lists(st.tuples(st.integers(1, 50), st.integers(0, 99_999)), min_size=1, max_size=30))
def test_cdnow4_detection_holds_whenever_some_amount_has_cents(rows: list[tuple[int, int]]) -> None:
    lines = [f"c{i} 19970101 {items} {cents // 100}.{cents % 100:02d}" for i, (items, cents) in enumerate(rows)]
    # Amounts printed with cents always contain a dot: the CD count column is whole, the amount is not.
    assert detect_layout(lines) is Layout.cdnow4
