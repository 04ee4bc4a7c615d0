"""Erasure's pure parts: who a request names, ingest's suppressed outcome, the journey's erase control, and which
failed events carry the person."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from pipeline.domain.identity import implicit_profile_id
from pipeline.domain.pii import Pseudonymiser
from pipeline.domain.quarantine import Quarantine
from pipeline.metrics import journey_metrics
from pipeline.privacy.erase import erase_control, failed_nodes
from pipeline.privacy.person import AmbiguousIdentifierError, find_person
from pipeline.privacy.tokens import Tokens
from pipeline.simulate.config import SimConfig
from pipeline.steps.bundles import Entry, Mark, bundle
from pipeline.steps.ingest import RawMessage
from pipeline.steps.journey import WRITER, JourneyStep, input_source
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from tests.unit.pipeline_model import reference_config, simulated_events
from tests.unit.test_ingest_step import EMAIL, SECRET, make_step, web_event

CODEC = AvroCodec(FileSchemaRegistry())
HOUR = 3_600_000


# --- who the request names ---------------------------------------------------------------------------------------

ASSIGNED = {"customer_id:C1": "c:C1", "email_hash:e1": "c:C1", "device_id:d1": "c:C1", "anonymous_id:a2": "p:x"}
MERGES = [("p:old", "p:mid"), ("p:mid", "c:C1"), ("p:other", "c:C9")]


def test_an_identifier_names_the_survivor_with_every_merged_profile_and_identifier() -> None:
    person = find_person("email_hash:e1", None, ASSIGNED, set(), MERGES)
    assert person.survivor == "c:C1"
    assert set(person.profiles) == {"c:C1", "p:mid", "p:old"}
    assert set(person.nodes) == {"customer_id:C1", "email_hash:e1", "device_id:d1"}


def test_an_absorbed_profile_leads_to_its_survivor() -> None:
    assert find_person(None, "p:old", ASSIGNED, set(), MERGES).survivor == "c:C1"


def test_an_identifier_no_link_placed_is_its_implicit_profile_alone() -> None:
    person = find_person("device_id:lonely", None, ASSIGNED, set(), MERGES)
    assert person.profiles == (implicit_profile_id("device_id:lonely"),)
    assert person.nodes == ("device_id:lonely",)


def test_a_shared_identifier_names_nobody_and_is_kept_when_erasing_someone_who_used_it() -> None:
    with pytest.raises(AmbiguousIdentifierError):
        find_person("device_id:family", None, ASSIGNED, {"device_id:family"}, MERGES)
    history: dict[str, list[tuple[Any, str | None]]] = {"device_id:family": [(1, "c:C1"), (2, None)]}
    person = find_person("customer_id:C1", None, ASSIGNED, {"device_id:family"}, MERGES, history)
    assert person.shared == ("device_id:family",) and "device_id:family" not in person.nodes


@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.sampled_from("abcdef")), max_size=12))
def test_merge_chains_of_any_shape_end(merges: list[tuple[str, str]]) -> None:
    person = find_person(None, "a", {}, set(), merges)  # cycles and self-merges included: it must terminate
    assert person.survivor in person.profiles and "a" in person.profiles


# --- ingest ---------------------------------------------------------------------------------------------------


def test_ingest_drops_an_erased_persons_event_as_suppressed_and_keeps_nothing(codec: AvroCodec = CODEC) -> None:
    tokens = Tokens(SECRET)
    digest = Pseudonymiser(SECRET).email(EMAIL)
    erased = {tokens.node(f"email_hash:{digest}")}
    registry = CollectorRegistry()
    step = make_step(codec, registry=registry)
    step._erased = lambda event: tokens.event_erased(event, erased)  # as pipeline/app.py wires it
    values = [codec.encode("web", web_event("e1", email=EMAIL)), codec.encode("web", web_event("e2")),
              codec.encode("web", {**web_event("e3", email=EMAIL.upper()), "quantity": 1})]  # fmt: skip
    out = step.process_batch([RawMessage(b"k", v, 0, i) for i, v in enumerate(values)])
    assert out.suppressed == 2 and not out.failed
    assert [r["event_id"] for r in out.records] == ["e2"]
    assert registry.get_sample_value("omnistream_events_suppressed_total", {"channel": "web"}) == 2
    assert out.ends[0][0] == 3


# --- journey ---------------------------------------------------------------------------------------------------


def test_the_erase_control_deletes_the_customer_record_pending_items_and_timers_at_once() -> None:
    base = next(e for e in simulated_events(SimConfig(customers=60, days=5, seed=3, end_ms=10**12), 1)
                if e["event_type"] == "add_to_cart")  # fmt: skip
    key = b"c:erase-me"
    source = input_source("web", 0)
    registry = CollectorRegistry()
    step = JourneyStep(CODEC, reference_config(12 * HOUR).session, journey_metrics(registry), lambda b: "sealed",
                       "resolved-events", [source, WRITER], erased=lambda p: p == "c:after")  # fmt: skip
    t0 = base["event_time"]

    def event(eid: str, t: int, customer: bytes = key) -> Entry:
        record = {**base, "event_id": eid, "event_time": t}
        return Entry(customer, CODEC.encode("customer-event", record), t, t, eid)

    def message(entries: list[Entry], mark: int) -> tuple[bytes, bytes]:
        return bundle(CODEC, entries, lambda _k: 0, 1, [Mark(source, mark), Mark(WRITER, mark)])[0]

    records: dict[bytes, bytes] = {}

    def run(messages: list[tuple[bytes, bytes]], first: int) -> Any:
        out = step.process(0, [(first + i, k, v) for i, (k, v) in enumerate(messages)], records.get)
        records.update({k: body for k, (body, _due) in out.states.items()})
        for k in out.erased:
            records.pop(k)
        return out

    run([message([event("e1", t0)], t0 + 1), message([event("e2", t0 + 2 * HOUR)], t0 + 1)], 0)
    assert key in records and step.partitions[0].due.get(key) is not None
    assert step.partitions[0].pending[key]  # e2 waits for the watermark
    out = run([(key, erase_control(CODEC, key.decode(), "r1"))], 2)
    assert out.erased == [key] and key not in out.states
    assert key not in step.partitions[0].pending and key not in step.partitions[0].due
    assert registry.get_sample_value("omnistream_journey_customers_erased_total") == 1
    # the timers that would have fired for it (cart abandoned, session end) emit nothing, long after
    later = run([message([], t0 + 200 * HOUR)], 3)
    assert not later.journey.signals and not later.sessions and key not in records
    # an event of an erased profile still in flight is dropped
    run([message([event("e9", t0 + 201 * HOUR, b"c:after")], t0 + 202 * HOUR)], 4)
    assert b"c:after" not in records
    assert registry.get_sample_value("omnistream_journey_events_suppressed_total") == 1


# --- failed events ---------------------------------------------------------------------------------------------


def test_a_failed_events_identifiers_are_found_in_its_original() -> None:
    pseudo = Pseudonymiser(SECRET)
    raw = CODEC.encode("web", web_event("e1", email=EMAIL, device_id="dev-9"))
    nodes = failed_nodes(CODEC, raw, pseudo)
    assert f"email_hash:{pseudo.email(EMAIL)}" in nodes and "device_id:dev-9" in nodes
    assert failed_nodes(CODEC, b"\x00garbage", pseudo) == []
    sealed = Quarantine(SECRET).seal(raw)
    assert failed_nodes(CODEC, Quarantine(SECRET).open(sealed), pseudo) == nodes
