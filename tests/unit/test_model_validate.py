"""``omnistream model validate``: calibration/holdout by frequency bucket on the CDNOW sample (BG/NBD paper)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.models.transactions import Layout, Transaction, read_transactions
from pipeline.models.validate import validate

SAMPLE = Path(__file__).parent.parent / "data" / "cdnow_sample.txt"


@pytest.fixture(scope="module")
def cdnow() -> list[Transaction]:
    return [t for t in read_transactions(SAMPLE, Layout.cdnow) if isinstance(t, Transaction)]


def test_the_cdnow_holdout_is_predicted_per_bucket_with_the_published_parameters(cdnow: list[Transaction]) -> None:
    v = validate(cdnow, date(1997, 9, 30), date(1998, 6, 30), 7.0, "bgnbd")
    bg = v.params.bg  # Fader, Hardie & Lee (2005): r 0.243, alpha 4.414, a 0.793, b 2.426
    assert (round(bg.r, 3), round(bg.alpha, 3), round(bg.a, 3), round(bg.b, 3)) == (0.243, 4.414, 0.793, 2.426)
    assert [b.label for b in v.buckets] == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert sum(b.customers for b in v.buckets) == 2357
    holdout_days = {(t.customer, t.day) for t in cdnow if date(1997, 9, 30) < t.day <= date(1998, 6, 30)}
    assert v.actual_total == len(holdout_days)
    means = [b.predicted for b in v.buckets]
    assert means == sorted(means)  # more repeat purchases before, more predicted after
    assert abs(v.total_error_pct) < 15 and all(abs(b.error) < 0.5 for b in v.buckets)
    assert not v.warnings


def test_a_degenerate_fit_is_named(cdnow: list[Transaction]) -> None:
    # Everybody buys every week and never stops: the dropout parameters are not determined by such data.
    start = date(2020, 1, 6)
    steady = [Transaction(f"c{c}", start + timedelta(weeks=w), 10.0, 1, c * 100 + w) for c in range(40)
              for w in range(30)]  # fmt: skip
    v = validate(steady, start + timedelta(weeks=20), start + timedelta(weeks=29), 7.0, "bgnbd")
    assert v.warnings and "degenerate" in v.warnings[0]


def test_the_command_prints_the_buckets_and_refuses_an_empty_holdout() -> None:
    args = ["model", "validate", "--transactions", str(SAMPLE), "--layout", "cdnow", "--calibration-end",
            "1997-09-30", "--holdout-end", "1998-06-30", "--variant", "bgnbd"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [b["repeat_purchases"] for b in doc["buckets"]][-1] == "7+" and doc["actual_total"] > 0
    bad = CliRunner().invoke(app, [*args[:-4], "--holdout-end", "1997-09-01"])
    assert bad.exit_code == 2 and "holdout period must end after" in bad.output
