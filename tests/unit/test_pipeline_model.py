"""The whole event-time path without a broker: any interleaving of sources and stages, and journey partitions
crashing and recovering, give exactly the rows of the batch reference (tests/unit/pipeline_model.py)."""

from __future__ import annotations

import json
import random

import pytest

from agents.state_table import unpack
from pipeline.evaluate.reference import reference
from pipeline.simulate.config import SimConfig
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
