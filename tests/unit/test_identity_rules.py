"""Link rules: only trusted event shapes link, only the kinds each rule names, never on placeholders."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.domain.identity_rules import (
    KINDS,
    RULES,
    IdentityPolicy,
    Link,
    is_link_event,
    link_candidates,
    nodes_of,
)


def event(channel: str, event_type: str, **ids: Any) -> dict[str, Any]:
    """A canonical event reduced to what the rules read; unspecified identifiers are None."""
    base: dict[str, Any] = dict.fromkeys(KINDS)
    base.update(event_id="e1", event_time=1_000, channel=channel, event_type=event_type, visit_method=None)
    base.update(ids)
    return base


@pytest.mark.parametrize(
    ("evt", "rule", "nodes"),
    [
        (
            event("web", "login", anonymous_id="ck1", customer_id="C1", email_hash="eh1", loyalty_id="L1"),
            "web_login",
            ("customer_id:C1", "loyalty_id:L1", "email_hash:eh1", "anonymous_id:ck1"),
        ),
        (
            event("mobile", "login", device_id="d1", customer_id="C1", phone_hash="ph1"),
            "mobile_login",
            ("customer_id:C1", "phone_hash:ph1", "device_id:d1"),
        ),
        (
            event("web", "purchase", anonymous_id="ck1", customer_id="C1", email_hash="eh1"),
            "web_purchase",
            ("customer_id:C1", "email_hash:eh1", "anonymous_id:ck1"),
        ),
        (
            event("mobile", "purchase", device_id="d1", customer_id="C1"),
            "mobile_purchase",
            ("customer_id:C1", "device_id:d1"),
        ),
        (
            event("store", "pos_purchase", loyalty_id="L1", email_hash="eh1", phone_hash="ph1"),
            "store_pos_purchase",
            ("loyalty_id:L1", "email_hash:eh1", "phone_hash:ph1"),
        ),
        (
            event("store", "store_visit", loyalty_id="L1", customer_id="C1", visit_method="loyalty_scan"),
            "store_visit_loyalty_scan",
            ("customer_id:C1", "loyalty_id:L1"),
        ),
        (
            event("social", "account_link", social_handle="ann_1", customer_id="C1"),
            "social_account_link",
            ("customer_id:C1", "social_handle:ann_1"),
        ),
        (
            event("mobile", "push_open", device_id="d1", customer_id="C1"),
            "mobile_push_open",
            ("customer_id:C1", "device_id:d1"),
        ),
    ],
)
def test_each_rule_links_its_kinds_in_kind_order(evt: dict[str, Any], rule: str, nodes: tuple[str, ...]) -> None:
    assert link_candidates(evt) == Link(nodes, rule, "e1", 1_000)
    assert is_link_event(evt)


@pytest.mark.parametrize(
    "evt",
    [
        event("web", "page_view", anonymous_id="ck1", customer_id="C1"),  # logged-in browsing: untrusted
        event("web", "add_to_cart", anonymous_id="ck1", customer_id="C1"),
        event("web", "checkout_start", anonymous_id="ck1", customer_id="C1", email_hash="eh1"),
        event("mobile", "product_view", device_id="d1", customer_id="C1"),
        event("mobile", "store_geofence_enter", device_id="d1", customer_id="C1"),
        event("store", "store_visit", device_id="d1", customer_id="C1", visit_method="beacon"),
        event("store", "store_visit", email_hash="eh1", loyalty_id="L1", visit_method="wifi"),
        event("social", "mention", social_handle="ann_1", customer_id="C1"),
        event("web", "purchase", anonymous_id="ck1", email_hash="eh1"),  # guest checkout: no account
        event("web", "login", anonymous_id="ck1", email_hash="eh1"),  # no customer id
        event("store", "pos_purchase", email_hash="eh1", phone_hash="ph1"),  # no loyalty card
        event("social", "account_link", social_handle="ann_1"),
        event("mobile", "push_open", customer_id="C1", anonymous_id="ck1"),  # push needs the device
    ],
)
def test_untrusted_or_incomplete_events_never_link(evt: dict[str, Any]) -> None:
    assert link_candidates(evt) is None
    assert not is_link_event(evt)


def test_a_lone_identifier_is_no_link() -> None:
    assert link_candidates(event("store", "store_visit", loyalty_id="L1", visit_method="loyalty_scan")) is None
    assert link_candidates(event("web", "login", customer_id="C1")) is None


def test_kinds_a_rule_does_not_name_are_not_linked() -> None:
    link = link_candidates(event("web", "login", anonymous_id="ck1", customer_id="C1", social_handle="ann_1"))
    assert link is not None and link.nodes == ("customer_id:C1", "anonymous_id:ck1")


@pytest.mark.parametrize("junk", ["", "   ", "undefined", "0", "null", "00000000-0000-0000-0000-000000000000"])
def test_placeholders_and_empty_values_are_ignored_defensively(junk: str) -> None:
    assert link_candidates(event("web", "login", anonymous_id=junk, customer_id="C1")) is None
    assert link_candidates(event("web", "login", anonymous_id="ck1", customer_id=junk)) is None
    link = link_candidates(event("web", "login", anonymous_id="ck1", customer_id="C1", email_hash=junk))
    assert link is not None and link.nodes == ("customer_id:C1", "anonymous_id:ck1")


def test_nodes_of_uses_authority_order_and_skips_junk() -> None:
    evt = event("web", "page_view", anonymous_id="ck1", device_id="d1", customer_id="C1", email_hash="undefined")
    assert nodes_of(evt) == ["customer_id:C1", "device_id:d1", "anonymous_id:ck1"]
    assert nodes_of(event("web", "page_view")) == []


def test_rule_table_is_consistent() -> None:
    assert len({r.name for r in RULES}) == len(RULES)
    assert len({(r.channel, r.event_type) for r in RULES}) == len(RULES)  # one rule per event shape
    for r in RULES:
        assert list(r.links) == sorted(r.links, key=KINDS.index), r.name
        assert set(r.requires) <= set(r.links), r.name


def test_policy_limits_are_validated() -> None:
    assert IdentityPolicy().limit("device_id") == 1
    assert IdentityPolicy({"device_id": 3}).limit("device_id") == 3
    assert IdentityPolicy({"device_id": 3}).limit("email_hash") == 1  # unlisted kinds default to 1
    for bad in ({"customer_id": 2}, {"cookie": 1}, {"device_id": 0}):
        with pytest.raises(ValueError):
            IdentityPolicy(bad)
