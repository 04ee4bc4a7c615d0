"""The journey's state is recovered from its state topic as of the offset consumption resumes at, without Faust's
table recovery (agents/state_table.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from agents.state_table import catch_up_from, pack, recover, unpack
from pipeline.app import create_app
from pipeline.settings import load_settings
from pipeline.topics import journey_state_spec


def test_records_written_by_batches_after_the_resume_offset_are_skipped_and_the_key_keeps_its_previous_value() -> None:
    log = [
        (0, b"a", pack(10, None, b"a1")),
        (1, b"b", pack(10, 5, b"b1")),
        (2, b"a", pack(20, None, b"a2")),  # written by the batch ending at 20: consumed again from 12
        (3, b"c", pack(20, None, b"c1")),
        (4, None, b"ignored"),  # no key: not a record
    ]
    got = recover(log, 12)
    assert {k: unpack(v)[2] for k, v in got.items()} == {b"a": b"a1", b"b": b"b1"}
    assert unpack(got[b"b"])[1] == 5
    assert {k: unpack(v)[2] for k, v in recover(log, 20).items()} == {b"a": b"a2", b"b": b"b1", b"c": b"c1"}
    assert recover([*log, (5, b"a", None)], 20).keys() == {b"b", b"c"}  # a tombstone removes the key


records = st.lists(st.tuples(st.sampled_from([b"k1", b"k2", b"k3"]), st.integers(0, 50)), max_size=40)


@given(records, st.integers(0, 50))
def test_recover_equals_replaying_only_the_writes_at_or_before_the_offset(writes: list[tuple[bytes, int]],
                                                                          upto: int) -> None:  # fmt: skip
    log = [(i, key, pack(tag, None, f"{key!r}@{i}".encode())) for i, (key, tag) in enumerate(writes)]
    want: dict[bytes, bytes] = {}
    for _i, key, value in log:
        if unpack(value)[0] <= upto:
            want[key] = value
    assert recover(log, upto) == want


def test_catch_up_starts_at_the_state_offset_or_the_log_start() -> None:
    assert catch_up_from(10, 10, 0) is None  # the state is where consumption resumes
    assert catch_up_from(12, 10, 0) is None  # ahead: the replay is recognised by the customers' clocks
    assert catch_up_from(7, 10, 0) == 7
    assert catch_up_from(-1, 10, 4) == 4  # no state at all: everything still in the log
    assert catch_up_from(-1, 4, 4) is None


def test_the_worker_has_no_faust_table_and_publishes_state_to_its_own_topic(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path, metrics_port=0)
    app: Any = create_app(settings, registry=CollectorRegistry())
    assert not list(app.tables.values())  # nothing for Faust's table recovery to wait on
    spec = journey_state_spec(settings)
    assert spec.name == f"{settings.app_id}-journey-changelog" and spec.partitions == settings.partitions
    assert spec.configs["cleanup.policy"] == "compact" and int(spec.configs["min.compaction.lag.ms"]) >= 3_600_000
