"""Market-basket rules computed in DuckDB equal mlxtend's ``association_rules`` on the same baskets."""

from __future__ import annotations

import random

import duckdb
import pandas as pd
import pytest
from mlxtend.frequent_patterns import apriori, association_rules
from mlxtend.preprocessing import TransactionEncoder

from pipeline.reports.basket import pair_rules
from sinks import synthetic as syn


def baskets(seed: int, n: int) -> list[list[str]]:
    world = syn.world(random.Random(seed), n)
    out = [sorted(set(s["products_carted"]) | set(s["products_bought"])) for s in world["sessions"]]
    return [b for b in out if b]


@pytest.mark.parametrize(("seed", "min_support"), [(1, 0.0), (2, 0.01), (3, 0.05)])
def test_pair_rules_equal_mlxtend(seed: int, min_support: float) -> None:
    data = baskets(seed, 300)
    con = duckdb.connect()
    con.execute("CREATE TABLE b (items VARCHAR[])")
    con.executemany("INSERT INTO b VALUES (?)", [[items] for items in data])
    ours = pair_rules(con, "SELECT items FROM b", min_support=min_support)

    encoder = TransactionEncoder()
    onehot = pd.DataFrame(encoder.fit(data).transform(data), columns=encoder.columns_)
    frequent = apriori(onehot, min_support=max(min_support, 1e-9), use_colnames=True, max_len=2)
    rules = association_rules(frequent, num_itemsets=len(data), metric="lift", min_threshold=0.0)
    rules = rules[(rules["antecedents"].apply(len) == 1) & (rules["consequents"].apply(len) == 1)]
    theirs = {
        (next(iter(r.antecedents)), next(iter(r.consequents))): (r.support, r.confidence, r.lift)
        for r in rules.itertuples()
    }

    got = {(a, c): (s, conf, lift) for a, c, _, s, conf, lift in ours.rows}
    assert len(got) >= 4
    assert got.keys() == theirs.keys()
    for pair, values in theirs.items():
        assert got[pair] == pytest.approx(values, rel=1e-9), pair


def test_a_basket_of_an_online_cart_and_a_store_receipt_is_one_basket() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE b (items VARCHAR[])")
    # Three sessions: cart online {a}, receipt in store {b} in the same session -> one basket {a, b}.
    con.executemany("INSERT INTO b VALUES (?)", [[["a", "b"]], [["a", "b"]], [["c"]], [["a"]]])
    rules = {(r[0], r[1]): r[3:] for r in pair_rules(con, "SELECT items FROM b").rows}
    support, confidence, lift = rules[("b", "a")]
    assert (support, confidence) == (0.5, 1.0)
    assert lift == pytest.approx(1.0 / 0.75)
