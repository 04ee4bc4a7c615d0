"""DuckDBSink without Kafka: batches + offsets in one transaction, replays, versions, merges, snapshots."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
from prometheus_client import CollectorRegistry

from pipeline.clock import ManualClock
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from sinks import synthetic as syn
from sinks.contract import Batch, Reject, SinkInfraError, SinkRow
from sinks.duckdb_sink import DuckDBSink
from sinks.metrics import sink_metrics
from sinks.snapshot import open_snapshot, published_at_ms
from sinks.tables import DEFAULT_TABLES, TABLES, BoundTable, bind_tables

T0 = 1_700_000_000_000
RNG = random.Random(5)


@pytest.fixture
def tables() -> list[BoundTable]:
    return bind_tables([*DEFAULT_TABLES, "customer_events"], lambda name: name, FileSchemaRegistry())


def make_sink(tmp_path: Path, tables: list[BoundTable], **kw: Any) -> DuckDBSink:
    return DuckDBSink(tmp_path / "live.duckdb", tmp_path / "snap.duckdb", tables, clock=ManualClock(T0), **kw)


class Feed:
    """Builds batches with increasing offsets per (topic, partition), like a consumer would."""

    def __init__(self) -> None:
        self.next: dict[tuple[str, int], int] = {}

    def batch(self, *items: tuple[str, dict[str, Any]], partition: int = 0) -> Batch:
        out = Batch()
        for table, values in items:
            topic = TABLES[table].topic
            offset = self.next.get((topic, partition), 0)
            self.next[(topic, partition)] = offset + 1
            out.rows.append(SinkRow(table, topic, partition, offset, values))
            out.add_offset(topic, partition, offset)
        return out


def q(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    return con.execute(sql).fetchall()


def test_batch_and_offsets_commit_together_and_resume(tmp_path: Path, tables: list[BoundTable]) -> None:
    sink = make_sink(tmp_path, tables)
    assert sink.open() == {}
    feed = Feed()
    batch = feed.batch(*(("sessions", syn.session(RNG, f"s{i}", f"c{i}", T0)) for i in range(5)))
    result = sink.write(batch)
    assert result.rows_written == {"sessions": 5}
    sink.close()

    again = make_sink(tmp_path, tables)
    assert again.open() == {("sessions", 0): 5}
    con = again.connection()
    assert q(con, "SELECT count(*) FROM sessions") == [(5,)]
    assert q(con, "SELECT next_offset FROM _sink_offsets WHERE topic = 'sessions' AND \"partition\" = 0") == [(5,)]


def test_replayed_batch_is_a_no_op(tmp_path: Path, tables: list[BoundTable]) -> None:
    sink = make_sink(tmp_path, tables)
    sink.open()
    feed = Feed()
    first = feed.batch(*(("signals", syn.signal(f"g{i}", f"c{i}", "cart_abandoned", T0)) for i in range(4)))
    sink.write(first)
    replay = sink.write(first)
    assert replay.replayed == 4 and replay.rows_written == {}
    # A batch overlapping the committed range: only the new offsets count.
    overlap = Batch(rows=[*first.rows])
    extra = syn.signal("g-new", "c9", "win_back", T0)
    overlap.rows.append(SinkRow("signals", "signals", 0, 4, extra))
    for row in overlap.rows:
        overlap.add_offset(row.topic, row.partition, row.offset)
    result = sink.write(overlap)
    assert result.replayed == 4 and result.rows_written == {"signals": 1}
    assert q(sink.connection(), "SELECT count(*), count(DISTINCT signal_id) FROM signals") == [(5, 5)]


def test_upstream_duplicates_at_new_offsets_are_ignored(tmp_path: Path, tables: list[BoundTable]) -> None:
    sink = make_sink(tmp_path, tables)
    sink.open()
    feed = Feed()
    t = syn.transition("c1", 1, None, "engaged", T0)
    sink.write(feed.batch(("journey_transitions", t), ("journey_transitions", t)))
    sink.write(feed.batch(("journey_transitions", t)))
    assert q(sink.connection(), "SELECT count(*) FROM journey_transitions") == [(1,)]


@pytest.mark.parametrize("order", [(1, 2, 3), (3, 1, 2), (2, 3, 1)])
def test_session_versions_upsert_in_any_order(tmp_path: Path, tables: list[BoundTable], order: tuple[int, ...]) -> None:
    sink = make_sink(tmp_path, tables)
    sink.open()
    feed = Feed()
    versions = {v: syn.session(RNG, "s1", "c1", T0, version=v, bought=["p"] * v) for v in (1, 2, 3)}
    for v in order:
        sink.write(feed.batch(("sessions", versions[v])))
    assert q(sink.connection(), "SELECT version, revenue_minor FROM sessions") == [(3, 3 * 1999)]


def test_merged_session_is_a_tombstone_not_a_live_session(tmp_path: Path, tables: list[BoundTable]) -> None:
    sink = make_sink(tmp_path, tables)
    sink.open()
    feed = Feed()
    sink.write(
        feed.batch(("sessions", syn.session(RNG, "s1", "c1", T0)), ("sessions", syn.session(RNG, "s2", "c1", T0)))
    )
    tomb = syn.session(RNG, "s2", "c1", T0, version=2, status="merged", merged_into="s1")
    sink.write(feed.batch(("sessions", tomb)))
    # A late lower version must not bring the merged session back.
    sink.write(feed.batch(("sessions", syn.session(RNG, "s2", "c1", T0, version=1))))
    con = sink.connection()
    assert q(con, "SELECT session_id FROM live_sessions ORDER BY 1") == [("s1",)]
    assert q(con, "SELECT status, merged_into FROM sessions WHERE session_id = 's2'") == [("merged", "s1")]


@pytest.mark.parametrize("merge_first", [True, False])
def test_identity_merges_leave_no_orphans(tmp_path: Path, tables: list[BoundTable], merge_first: bool) -> None:
    sink = make_sink(tmp_path, tables)
    sink.open()
    feed = Feed()
    rows = feed.batch(
        ("sessions", syn.session(RNG, "s-a", "p:a", T0)),
        ("sessions", syn.session(RNG, "s-b", "p:b", T0)),
        ("signals", syn.signal("g-a", "p:a", "cart_abandoned", T0)),
        ("journey_transitions", syn.transition("p:a", 1, None, "engaged", T0)),
        ("customers", syn.profile("p:a", 1, T0)),
        ("customers", syn.profile("c:1", 4, T0)),
    )
    merges = feed.batch(
        ("identity_merges", syn.merge("p:a", "p:b", T0)), ("identity_merges", syn.merge("p:b", "c:1", T0))
    )
    for batch in (merges, rows) if merge_first else (rows, merges):
        sink.write(batch)
    con = sink.connection()
    for table in ("sessions", "signals", "journey_transitions", "customers"):
        orphans = q(con, f"SELECT count(*) FROM {table} WHERE customer_id IN (SELECT old_id FROM _identity_alias)")
        assert orphans == [(0,)], table
    assert q(con, "SELECT DISTINCT customer_id FROM sessions") == [("c:1",)]
    assert q(con, "SELECT customer_id, version FROM customers") == [("c:1", 4)]
    assert q(con, "SELECT old_id, final_id FROM _identity_alias ORDER BY 1") == [("p:a", "c:1"), ("p:b", "c:1")]
    # A late row of an absorbed id lands on the survivor.
    sink.write(feed.batch(("signals", syn.signal("g-late", "p:b", "win_back", T0))))
    assert q(con, "SELECT customer_id FROM signals WHERE signal_id = 'g-late'") == [("c:1",)]


def test_rejects_are_stored_and_advance_offsets(tmp_path: Path, tables: list[BoundTable]) -> None:
    sink = make_sink(tmp_path, tables)
    sink.open()
    batch = Batch(rejects=[Reject("signals", 2, 7, "AvroDecodeError: truncated", b"\x00\x01")])
    batch.add_offset("signals", 2, 7)
    assert sink.write(batch).rejects == 1
    assert sink.committed == {("signals", 2): 8}
    assert q(sink.connection(), "SELECT error, value FROM _sink_rejects") == [
        ("AvroDecodeError: truncated", b"\x00\x01")
    ]


def test_columns_follow_the_avro_contracts(tables: list[BoundTable]) -> None:
    codec = AvroCodec(FileSchemaRegistry())
    samples = {
        "sessions": syn.session(RNG, "s", "c", T0, bought=["a"], campaign_ids=["k"]),
        "journey_transitions": syn.transition("c", 1, None, "engaged", T0),
        "signals": syn.signal("g", "c", "churn_risk", T0, score=0.2),
        "customers": syn.profile("c", 1, T0, first_purchase_day=19_000),
        "identity_merges": syn.merge("a", "b", T0),
        "failed_events": syn.failed(3),
    }
    for table in tables:
        if table.name in samples:
            decoded = codec.decode(codec.encode(table.spec.subject, samples[table.name])).record
            assert {c.name for c in table.columns} == set(decoded), table.name
            assert table.arrow([decoded]).num_rows == 1


def test_snapshot_is_readable_while_the_sink_writes(tmp_path: Path, tables: list[BoundTable]) -> None:
    registry = CollectorRegistry()
    sink = make_sink(tmp_path, tables, metrics=sink_metrics(registry))
    sink.open()
    feed = Feed()
    sink.write(feed.batch(("failed_events", syn.failed(1))))
    info = sink.publish()
    assert info is not None and info.path == tmp_path / "snap.duckdb"
    reader = open_snapshot(tmp_path / "snap.duckdb")
    assert published_at_ms(reader) == T0
    sink.write(feed.batch(("failed_events", syn.failed(2))))
    sink.publish()
    # The open reader keeps its (old, unlinked) file; a new open sees the new state. No lock errors either way.
    assert q(reader, "SELECT count(*) FROM failed_events") == [(1,)]
    reader.close()
    with open_snapshot(tmp_path / "snap.duckdb") as fresh:
        assert q(fresh, "SELECT count(*) FROM failed_events") == [(2,)]
    assert sink.publish() is None  # nothing new: no copy
    assert registry.get_sample_value("omnistream_snapshot_age_seconds") == 0.0


def _hold_lock(db: Path, seconds: float) -> subprocess.Popen[str]:
    code = textwrap.dedent(
        f"""
        import duckdb, sys, time
        con = duckdb.connect({str(db)!r})
        print("locked", flush=True)
        time.sleep({seconds})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_held_by_another_process_is_retried_then_fatal(tmp_path: Path, tables: list[BoundTable]) -> None:
    holder = _hold_lock(tmp_path / "live.duckdb", 30)
    try:
        sink = make_sink(tmp_path, tables, retry_for_s=1.0)
        with pytest.raises(SinkInfraError, match="kept failing"):
            sink.open()
    finally:
        holder.kill()
        holder.wait()


def test_lock_released_in_time_is_survived(tmp_path: Path, tables: list[BoundTable]) -> None:
    registry = CollectorRegistry()
    holder = _hold_lock(tmp_path / "live.duckdb", 1.0)
    started = time.monotonic()
    sink = make_sink(tmp_path, tables, retry_for_s=30.0, metrics=sink_metrics(registry))
    assert sink.open() == {}
    holder.wait()
    assert time.monotonic() - started >= 0.5
    assert (registry.get_sample_value("omnistream_sink_infra_retries_total", {"operation": "open"}) or 0) >= 1
