"""Event bundles: every entry lands on its own key's partition, in order, with its position; progress marks reach
every partition after the entries they cover; single messages read back as themselves."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2

from pipeline.steps.bundles import BUNDLE_SUBJECT, Entry, Mark, bundle, partition_key, read
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry

CODEC = AvroCodec(FileSchemaRegistry())
PARTITIONS = 4


def partition_of(key: bytes) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % PARTITIONS


def _entries(n: int, customers: int = 9) -> list[Entry]:
    return [Entry(f"c:{i % customers}".encode(), f"event-{i}".encode() * (1 + i % 5), 1000 + i, 990 + i, f"e{i}")
            for i in range(n)]  # fmt: skip


def test_bundles_follow_their_entries_partition_and_read_back_in_order() -> None:
    entries = _entries(200)
    marks = [Mark("web/0", 1_199), Mark("web/1", 50, idle=True)]
    bundles = bundle(CODEC, entries, partition_of, PARTITIONS, marks)
    assert len(bundles) == PARTITIONS  # small entries: one bundle per partition, each with the marks
    seen: list[Entry] = []
    for key, value in bundles:
        assert CODEC.subject_of(value) == BUNDLE_SUBJECT
        got, got_marks = read(CODEC, key, value)
        assert {partition_of(e.key) for e in got} == {partition_of(key)}  # the bundle's key routes it right
        assert got_marks == marks
        seen += got
    for p in range(PARTITIONS):  # order within a partition is kept, positions too
        assert [e for e in seen if partition_of(e.key) == p] == [e for e in entries if partition_of(e.key) == p]


def test_marks_reach_partitions_without_entries() -> None:
    one = [Entry(b"c:1", b"x", 5, 5, "e")]
    bundles = bundle(CODEC, one, partition_of, PARTITIONS, [Mark("writer", 7)])
    reached = {partition_of(key) for key, _ in bundles}
    assert reached == set(range(PARTITIONS))
    for key, value in bundles:
        got, marks = read(CODEC, key, value)
        assert marks == [Mark("writer", 7)]
        assert got == ([] if partition_of(key) != partition_of(b"c:1") else one)
    assert bundle(CODEC, [], partition_of, PARTITIONS) == []  # nothing to say: nothing sent


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 120), max_bytes=st.integers(1, 600))
def test_bundles_respect_the_size_bound_and_lose_nothing(n: int, max_bytes: int) -> None:
    entries = _entries(n)
    bundles = bundle(CODEC, entries, partition_of, PARTITIONS, max_bytes=max_bytes)
    read_back = [read(CODEC, k, v)[0] for k, v in bundles]
    assert sorted((e.key, e.value, e.event_id) for group in read_back for e in group) == sorted(
        (e.key, e.value, e.event_id) for e in entries
    )
    for group in read_back:
        assert len(group) == 1 or sum(len(e.key) + len(e.value) + len(e.event_id) + 40 for e in group) <= max_bytes


def test_partition_keys_land_on_their_partition() -> None:
    for partitions in (1, 4, 7, 12):
        for p in range(partitions):
            assert (murmur2(partition_key(p, partitions)) & 0x7FFFFFFF) % partitions == p


def test_single_messages_read_back_as_themselves() -> None:
    control = CODEC.encode(
        "journey-control", {"kind": "absorbed", "old_id": "a", "new_id": "b", "state_json": None, "event_id": "e"}
    )
    assert read(CODEC, b"a", control) == ([Entry(b"a", control)], [])
