"""`omnistream model fit` from a transactions file and from DuckDB; the backfill message builder."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import duckdb
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.models.params import load
from pipeline.models.transactions import Transaction, read_transactions
from pipeline.simulate.backfill import backfill_messages
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry

DATA = Path(__file__).parent.parent / "data"


def test_model_fit_from_the_cdnow_file_prints_and_writes_parameters(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    res = CliRunner().invoke(
        app,
        [
            "model",
            "fit",
            "--transactions",
            str(DATA / "cdnow_sample.txt"),
            "--calibration-end",
            "1997-09-30",
            "--variant",
            "bgnbd",
            "--output",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout[res.stdout.index("{") :])
    assert abs(printed["bg"]["r"] - 0.243) / 0.243 < 0.005 and round(printed["log_likelihood"], 1) == -9582.4
    assert load(out).bg.r == printed["bg"]["r"]


def test_model_fit_from_duckdb(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE pos (customer_id VARCHAR, event_time TIMESTAMP, amount DOUBLE)")
    rows = [
        (t.customer, t.day.isoformat(), t.amount)
        for t in read_transactions(DATA / "cdnow_sample.txt")
        if isinstance(t, Transaction)
    ]
    con.executemany("INSERT INTO pos VALUES (?, CAST(? AS TIMESTAMP), ?)", rows[:3000])
    con.execute("CREATE VIEW purchases AS SELECT * FROM pos")
    con.close()
    out = tmp_path / "p.json"
    res = CliRunner().invoke(app, ["model", "fit", "--duckdb", str(db), "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert load(out).variant == "mbgnbd" and load(out).customers > 500
    missing = CliRunner().invoke(app, ["model", "fit", "--duckdb", str(db), "--query", "SELECT * FROM nothing"])
    assert missing.exit_code != 0 and "purchases view" in missing.output


def test_backfill_messages_are_valid_store_purchases_in_time_order() -> None:
    codec = AvroCodec(FileSchemaRegistry())
    txs = [Transaction("c1", date(2024, 1, 3), 19.99, 2, 1), Transaction("c2", date(2024, 1, 1), 5.0, None, 2)]
    msgs = list(backfill_messages(txs, "f.csv", currency="EUR"))
    assert [m.key for m in msgs] == [b"c2", b"c1"]
    rec = codec.decode(codec.encode("store", msgs[1].record or {})).record
    assert rec["event_type"] == "pos_purchase" and rec["amount_minor"] == 1999 and rec["items"][0]["quantity"] == 2
    assert [m.event_id for m in backfill_messages(txs, "f.csv")] == [m.event_id for m in msgs]
