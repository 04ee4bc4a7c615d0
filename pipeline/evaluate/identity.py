"""Identity evaluation: the streamed identifier -> profile assignments against the simulator's truth.

Only identifiers that appear in at least one trusted link event are scored (the ones the data makes
linkable); truth identifiers are turned into pipeline nodes exactly as ingest does (e-mail/phone hashed with
the deployment's key, handles normalised).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.domain.identity import implicit_profile_id
from pipeline.domain.identity_eval import Scores, pairwise_scores
from pipeline.domain.identity_rules import link_candidates
from pipeline.domain.ingest import _handle
from pipeline.domain.pii import Pseudonymiser, clean_identifier


@dataclass(frozen=True)
class IdentityReport:
    scores: Scores
    shared_in_truth: int
    shared_detected: int
    links: int


def truth_nodes(identifiers: Mapping[str, str], pseudonymiser: Pseudonymiser) -> dict[str, str]:
    """Truth's ``"<kind>:<raw>" -> person`` as pipeline nodes ``"<kind>:<value as ingest emits it>"``."""
    nodes: dict[str, str] = {}
    for key, person in identifiers.items():
        kind, _, raw = key.partition(":")
        if kind == "email":
            value, kind = pseudonymiser.email(raw), "email_hash"
        elif kind == "phone":
            value, kind = pseudonymiser.phone(raw), "phone_hash"
        elif kind == "social_handle":
            value = _handle(raw)
        else:
            value = clean_identifier(raw)
        if value:
            nodes[f"{kind}:{value}"] = person
    return nodes


def evaluate_identity(
    events: Iterable[Mapping[str, Any]],
    assignments: Mapping[str, str],
    shared: set[str],
    truth: Mapping[str, Any],
    pseudonymiser: Pseudonymiser,
) -> IdentityReport:
    """Pairwise precision/recall of the final assignments over the identifiers seen in link events."""
    linked: dict[str, None] = {}
    links = 0
    for event in events:
        link = link_candidates(event)
        if link is not None:
            links += 1
            linked.update(dict.fromkeys(link.nodes))
    nodes = truth_nodes(truth["identifiers"], pseudonymiser)
    predicted = {node: assignments.get(node) or implicit_profile_id(node) for node in linked}
    scores = pairwise_scores(predicted, nodes, linked)
    truth_shared = set(truth.get("shared_identifiers", []))
    return IdentityReport(scores, len(truth_shared), len(truth_shared & shared), links)
