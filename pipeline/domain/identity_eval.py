"""Pairwise precision and recall of an identity clustering against a ground truth.

Every unordered pair of nodes in the scored set is a *predicted* pair when both nodes are in the same
predicted profile, a *true* pair when both belong to the same truth cluster (person), and *correct* when
both. ``precision = correct / predicted`` and ``recall = correct / true``.

Counting is done from cluster sizes, never by listing pairs: the pairs inside a group of ``n`` nodes number
``C(n, 2)``, so predicted = sum over predicted clusters, true = sum over truth clusters and correct = sum
over the non-empty intersections (predicted cluster x truth cluster). Cost is O(nodes), memory O(nodes).

"What the data makes linkable": a person whose identifiers never co-occur on a trusted event cannot be
joined by any correct resolver. :func:`linkable_components` gives the truth as the resolver could at best
know it (connected components of the trusted links, cut wherever truth says a link joins two people, and
without identifiers truth does not attribute, such as shared kiosks). Score precision against the persons
and recall against these components, both restricted to the nodes that appear in links.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

from pipeline.domain.identity_rules import Link


@dataclass(frozen=True, slots=True)
class Scores:
    """Pairwise scores; a ratio with an empty denominator is 1.0 (nothing to get wrong or to miss)."""

    precision: float
    recall: float
    pairs_predicted: int
    pairs_true: int
    pairs_correct: int
    nodes: int


@dataclass(frozen=True, slots=True)
class _Alone:
    """Cluster label of a node the prediction does not mention: it is alone (its implicit profile)."""

    node: str


def _pairs(sizes: Iterable[int]) -> int:
    return sum(n * (n - 1) // 2 for n in sizes)


def pairwise_scores(
    predicted: Mapping[str, Hashable], truth: Mapping[str, Hashable], nodes: Iterable[str] | None = None
) -> Scores:
    """Score ``predicted`` (node -> profile id) against ``truth`` (node -> person) over a node set.

    The set is ``nodes`` if given, else every node of ``truth``; nodes truth does not know are skipped
    (they cannot be scored), nodes ``predicted`` does not know count as alone. Labels are only compared
    for equality, so any hashable works. O(len(set)); the result does not depend on iteration order.
    """
    scored = truth.keys() if nodes is None else [n for n in dict.fromkeys(nodes) if n in truth]
    by_pred: Counter[Hashable] = Counter()
    by_true: Counter[Hashable] = Counter()
    by_both: Counter[tuple[Hashable, Hashable]] = Counter()
    count = 0
    for node in scored:
        pred = predicted.get(node)
        p = _Alone(node) if pred is None else pred
        t = truth[node]
        by_pred[p] += 1
        by_true[t] += 1
        by_both[p, t] += 1
        count += 1
    predicted_pairs, true_pairs = _pairs(by_pred.values()), _pairs(by_true.values())
    correct = _pairs(by_both.values())
    return Scores(
        precision=correct / predicted_pairs if predicted_pairs else 1.0,
        recall=correct / true_pairs if true_pairs else 1.0,
        pairs_predicted=predicted_pairs,
        pairs_true=true_pairs,
        pairs_correct=correct,
        nodes=count,
    )


def linkable_components(links: Iterable[Link], truth: Mapping[str, Hashable]) -> dict[str, str]:
    """node -> component label (its smallest node) for every node truth knows that appears in a link.

    Edges join consecutive truth-attributed nodes of a link that truth puts in the same person, so a
    wrong co-occurrence (a kiosk) never connects two people here. Deterministic (labels do not depend on
    link order); union-find with path halving, so O(total link size x log nodes) at worst.
    """
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        while (up := parent[node]) != node:
            parent[node] = parent[up]
            node = parent[node]
        return node

    for link in links:
        known = [n for n in link.nodes if n in truth]
        for node in known:
            parent.setdefault(node, node)
        by_person: dict[Hashable, str] = {}
        for node in known:
            first = by_person.setdefault(truth[node], node)
            a, b = find(first), find(node)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return {node: find(node) for node in parent}
