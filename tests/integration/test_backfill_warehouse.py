"""A purchase history backfilled through the stream (issue: money read from the right column): the CDNOW sample
in its 4-column layout (customer, date, CDs, dollars) goes through ingest, identity, the journey and the sink;
the warehouse then holds every customer's revenue exactly, and ``model fit --duckdb`` on it gives the fit of
``model fit --transactions`` on the original 5-column file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb

from tests.integration.event_time_runs import Run, finish
from tests.integration.pipeline_env import PipelineEnv

SAMPLE = Path(__file__).parent.parent / "data" / "cdnow_sample.txt"
CALIBRATION_END = "1998-01-31"


def run_cli(env: PipelineEnv, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "pipeline", *args], env={**os.environ, **env.env()},
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def fit(env: PipelineEnv, out: Path, *source: str) -> dict[str, Any]:
    params = json.loads(run_cli(env, "model", "fit", *source, "--calibration-end", CALIBRATION_END, "--output",
                                str(out), "--version", "it"))  # fmt: skip
    return dict(params)


def significant(value: float, digits: int = 4) -> str:
    return f"{value:.{digits - 1}e}"


def test_a_four_column_history_backfilled_through_the_stream_gives_exact_revenue_and_the_same_fit(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    four = tmp_path / "cdnow4.txt"
    rows = [line.split() for line in SAMPLE.read_text().splitlines() if line.strip()]
    four.write_text("".join(f"{c} {d} {n} {a}\n" for c, _sample, d, n, a in rows))
    want: dict[str, int] = defaultdict(int)
    for c, _sample, _d, _n, a in rows:
        want[f"c:{c}"] += round(float(a) * 100)

    env = PipelineEnv.create(kafka_bootstrap, tmp_path, partitions=2)
    extra = {"OMNISTREAM_LATE_HORIZON_S": str(40 * 365 * 86400), "OMNISTREAM_SOURCE_IDLE_S": "2"}
    run_cli(env, "backfill", str(four), "--layout", "cdnow4", "--no-progress", "--currency", "USD")
    with Run(env, extra) as run:
        run.start_worker(0)
        finish(run)
    assert run.snapshot is not None
    with duckdb.connect(str(run.snapshot), read_only=True) as con:
        got = dict(con.execute("SELECT customer_id, sum(amount_minor) FROM purchases GROUP BY 1").fetchall())
        profiles = dict(con.execute("SELECT customer_id, revenue_minor FROM customers").fetchall())
        lines = con.execute("SELECT count(*), count(DISTINCT event_id) FROM order_lines").fetchone()
        currencies = {r[0] for r in con.execute("SELECT DISTINCT currency FROM purchases").fetchall()}
    assert len(want) == 2357
    assert got == want  # every customer's revenue, to the cent
    assert {c: profiles.get(c) for c in want} == want
    assert lines == (len(rows), len(rows)) and currencies == {"USD"}

    from_file = fit(env, tmp_path / "file.json", "--transactions", str(SAMPLE), "--layout", "cdnow")
    from_warehouse = fit(env, tmp_path / "warehouse.json", "--duckdb", str(run.snapshot))
    for model in ("bg", "gg"):
        a, b = from_file[model], from_warehouse[model]
        assert {k: significant(v) for k, v in a.items() if isinstance(v, float)} == \
            {k: significant(v) for k, v in b.items() if isinstance(v, float)}, model  # fmt: skip
