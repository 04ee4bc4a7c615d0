"""The sink's set-based write path: Arrow conversion, one row per key, MERGE; and that none of it depends on
how the message stream was cut into batches, replayed, or converted (Batch vs PreparedBatch)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
import pytest

from pipeline.clock import ManualClock
from schemas.registry import FileSchemaRegistry
from sinks import synthetic as syn
from sinks.columnar import first_per_key, prepare
from sinks.contract import Batch, SinkRow
from sinks.duckdb_schema import quote
from sinks.duckdb_sink import DuckDBSink
from sinks.tables import DEFAULT_TABLES, TABLES, BoundTable, bind_tables

T0 = 1_700_000_000_000
#: Every data table of the default set, with the columns that identify its content.
CONTENT = {
    "sessions": "session_id, customer_id, version, revenue_minor, status, merged_into",
    "journey_transitions": "transition_id, customer_id, reason",
    "signals": "signal_id, customer_id, reason",
    "customers": "customer_id, version, stage",
    "identity_merges": "old_id, new_id",
    "failed_events": "source_topic, source_partition, source_offset, reason",
}


@pytest.fixture
def tables() -> list[BoundTable]:
    return bind_tables(DEFAULT_TABLES, lambda name: name, FileSchemaRegistry())


def reference_first_per_key(rows: list[dict[str, Any]], key: tuple[str, ...], version: str | None) -> list[Any]:
    """Plain-Python statement of the rule: per key the highest version, the earliest row on a tie."""
    best: dict[tuple[Any, ...], tuple[int, dict[str, Any]]] = {}
    for i, row in enumerate(rows):
        k = tuple(row[c] for c in key)
        held = best.get(k)
        if held is None or (version is not None and row[version] > held[1][version]):
            best[k] = (i, row)
    return [row["tag"] for _, row in sorted(best.values(), key=lambda item: item[0])]


@pytest.mark.parametrize("version", [None, "v"])
@pytest.mark.parametrize("seed", range(5))
def test_first_per_key_matches_the_rule(version: str | None, seed: int) -> None:
    rng = random.Random(seed)
    rows = [{"a": rng.choice("xyz"), "b": rng.randrange(3), "v": rng.randrange(4), "tag": i} for i in range(200)]
    arrow = pa.Table.from_pylist(rows)
    for key in (("a",), ("a", "b")):
        kept = first_per_key(arrow, key, version).column("tag").to_pylist()
        assert kept == reference_first_per_key(rows, key, version)


def test_first_per_key_leaves_unique_rows_alone() -> None:
    arrow = pa.table({"k": ["b", "a", "c"], "v": [1, 1, 1]})
    assert first_per_key(arrow, ("k",), "v").equals(arrow)
    assert first_per_key(arrow.slice(0, 0), ("k",)).num_rows == 0


def stream(rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """A message stream with everything the write rules must absorb: session versions out of order (with a
    merged tombstone and a late lower version), duplicates at new offsets, identity merges before and after
    the rows they concern, profile versions of an absorbed id, failed events."""
    out: list[tuple[str, dict[str, Any]]] = []
    for s in range(30):
        customer = f"p:{s % 7}"
        versions = [1, 2, 3]
        rng.shuffle(versions)
        for v in versions:
            status = "merged" if s % 10 == 0 and v == 3 else "closed"
            out.append(
                ("sessions", syn.session(rng, f"s{s}", customer, T0, version=v, bought=["p"] * v, status=status))
            )
        out.append(("journey_transitions", syn.transition(customer, s, None, "engaged", T0)))
        out.append(("signals", syn.signal(f"g{s % 20}", customer, "win_back", T0, reason=f"r{s}")))
        out.append(("customers", syn.profile(customer, 1 + s // 7, T0, stage=f"st{s}")))
        if s == 12:
            out.append(("identity_merges", syn.merge("p:1", "p:2", T0)))
        if s == 20:
            out.append(("identity_merges", syn.merge("p:2", "c:9", T0)))
        out.append(("failed_events", syn.failed(s % 25)))
    rng.shuffle(out)
    return out


def write_stream(
    path: Path, tables: list[BoundTable], messages: list[tuple[str, dict[str, Any]]], size: int, prepared: bool
) -> dict[str, list[tuple[Any, ...]]]:
    """Write ``messages`` in batches of ``size`` (one partition per topic), replaying every third batch, and
    return every table's content."""
    sink = DuckDBSink(path / "live.duckdb", path / "snap.duckdb", tables, clock=ManualClock(T0))
    sink.open()
    by_name = {t.name: t for t in tables}
    offsets: dict[str, int] = {}
    for n, start in enumerate(range(0, len(messages), size)):
        batch = Batch()
        for table, values in messages[start : start + size]:
            topic = TABLES[table].topic
            offset = offsets.get(topic, 0)
            offsets[topic] = offset + 1
            batch.rows.append(SinkRow(table, topic, 0, offset, values))
            batch.add_offset(topic, 0, offset)
        for _ in range(2 if n % 3 == 0 else 1):  # a replay must be a no-op
            sink.write(prepare(batch, by_name) if prepared else batch)
    con = sink.connection()
    content = {
        name: con.execute(f"SELECT {cols} FROM {name} ORDER BY ALL").fetchall() for name, cols in CONTENT.items()
    }
    sink.close()
    return content


@pytest.mark.parametrize("seed", range(3))
def test_outcome_does_not_depend_on_batching_replays_or_conversion(
    tmp_path: Path, tables: list[BoundTable], seed: int
) -> None:
    messages = stream(random.Random(seed))
    outcomes = [
        write_stream(tmp_path / f"{size}-{prepared}", tables, messages, size, prepared)
        for size, prepared in ((len(messages), False), (1, False), (7, True), (50, True))
    ]
    assert all(outcome == outcomes[0] for outcome in outcomes[1:])
    sessions = outcomes[0]["sessions"]
    assert len(sessions) == len({row[0] for row in sessions}) == 30
    assert all(row[2] == 3 for row in sessions)  # the highest version won everywhere
    assert {row[1] for row in sessions} <= {"p:0", "p:3", "p:4", "p:5", "p:6", "c:9"}  # no row on an absorbed id
    assert len(outcomes[0]["signals"]) == 20 and len(outcomes[0]["failed_events"]) == 25


def test_a_file_created_with_primary_keys_keeps_working(tmp_path: Path, tables: list[BoundTable]) -> None:
    """Warehouses created by earlier versions have a PRIMARY KEY on every data table: same results there."""
    con = duckdb.connect(str(tmp_path / "live.duckdb"))
    for table in tables:
        cols = ", ".join(f"{quote(c.name)} {c.sql_type}" for c in table.columns)
        keys = ", ".join(quote(k) for k in table.spec.key)
        con.execute(f"CREATE TABLE {quote(table.name)} ({cols}, PRIMARY KEY ({keys}))")
    con.close()
    messages = stream(random.Random(7))
    with_keys = write_stream(tmp_path, tables, messages, 9, True)
    assert with_keys == write_stream(tmp_path / "fresh", tables, messages, 9, True)
