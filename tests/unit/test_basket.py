"""Market-basket rules computed in DuckDB equal mlxtend's ``association_rules`` on the same baskets."""

from __future__ import annotations

import json
import random
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from mlxtend.frequent_patterns import apriori, association_rules
from mlxtend.preprocessing import TransactionEncoder
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.reports import basket
from pipeline.reports.basket import pair_rules, thresholds, top_rules
from pipeline.reports.model import collect
from schemas.registry import FileSchemaRegistry
from sinks import synthetic as syn
from sinks.contract import Batch, SinkRow
from sinks.duckdb_sink import DuckDBSink
from sinks.snapshot import open_snapshot
from sinks.tables import DEFAULT_TABLES, TABLES, bind_tables


def baskets(seed: int, n: int) -> list[list[str]]:
    world = syn.world(random.Random(seed), n)
    out = [sorted(set(s["products_bought"])) for s in world["sessions"]]
    return [b for b in out if b]


@pytest.mark.parametrize(
    ("seed", "min_support", "min_confidence", "min_lift"),
    [(1, 0.0, 0.0, 0.0), (2, 0.01, 0.0, 0.0), (3, 0.02, 0.0, 0.0), (4, 0.0, 0.1, 1.0), (5, 0.002, 0.05, 0.9)],
)
def test_pair_rules_equal_mlxtend(seed: int, min_support: float, min_confidence: float, min_lift: float) -> None:
    data = baskets(seed, 300)
    con = duckdb.connect()
    con.execute("CREATE TABLE b (items VARCHAR[])")
    con.executemany("INSERT INTO b VALUES (?)", [[items] for items in data])
    ours = pair_rules(con, "SELECT items FROM b", min_support, min_confidence, min_lift)

    encoder = TransactionEncoder()
    onehot = pd.DataFrame(encoder.fit(data).transform(data), columns=encoder.columns_)
    frequent = apriori(onehot, min_support=max(min_support, 1e-9), use_colnames=True, max_len=2)
    rules = association_rules(frequent, num_itemsets=len(data), metric="lift", min_threshold=0.0)
    rules = rules[(rules["antecedents"].apply(len) == 1) & (rules["consequents"].apply(len) == 1)]
    rules = rules[(rules["confidence"] >= min_confidence) & (rules["lift"] >= min_lift)]
    theirs = {
        (next(iter(r.antecedents)), next(iter(r.consequents))): (r.support, r.confidence, r.lift)
        for r in rules.itertuples()
    }

    got = {(a, c): (s, conf, lift) for a, c, _, s, conf, lift in ours.rows}
    assert len(got) >= 2
    assert got.keys() == theirs.keys()
    for pair, values in theirs.items():
        assert got[pair] == pytest.approx(values, rel=1e-9), pair


def test_an_online_order_and_a_store_receipt_of_one_session_are_one_basket() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE b (items VARCHAR[])")
    # Four sessions: bought online {a}, receipt in store {b} in the same session -> one basket {a, b}.
    con.executemany("INSERT INTO b VALUES (?)", [[["a", "b"]], [["a", "b"]], [["c"]], [["a"]]])
    rules = {(r[0], r[1]): r[3:] for r in pair_rules(con, "SELECT items FROM b").rows}
    support, confidence, lift = rules[("b", "a")]
    assert (support, confidence) == (0.5, 1.0)
    assert lift == pytest.approx(1.0 / 0.75)


def snapshot_of_sessions(tmp: Path, sessions: list[tuple[list[str], list[str]]]) -> Path:
    """A snapshot written by the real sink holding one session per (carted, bought)."""
    sink = DuckDBSink(tmp / "live.duckdb", tmp / "snap.duckdb", bind_tables(DEFAULT_TABLES, str, FileSchemaRegistry()))
    sink.open()
    batch = Batch()
    rng = random.Random(0)
    for offset, (carted, bought) in enumerate(sessions):
        record = syn.session(rng, f"s{offset}", f"c:{offset}", 1_700_000_000_000, carted=carted, bought=bought)
        batch.rows.append(SinkRow("sessions", TABLES["sessions"].topic, 0, offset, record))
        batch.add_offset(TABLES["sessions"].topic, 0, offset)
    sink.write(batch)
    sink.publish()
    sink.close()
    return tmp / "snap.duckdb"


def test_baskets_hold_bought_items_only(tmp_path: Path) -> None:
    snap = snapshot_of_sessions(
        tmp_path,
        [(["a", "b", "x"], ["a", "b"])] * 12  # x carted with a and b every time, never bought
        + [(["x", "y"], [])] * 12  # carted, nothing bought: no basket
        + [([], ["c"])] * 3,
    )
    with open_snapshot(snap) as con:
        items = [r[0] for r in con.execute("SELECT items FROM session_baskets").fetchall()]
        rules = pair_rules(con)
    assert sorted(items) == sorted([["a", "b"]] * 12 + [["c"]] * 3)
    assert {(r[0], r[1]) for r in rules.rows} == {("a", "b"), ("b", "a")}


def test_default_thresholds_scale_with_the_number_of_baskets() -> None:
    small, medium, large = thresholds(200), thresholds(5_011), thresholds(200_000)
    assert small.min_pair_baskets == medium.min_pair_baskets == basket.MIN_PAIR_BASKETS
    assert small.min_support > medium.min_support > large.min_support == basket.SUPPORT_FLOOR
    assert large.min_pair_baskets == 200
    assert {t.min_lift for t in (small, medium, large)} == {1.0}
    given = thresholds(5_011, min_support=0.02, min_confidence=0.3, min_lift=2)
    assert (given.min_support, given.min_confidence, given.min_lift) == (0.02, 0.3, 2)
    assert "at least 101 of 5,011 baskets" in given.describe()
    with pytest.raises(ValueError, match="lift >= 1"):
        thresholds(100, min_lift=0.5)


def substitutes_and_a_rare_complement(n: int = 5_011) -> list[list[str]]:
    """Baskets like a shop's: two popular products rarely bought together (lift < 1, support above 0.5%),
    one rare pair bought together far more than by chance, and a long tail of single items."""
    rng = random.Random(7)
    out: list[list[str]] = []
    for i in range(n):
        if i < 20:
            out.append(["tea", "cup"])  # rare but strong: 20 baskets, support 0.4%
        elif i < 60:
            out.append(["cola", "pepsi"])  # bought together less often than their popularity implies
        elif i < 1_500:
            out.append([rng.choice(["cola", "pepsi"]), f"tail-{rng.randrange(400)}"])
        elif i < 1_530:
            out.append(["tea"])
        else:
            out.append([f"tail-{rng.randrange(400)}", f"tail-{rng.randrange(400)}"])
    return [sorted(set(b)) for b in out]


def test_top_rules_never_show_lift_below_one(tmp_path: Path) -> None:
    data = substitutes_and_a_rare_complement()
    con = duckdb.connect()
    con.execute("CREATE TABLE b (items VARCHAR[])")
    con.execute("INSERT INTO b SELECT * FROM unnest(?)", [data])
    source = "SELECT items FROM b"
    everything = pair_rules(con, source)
    lifts = {(r[0], r[1]): r[5] for r in everything.rows}
    assert lifts[("cola", "pepsi")] < 1 and lifts[("tea", "cup")] > 10  # the data is what the test needs
    old_default = pair_rules(con, source, min_support=0.005)  # the former fixed threshold
    assert old_default.rows and max(r[5] for r in old_default.rows) < 1

    limits = thresholds(basket.basket_count(con, source))
    top = top_rules(con, 15, limits, source)
    assert top.rows and all(r[5] > 1 for r in top.rows)
    assert {(r[0], r[1]) for r in top.rows} >= {("tea", "cup"), ("cup", "tea")}
    strict = top_rules(con, 15, thresholds(limits.baskets, min_support=0.005), source)
    assert strict.rows == []  # only the substitutes reach 0.5%, and they are never a top rule


def test_report_options_set_the_thresholds_and_say_them(tmp_path: Path) -> None:
    snap = snapshot_of_sessions(
        tmp_path, [([], ["a", "b"])] * 12 + [([], ["a"])] * 10 + [([], ["b"])] * 10 + [([], ["c", "d"])] * 4
    )
    with open_snapshot(snap) as con:
        default = collect(con)
        low = collect(con, min_support=0.1)
    assert default.rules.rows == []  # a-b: lift 0.89, c-d: 4 baskets < 10
    assert any("at least 10 of 36 baskets" in n for n in default.notes["basket"])
    assert any("lift above 1" in n for n in default.notes["basket"])
    assert {(r[0], r[1]) for r in low.rules.rows} == {("c", "d"), ("d", "c")}

    cli = CliRunner().invoke(app, ["report", "--snapshot", str(snap), "--format", "json", "--min-support", "0.1"])
    assert cli.exit_code == 0, cli.output
    assert {(r["antecedent"], r["consequent"]) for r in json.loads(cli.output)["sections"]["rules"]} == {
        ("c", "d"),
        ("d", "c"),
    }
    bad = CliRunner().invoke(app, ["report", "--snapshot", str(snap), "--min-lift", "0.5"])
    assert bad.exit_code == 2
