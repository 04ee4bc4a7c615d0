"""Erasure in the link log: a replay after an erasure marker, with or without the replacements compacted into
place, gives the graph of the links without the erased person; the live writer's ``erase`` publishes exactly the
identifiers that changed (tombstones for the person's)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from pipeline.domain.identity_rules import DEFAULT_POLICY, link_candidates, nodes_of
from pipeline.domain.records import CustomerEventRecord
from pipeline.metrics import identity_metrics
from pipeline.privacy.linklog import LINK_PREFIX, for_replay, link_keys, marker, without_nodes
from pipeline.privacy.tokens import Tokens
from pipeline.simulate.config import SimConfig
from pipeline.steps.bundles import Entry, Mark, bundle, read
from pipeline.steps.identity import LINKS_KEY, IdentityWriter
from pipeline.steps.ingest import CANONICAL_SUBJECT
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from tests.unit.pipeline_model import simulated_events

END = 1_767_225_600_000
CODEC = AvroCodec(FileSchemaRegistry())
TOKENS = Tokens(b"test-secret")
Log = list[tuple[int, bytes | None, bytes | None, int | None]]


@pytest.fixture(scope="module")
def links() -> list[CustomerEventRecord]:
    config = SimConfig(customers=250, days=10, seed=5, end_ms=END, bad_share=0.0, late_share=0.0)
    events = [e for e in simulated_events(config, 2) if link_candidates(e) is not None]
    assert len(events) > 50
    return events


def writer() -> IdentityWriter:
    return IdentityWriter(CODEC, DEFAULT_POLICY, identity_metrics(CollectorRegistry()), ["src"], lambda b: "sealed",
                          tokens=TOKENS)  # fmt: skip


def link_log(events: Sequence[CustomerEventRecord], per_bundle: int = 7) -> Log:
    """Link bundles as ingest writes them (a key each), every bundle with the source's mark after it."""
    out: Log = []
    for i in range(0, len(events), per_bundle):
        chunk = events[i : i + per_bundle]
        entries = [Entry(LINKS_KEY, CODEC.encode(CANONICAL_SUBJECT, e), e["event_time"], e["event_time"],
                         e["event_id"]) for e in chunk]  # fmt: skip
        mark = Mark("src", max(e["event_time"] for e in chunk) + 1)
        for key, value in link_keys(bundle(CODEC, entries, lambda _k: 0, 1, [mark])):
            out.append((len(out), key, value, None))
    end = Mark("src", 2**62)
    out.append((len(out), LINK_PREFIX + b"end", bundle(CODEC, (), lambda _k: 0, 1, [end])[0][1], None))
    return out


def replayed(log: Log) -> IdentityWriter:
    w = writer()
    w.rebuild(iter(log), len(log) + 10**6)
    return w


def person_of(w: IdentityWriter) -> tuple[str, set[str]]:
    """The profile with the most identifiers, and those identifiers."""
    by_profile: dict[str, set[str]] = {}
    for node, profile in w.state.assignments.items():
        by_profile.setdefault(profile, set()).add(node)
    profile = max(sorted(by_profile), key=lambda p: len(by_profile[p]))
    assert len(by_profile[profile]) >= 3
    return profile, by_profile[profile]


def erasure(log: Log, nodes: set[str]) -> Log:
    """The marker and the replacements ``privacy erase`` appends to ``log``."""
    out: Log = list(log)
    key, value = marker("r1", [TOKENS.node(n) for n in nodes])
    out.append((len(out), key, value, None))
    for offset, k, v, _r in log:
        assert v is not None and k is not None
        replace, new = without_nodes(CODEC, v, lambda ns: any(n in nodes for n in ns))
        if replace:
            out.append((len(out), k, new, offset))
    return out


def compacted(log: Log) -> Log:
    last = {k: o for o, k, _v, _r in log}
    return [m for m in log if last[m[1]] == m[0] and m[2] is not None]


def graph(w: IdentityWriter) -> tuple[dict[str, str], set[str], dict[str, list[object]]]:
    return dict(w.state.assignments), set(w.state.shared), {n: list(h) for n, h in w.history.items()}


def test_a_replay_after_erasure_is_the_graph_without_the_person(links: list[CustomerEventRecord]) -> None:
    log = link_log(links)
    _, nodes = person_of(replayed(log))
    without = [e for e in links if not any(n in nodes for n in nodes_of(e))]
    expected = graph(replayed(link_log(without)))
    erased = erasure(log, nodes)
    assert graph(replayed(erased)) == expected
    assert graph(replayed(compacted(erased))) == expected  # after the broker compacted the originals away
    assert not nodes & set(replayed(erased).history)


def test_the_live_writer_publishes_tombstones_for_the_person_and_nothing_else_changes(
    links: list[CustomerEventRecord],
) -> None:
    log = link_log(links)
    live = replayed(log)
    before = graph(live)
    _, nodes = person_of(live)
    erased = erasure(log, nodes)
    marker_offset = len(log)
    out = live.erase(iter(erased), marker_offset + 1)
    tombstones = {k.decode() for k, v in out.assignments if v is None}
    assert tombstones == nodes
    changed = {k.decode() for k, v in out.assignments if v is not None}
    assert all(before[2].get(n) != graph(live)[2].get(n) for n in changed)
    assert graph(live) == graph(replayed(erased))


def test_the_writer_ignores_a_later_link_event_of_the_person(links: list[CustomerEventRecord]) -> None:
    log = link_log(links)
    live = replayed(log)
    _, nodes = person_of(live)
    erased = erasure(log, nodes)
    live.erase(iter(erased), len(log) + 1)
    again = link_log([e for e in links if any(n in nodes for n in nodes_of(e))][:3])
    for offset, key, value, _r in again[:-1]:
        assert key is not None and value is not None
        live.process_batch([(len(erased) + offset, key, value)])
    assert not nodes & set(live.state.assignments)


def test_a_replacement_keeps_the_other_links_and_no_marks(links: list[CustomerEventRecord]) -> None:
    (_o, _k, value, _r), *_ = link_log(links, per_bundle=20)
    assert value is not None
    entries, marks = read(CODEC, b"", value)
    first = nodes_of(CODEC.decode(entries[0].value).record)
    replace, new = without_nodes(CODEC, value, lambda ns: first[0] in ns)
    assert replace and new is not None
    kept, kept_marks = read(CODEC, b"", new)
    assert marks and not kept_marks
    assert [e.event_id for e in kept] == [e.event_id for e in entries if first[0] not in
                                          nodes_of(CODEC.decode(e.value).record)]  # fmt: skip
    assert without_nodes(CODEC, value, lambda ns: False) == (False, None)
    assert without_nodes(CODEC, value, lambda ns: True) == (True, None)  # nothing left: a tombstone


keys = st.sampled_from([LINK_PREFIX + bytes([c]) for c in b"abcde"] + [b"links", b"~partition/0/0"])
values = st.one_of(st.none(), st.binary(min_size=1, max_size=3))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(keys, values), max_size=30), st.lists(st.integers(0, 29), max_size=3), st.booleans())
def test_for_replay_takes_each_key_once_at_the_original_place_with_its_latest_value(
    messages: list[tuple[bytes, bytes | None]], marker_at: list[int], compact: bool
) -> None:
    log: Log = []
    first: dict[bytes, int] = {}
    for i, (key, value) in enumerate(messages):
        if i in marker_at:
            k, v = marker(f"r{i}", [f"t{i}"])
            log.append((len(log), k, v, None))
        again = key in first and key.startswith(LINK_PREFIX)
        log.append((len(log), key, value, first[key] if again else None))
        first.setdefault(key, len(log) - 1)
    # brute force: unique keys stand at their first offset with the last value; other keys stay per message
    expected: dict[int, tuple[bytes, bytes | None]] = {}
    for offset, key, value, _r in log:
        if key is not None and key.startswith(b"erase/"):
            continue
        at = first[key] if key is not None and key.startswith(LINK_PREFIX) else offset
        expected[at] = (key or b"", value)
    if compact:  # the broker keeps only the latest record of a unique key (at its own offset)
        last = {m[1]: m[0] for m in log if m[1] is not None and m[1].startswith(LINK_PREFIX)}
        log = [m for m in log if m[1] not in last or last[m[1]] == m[0]]
    kept, erased = for_replay(iter(log))
    assert erased == {f"t{i}" for i in marker_at if i < len(messages)}
    assert kept == [(o, k, v) for o, (k, v) in sorted(expected.items()) if v]
