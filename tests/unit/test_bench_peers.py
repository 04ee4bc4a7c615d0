"""bench/peers/core.py: what the three peer jobs share (framing, decode, customer key, session step, drain) and
the peer rows of bench/report.py. No broker: the jobs themselves run only in ``python -m bench``."""

from __future__ import annotations

import contextlib
import json
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.context import Measurement
from bench.peers.core import (
    GAP_MS,
    BadInput,
    CoreJob,
    Decoder,
    Ends,
    advance,
    customer_key,
    encode,
    strip_logical,
    unframe,
    update,
)
from bench.peers.runner import PEERS, row, schema_table
from bench.report import cpu_ratio, per_cpu_second, table
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from tests.avro_strategies import strategy

NOW = 1_760_000_000_000
CODEC = AvroCodec(FileSchemaRegistry())
SCHEMAS = schema_table()
DECODER = Decoder(SCHEMAS)
CHANNELS = ("web", "mobile", "store", "social")
times = st.integers(NOW - 90 * 86_400_000, NOW)


def web_event(event_time: int = NOW, **identifiers: str) -> bytes:
    """A framed web event with only the required fields (the others take their defaults)."""
    record = {"envelope": {"event_id": "e1", "event_time": event_time, "identifiers": identifiers},
              "event_type": "page_view"}  # fmt: skip
    return CODEC.encode("web", record)


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal records, NaN included (NaN != NaN, but both dump to the same JSON; bytes by repr)."""
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr)


def test_unframe_reads_the_schema_id_and_refuses_a_bad_header() -> None:
    assert unframe(struct.pack(">BI", 0, 123456) + b"body") == 123456
    for bad in (None, b"", b"\x00\x00\x01", b"\x01\x00\x00\x00\x01body"):
        with pytest.raises(BadInput):
            unframe(bad)


def test_strip_logical_removes_every_logical_type() -> None:
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "u", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
        {"name": "a", "type": {"type": "array", "items": {"type": "int", "logicalType": "date"}}},
    ]}  # fmt: skip
    assert "logicalType" not in json.dumps(strip_logical(schema))
    assert schema["fields"][0]["type"]["logicalType"] == "timestamp-millis"  # type: ignore[index]  # not mutated


def test_the_table_has_every_version_of_the_channel_subjects_and_readers_only_for_older_ones() -> None:
    registry = FileSchemaRegistry()
    assert {int(i) for i in SCHEMAS} == {s.schema_id for s in registry.all_schemas() if s.subject in CHANNELS}
    for sid, entry in SCHEMAS.items():
        latest = registry.latest(entry["subject"])
        assert (entry["reader"] is None) == (latest.schema_id == int(sid))


@pytest.mark.parametrize("channel", CHANNELS)
def test_decoder_reads_what_the_project_codec_reads(channel: str) -> None:
    schema = json.loads(CODEC.registry.latest(channel).schema_json)

    @given(record=strategy(schema, NOW))
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def check(record: dict[str, Any]) -> None:
        data = CODEC.encode(channel, record)
        assert same(DECODER.decode(data), CODEC.decode(data).record)

    check()


def test_older_writer_versions_are_read_through_the_latest() -> None:
    older = [s for s in FileSchemaRegistry().all_schemas() if SCHEMAS.get(str(s.schema_id), {}).get("reader")]
    assert older, "the contracts have an evolved subject"
    for schema in older:
        check_version(schema.subject, schema.version, json.loads(schema.schema_json))


def check_version(subject: str, version: int, schema: Any) -> None:
    @given(record=strategy(schema, NOW))
    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def check(record: dict[str, Any]) -> None:
        data = CODEC.encode(subject, record, version)
        assert same(DECODER.decode(data), CODEC.decode(data).record)

    check()


@given(data=st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_bytes_decode_or_raise_bad_input(data: bytes) -> None:
    for framed in (data, struct.pack(">BI", 0, int(next(iter(SCHEMAS)))) + data):
        with contextlib.suppress(BadInput):
            DECODER.decode(framed)


def test_truncated_padded_and_non_channel_messages_are_bad_input() -> None:
    data = web_event(customer_id="c1")
    other = FileSchemaRegistry().latest("session").schema_id
    for bad in (data[: len(data) - 3], data + b"\x00", struct.pack(">BI", 0, 1) + data[5:],
                struct.pack(">BI", 0, other) + data[5:]):  # fmt: skip
        with pytest.raises(BadInput):
            DECODER.decode(bad)


def test_customer_key_takes_the_first_non_blank_identifier_in_order() -> None:
    def key(**ids: str | None) -> str | None:
        return customer_key({"envelope": {"identifiers": ids}})

    assert key(anonymous_id="a", device_id="d", loyalty_id="l", customer_id="c") == "c"
    assert key(customer_id="  ", loyalty_id=" l1 ", device_id="d") == "l1"
    assert key(social_handle="@x", anonymous_id="a") == "a"
    assert key(email="jane@example.com", phone="+4915100000000") is None
    assert key() is None


@given(gaps=st.lists(st.integers(0, 3 * GAP_MS), min_size=1, max_size=60), start=times)
def test_in_order_events_split_into_sessions_exactly_at_gaps_over_30_minutes(gaps: list[int], start: int) -> None:
    moments = [start + sum(gaps[: i + 1]) for i in range(len(gaps))]
    state = None
    for i, t in enumerate(moments):
        state, late = advance(state, t)
        assert not late
        first = max(j for j in range(i + 1) if j == 0 or moments[j] - moments[j - 1] > GAP_MS)
        assert state == (moments[first], t, i - first + 1)


@given(moments=st.lists(times, min_size=1, max_size=60))
def test_any_order_keeps_a_consistent_session(moments: list[int]) -> None:
    state = None
    for t in moments:
        before = state
        state, late = advance(state, t)
        start, end, events = state
        assert start <= end and events >= 1
        if late:
            assert before is not None and state == before and t < before[0] - GAP_MS
        else:
            assert start <= t <= end
            assert before is None or events in (1, before[2] + 1)


def test_update_is_compact_json_with_the_session() -> None:
    out = json.loads(encode(update("c1", (1, 2, 3), False)))
    assert out == {"customer": "c1", "start_ms": 1, "end_ms": 2, "events": 3, "late": False}


def test_ends_waits_for_every_non_empty_partition() -> None:
    ends = Ends({"a.web:0": 2, "a.web:1": 0, "a.social:0": 1})
    assert ends.expected == 3
    assert not ends.processed("a.web", 0, 0)
    assert not ends.processed("a.web", 0, 1)
    assert ends.processed("a.social", 0, 0)
    assert Ends({"a.web:0": 0}).remaining == set()


def test_core_job_counts_bad_unkeyed_rekeyed_and_late() -> None:
    job = CoreJob({"schemas": SCHEMAS})
    good = web_event(customer_id="c1")
    unkeyed = web_event(email="jane@example.com")
    assert job.event(b"c1", good) == ("c1", NOW)
    assert job.event(b"other", good) == ("c1", NOW)
    assert job.event(b"x", b"garbage") is None
    assert job.event(b"x", unkeyed) is None
    session, _late = job.step(None, NOW)
    assert job.step(session, NOW - 2 * GAP_MS) == (session, True)
    t = job.tally
    assert (t.events, t.bad, t.unkeyed, t.rekeyed, t.late, t.updates) == (4, 1, 1, 1, 1, 2)
    result = job.result(4)
    assert result["drained"] and result["events"] == 4 and result["seconds"] > 0


def _result(**over: Any) -> dict[str, Any]:
    res = {"events": 100, "expected": 100, "drained": True, "seconds": 2.0, "cpu_percent": 50.0, "bad": 1,
           "unkeyed": 2, "late": 3, "rekeyed": 0, "updates": 97, "packages": ["bytewax 0.21.1"]}  # fmt: skip
    return res | over


def test_a_peer_row_is_ok_only_when_drained_and_every_update_is_in_the_output_topic() -> None:
    peer = PEERS[1]
    ok = row(peer, _result(), 97, 3.0, 1 << 20, 10.0)
    assert ok.status == "ok" and ok.rate == 50 and ok.cpu_percent == 50
    assert row(peer, _result(), 90, 3.0, 0, 0.0).status == "partial"
    short = row(peer, _result(events=80, drained=False), 97, 3.0, 0, 0.0)
    assert short.status == "partial" and "processed 80 of 100" in short.note


def test_events_per_cpu_second_in_every_row_and_the_ratio() -> None:
    one = Measurement("omnistream_1w", "1w", events=1000, seconds=10.0, rate=100.0, cpu_percent=50.0)
    peer = row(PEERS[0], _result(), 97, 3.0, 0, 0.0)
    failed = Measurement("peer_bytewax", "bw", status="failed")
    assert per_cpu_second(one) == pytest.approx(200.0)
    assert per_cpu_second(peer) == pytest.approx(100.0)
    assert per_cpu_second(failed) is None
    assert cpu_ratio(one, peer) == pytest.approx(2.0)
    assert cpu_ratio(one, failed) is None
    lines = table([one, peer, failed])
    assert "events per CPU-second" in lines[0]
    assert all(line.count("|") == lines[0].count("|") for line in lines[2:])
