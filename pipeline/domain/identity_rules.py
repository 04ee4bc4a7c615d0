"""Which events are trusted evidence that identifiers belong to one person, and which identifiers they link.

An identifier is a *node* ``"<kind>:<value>"``. Only the events in :data:`RULES` produce a :class:`Link`;
everything else (page views, carts, searches, geofences, beacons, mentions...) never links, even when it
carries several identifiers: such co-occurrence is untrusted (a shared screen, a stale cookie, a tagging
bug), and one wrong merge costs more than one missed link. Those events are still *resolved* through
their identifiers, they just never change the graph.

Rules (name: channel/event type, required kinds -> linked kinds):

* ``web_login`` / ``mobile_login``: login with customer_id -> customer_id, loyalty_id, email_hash,
  phone_hash, device_id, anonymous_id (the account holder just proved who they are on this cookie/device).
* ``web_purchase`` / ``mobile_purchase``: purchase with customer_id -> customer_id, email_hash, phone_hash,
  device_id, anonymous_id (an order placed by a signed-in account). Guest checkouts do not link.
* ``store_pos_purchase``: pos_purchase with loyalty_id -> loyalty_id, customer_id, email_hash, phone_hash
  (the card was scanned at the till; the e-receipt contact was given at the same time).
* ``store_visit_loyalty_scan``: store_visit with visit_method ``loyalty_scan`` and loyalty_id -> same kinds.
* ``social_account_link``: account_link with customer_id and social_handle -> those two.
* ``mobile_push_open``: push_open with customer_id and device_id -> those two (a push token belongs to a
  signed-in install).

A link needs at least two distinct nodes; a lone identifier has nothing to join. Guarantees: pure,
deterministic, nodes in :data:`KINDS` order. Not guaranteed: that a link is safe to apply; the merge
guards in :func:`pipeline.domain.identity.apply_link` decide that, with the limits of
:class:`IdentityPolicy` (kept here because they, too, say which identifiers may link).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pipeline.domain.pii import is_placeholder

#: Identifier kinds, most authoritative first: the order of nodes, of resolution and of tie-breaks.
KINDS: tuple[str, ...] = (
    "customer_id", "loyalty_id", "email_hash", "phone_hash", "social_handle", "device_id", "anonymous_id",
)  # fmt: skip
KIND_RANK: Mapping[str, int] = MappingProxyType({kind: rank for rank, kind in enumerate(KINDS)})
CUSTOMER_KIND = "customer_id"
PREFIXES: tuple[tuple[str, str], ...] = tuple((kind, kind + ":") for kind in KINDS)


def nodes_of(event: Mapping[str, Any]) -> list[str]:
    """The event's identifiers as nodes in :data:`KINDS` order; None, empty and placeholder values skipped."""
    return [
        prefix + value
        for kind, prefix in PREFIXES
        if isinstance(value := event.get(kind), str) and value.strip() and not is_placeholder(value)
    ]


@dataclass(frozen=True, slots=True)
class Link:
    """Identifiers that a trusted event shows belong together, with the evidence (rule, event)."""

    nodes: tuple[str, ...]
    rule: str
    event_id: str
    event_time: int


@dataclass(frozen=True, slots=True)
class Rule:
    """A trusted event shape: the kinds it must carry and the kinds it links (in :data:`KINDS` order)."""

    name: str
    channel: str
    event_type: str
    requires: tuple[str, ...]
    links: tuple[str, ...]
    visit_method: str | None = None


_ACCOUNT = ("customer_id", "loyalty_id", "email_hash", "phone_hash", "device_id", "anonymous_id")
_ORDER = ("customer_id", "email_hash", "phone_hash", "device_id", "anonymous_id")
_LOYALTY = ("customer_id", "loyalty_id", "email_hash", "phone_hash")

RULES: tuple[Rule, ...] = (
    Rule("web_login", "web", "login", ("customer_id",), _ACCOUNT),
    Rule("mobile_login", "mobile", "login", ("customer_id",), _ACCOUNT),
    Rule("web_purchase", "web", "purchase", ("customer_id",), _ORDER),
    Rule("mobile_purchase", "mobile", "purchase", ("customer_id",), _ORDER),
    Rule("store_pos_purchase", "store", "pos_purchase", ("loyalty_id",), _LOYALTY),
    Rule("store_visit_loyalty_scan", "store", "store_visit", ("loyalty_id",), _LOYALTY, "loyalty_scan"),
    Rule("social_account_link", "social", "account_link", ("customer_id", "social_handle"),
         ("customer_id", "social_handle")),
    Rule("mobile_push_open", "mobile", "push_open", ("customer_id", "device_id"), ("customer_id", "device_id")),
)  # fmt: skip
_BY_SHAPE: Mapping[tuple[Any, Any], Rule] = MappingProxyType({(r.channel, r.event_type): r for r in RULES})


_DEFAULT_LIMITS: Mapping[str, int] = MappingProxyType({kind: 1 for kind in KINDS if kind != CUSTOMER_KIND})


@dataclass(frozen=True)
class IdentityPolicy:
    """Merge-guard limits: per kind, how many distinct customer ids a node may be seen with (default 1).

    A node seen with more becomes *shared* (a store kiosk, a family tablet, a household e-mail): it is
    detached from its profile and never links again. customer_id has no limit: it is unique by definition.
    Limits are >= 1: a kind that may never link should simply not be named by any rule.
    """

    max_customers_per_identifier: Mapping[str, int] = field(default_factory=lambda: _DEFAULT_LIMITS)

    def __post_init__(self) -> None:
        for kind, limit in self.max_customers_per_identifier.items():
            if kind not in KIND_RANK or kind == CUSTOMER_KIND or limit < 1:
                raise ValueError(f"invalid limit {kind}={limit}: kinds other than customer_id, limits >= 1")

    def limit(self, kind: str) -> int:
        """The limit for ``kind``; kinds not listed get 1."""
        return self.max_customers_per_identifier.get(kind, 1)


DEFAULT_POLICY = IdentityPolicy()


def _value(event: Mapping[str, Any], kind: str) -> str | None:
    value = event.get(kind)
    if isinstance(value, str) and value.strip() and not is_placeholder(value):
        return value
    return None  # defensive: ingest already drops placeholders, but a link must never rest on one


def link_candidates(event: Mapping[str, Any]) -> Link | None:
    """The link a canonical event is evidence for, or None (not a trusted shape, or < 2 usable nodes).

    Cheap for the common case: one dict lookup decides that a page view or cart event is not a link, so
    the router can call this on every event.
    """
    rule = _BY_SHAPE.get((event.get("channel"), event.get("event_type")))
    if rule is None or (rule.visit_method is not None and event.get("visit_method") != rule.visit_method):
        return None
    if any(_value(event, kind) is None for kind in rule.requires):
        return None
    nodes = tuple(f"{kind}:{value}" for kind in rule.links if (value := _value(event, kind)) is not None)
    if len(nodes) < 2:
        return None
    return Link(nodes, rule.name, str(event["event_id"]), int(event["event_time"]))


def is_link_event(event: Mapping[str, Any]) -> bool:
    """True if :func:`link_candidates` yields a link: route the event to the identity-links topic."""
    return link_candidates(event) is not None
