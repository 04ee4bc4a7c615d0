"""The whole event-time path without a broker: any interleaving of sources and stages, and journey partitions
crashing and recovering, give exactly the rows of the batch reference (tests/unit/pipeline_model.py)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from agents.state_table import unpack
from pipeline.evaluate.reference import reference
from pipeline.evaluate.sessions import attribute, evaluate_sessions
from pipeline.simulate.config import SimConfig
from pipeline.steps.bundles import read
from pipeline.steps.journey import Tally
from pipeline.steps.journey_customer import CustomerState
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from tests.unit.pipeline_model import Model, comparable, reference_config, simulated_events, warehouse

END = 1_780_000_000_000 - 1_780_000_000_000 % 60_000
LATENESS = 6 * 3_600_000
CODEC = AvroCodec(FileSchemaRegistry())


@pytest.fixture(scope="module")
def events() -> list:
    config = SimConfig(customers=300, days=10, seed=11, end_ms=END, bad_share=0.0, late_share=0.03)
    return simulated_events(config, partitions=3)


@pytest.mark.parametrize("seed", range(1, 9))
def test_any_interleaving_gives_the_reference_rows(events: list, seed: int) -> None:
    config = reference_config(LATENESS)
    model = Model(
        events, config, CODEC, partitions=3, lateness_ms=LATENESS, rng=random.Random(seed), duplicate_rate=0.2
    )
    model.run()
    got = comparable(warehouse(model.outputs, CODEC))
    want = comparable(reference(model.accepted, config, CODEC))
    for table in want:
        assert got[table] == want[table], table
    assert_tallies(model)
    assert len(want["sessions"]) > 300 and len(want["merges"]) > 50 and want["signals"]


@pytest.mark.parametrize("seed", range(20, 26))
def test_crashes_and_recovery_give_the_reference_rows(events: list, seed: int) -> None:
    config = reference_config(LATENESS)
    model = Model(
        events,
        config,
        CODEC,
        partitions=3,
        lateness_ms=LATENESS,
        rng=random.Random(seed),
        crash_rate=0.15,
        duplicate_rate=0.2,
    )
    model.run()
    assert model.crashes >= 5
    got = comparable(warehouse(model.outputs, CODEC))
    want = comparable(reference(model.accepted, config, CODEC))
    for table in want:
        assert got[table] == want[table], table
    assert_tallies(model)


@pytest.mark.parametrize("seed", range(40, 44))
def test_state_recovered_behind_the_committed_offset_catches_up_to_the_reference_rows(events: list, seed: int) -> None:
    config = reference_config(LATENESS)
    model = Model(events, config, CODEC, partitions=3, lateness_ms=LATENESS, rng=random.Random(seed), crash_rate=0.15,
                  duplicate_rate=0.2, stale_rate=0.5)  # fmt: skip
    model.run()
    assert model.crashes >= 5 and model.caught_up > 0
    got = comparable(warehouse(model.outputs, CODEC))
    want = comparable(reference(model.accepted, config, CODEC))
    for table in want:
        assert got[table] == want[table], table
    assert_tallies(model)


@pytest.mark.parametrize("seed", [1, 2])
def test_sessions_equal_the_recomputation_of_evaluate_sessions(events: list, seed: int) -> None:
    # The allowed lateness (6 h) is far shorter than the history (10 days): many merges come after sessions of the
    # absorbed profile became final, and those stay apart (docs/time.md) in the stream and in the recomputation.
    config = reference_config(LATENESS)
    model = Model(
        events, config, CODEC, partitions=3, lateness_ms=LATENESS, rng=random.Random(seed), duplicate_rate=0.2
    )
    model.run()
    first: dict[str, str] = {}
    for log in model.resolved.logs:
        for key, value in log:
            for entry in read(CODEC, key, value)[0]:
                decoded = CODEC.decode(entry.value)
                if decoded.subject == "customer-event" and entry.key:
                    first.setdefault(decoded.record["event_id"], entry.key.decode())
    merges = [dict(CODEC.decode(v).record) for _k, v in model.outputs["merges"]]
    att = attribute(first, merges, model.accepted, config.session)
    sessions = [CODEC.decode(v).record for _k, v in model.outputs["sessions"]]
    diff, n_stream, _ = evaluate_sessions(sessions, model.accepted, att.final, config.session, att.merges, att.apart)
    assert diff.differing == 0 and diff.only_batch == [], (diff.only_stream[:2], diff.only_batch[:2])
    assert n_stream > 300 and att.apart


def assert_tallies(model: Model) -> None:
    """The partition totals behind the gauges equal a count over the partition's records, through crashes."""
    for p, table in enumerate(model.tables):
        records = [unpack(v)[2] or b"" for k, v in table.items() if k != b"~state"]
        want = Tally(0, 0, 0, 0)
        for body in records:
            want = want.moved(Tally(0, 0, 0, 0), Tally.of(CustomerState.decode(body), len(body)))
        part = model.step.partitions.get(p)
        persisted = Tally(*json.loads(unpack(table[b"~state"])[2] or b"{}").get("t", (0, 0, 0, 0)))
        assert (part.tally if part else persisted) == persisted == want
        assert want.customers == len(records) > 0 and want.state_bytes > 0


def test_a_customer_the_journey_fails_on_becomes_processing_errors_and_the_others_are_unchanged(events: list) -> None:
    config = reference_config(LATENESS)

    def run(broken: str | None) -> Model:
        model = Model(events, config, CODEC, partitions=3, lateness_ms=LATENESS, rng=random.Random(3))
        if broken is not None:
            machine = model.step._machine
            advance = machine.advance

            def failing(customer: str, *args: Any, **kwargs: Any) -> Any:
                if customer == broken:  # a bug that only this customer's records reach
                    raise ZeroDivisionError("injected")
                return advance(customer, *args, **kwargs)

            machine.advance = failing  # type: ignore[method-assign]
        model.run()
        return model

    clean = run(None)
    rows = comparable(warehouse(clean.outputs, CODEC))
    merged = {c for pair in rows["merges"] for c in pair}
    sessions_of: dict[str, int] = {}
    for s in rows["sessions"].values():
        sessions_of[s["customer_id"]] = sessions_of.get(s["customer_id"], 0) + 1
    broken = max((c for c in sessions_of if c not in merged), key=lambda c: (sessions_of[c], c))

    faulty = run(broken)
    failed = [dict(CODEC.decode(v).record) for _k, v in faulty.outputs["failed"]]
    errors = [f for f in failed if f["failure_type"] == "processing_error"]
    assert errors and all(f["rule"] == "unexpected_exception" and "injected" in f["reason"] for f in errors)
    assert len({f["event_id"] for f in errors}) == len(errors)
    got = comparable(warehouse(faulty.outputs, CODEC))
    for table in ("sessions", "transitions", "signals"):
        others = {k: r for k, r in rows[table].items() if r["customer_id"] != broken}
        assert {k: r for k, r in got[table].items() if r["customer_id"] != broken} == others, table
        assert not any(r["customer_id"] == broken for r in got[table].values()), table
    assert faulty.step.partitions and all(not part.pending for part in faulty.step.partitions.values())


def test_a_link_the_identity_writer_fails_on_is_a_processing_error_and_nothing_else_changes(
    events: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.steps.identity as identity_step
    from pipeline.domain.identity_rules import link_candidates

    links = [e for e in events if link_candidates(e) is not None]
    victim = links[len(links) // 2]["event_id"]
    apply_link = identity_step.apply_link

    def failing(state: Any, link: Any, *args: Any, **kwargs: Any) -> Any:
        if link.event_id == victim:  # a bug that only this link reaches, before it changes anything
            raise KeyError("injected")
        return apply_link(state, link, *args, **kwargs)

    monkeypatch.setattr(identity_step, "apply_link", failing)
    config = reference_config(LATENESS)
    model = Model(events, config, CODEC, partitions=3, lateness_ms=LATENESS, rng=random.Random(5))
    model.run()
    failed = [dict(CODEC.decode(v).record) for _k, v in model.outputs["failed"]]
    errors = [f for f in failed if f["failure_type"] == "processing_error"]
    assert [(f["event_id"], f["rule"]) for f in errors] == [(victim, "unexpected_exception")]
    got = comparable(warehouse(model.outputs, CODEC))
    want = comparable(reference([e for e in model.accepted if e["event_id"] != victim], config, CODEC))
    for table in want:
        assert got[table] == want[table], table
