"""Event bundles: every entry lands on its own key's partition, in order, and expands back to the same messages."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2

from pipeline.steps.bundles import BUNDLE_SUBJECT, bundle, expand
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry

CODEC = AvroCodec(FileSchemaRegistry())
PARTITIONS = 4


def partition_of(key: bytes) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % PARTITIONS


def _items(n: int, customers: int = 9) -> list[tuple[bytes, bytes]]:
    return [(f"c:{i % customers}".encode(), f"event-{i}".encode() * (1 + i % 5)) for i in range(n)]


def test_bundles_follow_their_entries_partition_and_expand_in_order() -> None:
    items = _items(200)
    bundles = bundle(CODEC, items, partition_of)
    assert len(bundles) <= PARTITIONS  # small entries: one bundle per partition
    seen: list[tuple[bytes, bytes]] = []
    for key, value in bundles:
        assert CODEC.subject_of(value) == BUNDLE_SUBJECT
        entries = list(expand(CODEC, key, value))
        assert {partition_of(k) for k, _ in entries} == {partition_of(key)}  # the bundle's key routes it right
        seen += entries
    for p in range(PARTITIONS):  # order within a partition is kept
        assert [i for i in seen if partition_of(i[0]) == p] == [i for i in items if partition_of(i[0]) == p]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 120), max_bytes=st.integers(1, 600))
def test_bundles_respect_the_size_bound_and_lose_nothing(n: int, max_bytes: int) -> None:
    items = _items(n)
    bundles = bundle(CODEC, items, partition_of, max_bytes=max_bytes)
    expanded = [list(expand(CODEC, k, v)) for k, v in bundles]
    assert sorted(e for entries in expanded for e in entries) == sorted(items)
    for entries in expanded:
        assert len(entries) == 1 or sum(len(k) + len(v) + 8 for k, v in entries) <= max_bytes


def test_single_messages_pass_through_expand() -> None:
    control = CODEC.encode(
        "journey-control", {"kind": "merge", "old_id": "a", "new_id": "b", "state_json": None, "event_id": "e"}
    )
    assert list(expand(CODEC, b"a", control)) == [(b"a", control)]
