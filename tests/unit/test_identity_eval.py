"""Pairwise identity scores: contingency counting equals brute-force pair enumeration."""

from __future__ import annotations

from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain.identity_eval import Scores, linkable_components, pairwise_scores
from pipeline.domain.identity_rules import Link


def brute_force(predicted: dict[str, int], truth: dict[str, int], nodes: list[str] | None) -> Scores:
    scored = sorted({n for n in (truth if nodes is None else nodes) if n in truth})
    pred_pairs = true_pairs = correct = 0
    for a, b in combinations(scored, 2):
        same_pred = a in predicted and b in predicted and predicted[a] == predicted[b]
        same_true = truth[a] == truth[b]
        pred_pairs += same_pred
        true_pairs += same_true
        correct += same_pred and same_true
    return Scores(
        precision=correct / pred_pairs if pred_pairs else 1.0,
        recall=correct / true_pairs if true_pairs else 1.0,
        pairs_predicted=pred_pairs,
        pairs_true=true_pairs,
        pairs_correct=correct,
        nodes=len(scored),
    )


_names = st.sampled_from([f"n{i}" for i in range(14)])


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(_names, st.integers(0, 3)),
    st.dictionaries(_names, st.integers(0, 3)),
    st.none() | st.lists(_names),
)
def test_contingency_counts_equal_brute_force(
    predicted: dict[str, int], truth: dict[str, int], nodes: list[str] | None
) -> None:
    assert pairwise_scores(predicted, truth, nodes) == brute_force(predicted, truth, nodes)


def test_perfect_and_degenerate_clusterings() -> None:
    truth = {"a": 1, "b": 1, "c": 2, "d": 2}
    assert pairwise_scores({"a": "x", "b": "x", "c": "y", "d": "y"}, truth) == Scores(1.0, 1.0, 2, 2, 2, 4)
    alone = pairwise_scores({}, truth)  # nothing predicted: every node is its own profile
    assert (alone.precision, alone.recall, alone.pairs_predicted) == (1.0, 0.0, 0)
    lumped = pairwise_scores(dict.fromkeys(truth, "all"), truth)
    assert (lumped.precision, lumped.recall) == (2 / 6, 1.0)


def test_restriction_skips_nodes_truth_does_not_know() -> None:
    scores = pairwise_scores({"a": 1, "b": 1, "kiosk": 1}, {"a": "p", "b": "p"}, ["a", "b", "kiosk"])
    assert scores == Scores(1.0, 1.0, 1, 1, 1, 2)


def test_linkable_components_never_join_two_people_through_a_wrong_link() -> None:
    truth = {"customer_id:A": "pa", "anonymous_id:a": "pa", "email_hash:a": "pa", "customer_id:B": "pb"}
    links = [
        Link(("customer_id:A", "anonymous_id:a"), "r", "e1", 1),
        Link(("customer_id:B", "device_id:kiosk"), "r", "e2", 2),  # kiosk is not in truth
        Link(("customer_id:A", "device_id:kiosk"), "r", "e3", 3),
        Link(("customer_id:B", "anonymous_id:a"), "r", "e4", 4),  # a wrong co-occurrence
    ]
    comps = linkable_components(links, truth)
    assert comps == {
        "customer_id:A": "anonymous_id:a",
        "anonymous_id:a": "anonymous_id:a",
        "customer_id:B": "customer_id:B",
    }
    assert linkable_components(reversed(links), truth) == comps  # labels do not depend on order
