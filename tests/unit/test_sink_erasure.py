"""Erasure in the warehouse (real DuckDB files): a suppression record deletes the person's rows from every table,
in the transaction that stores its offset, keeps later rows of theirs out, leaves everyone else's rows as they
were, and is a no-op when applied again."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline.privacy.suppression import FAILED, NODE, PROFILE, Suppression
from pipeline.privacy.tokens import Tokens
from pipeline.simulate.config import SimConfig
from schemas.registry import FileSchemaRegistry
from sinks import synthetic as syn
from sinks.contract import Batch
from sinks.duckdb_sink import DuckDBSink
from sinks.erasure import ErasureMessage
from sinks.snapshot import open_snapshot
from sinks.tables import DEFAULT_TABLES, BoundTable, bind_tables
from tests.unit.pipeline_model import simulated_events
from tests.unit.test_sink import T0, Feed, make_sink

TOKENS = Tokens(b"erasure-test")
RNG = random.Random(3)
TOPIC = "privacy-suppressions"
PROFILE_TABLES = ("sessions", "signals", "journey_transitions", "customers")


@pytest.fixture
def tables() -> list[BoundTable]:
    return bind_tables([*DEFAULT_TABLES, "customer_events"], lambda name: name, FileSchemaRegistry())


class Requests:
    """Suppression records at increasing offsets of the list's topic."""

    def __init__(self) -> None:
        self.offset = 0

    def batch(self, request: str, *entries: tuple[str, str]) -> Batch:
        out = Batch()
        for token, kind in entries:
            out.erasures.append(ErasureMessage.of(Suppression(token, request, kind, T0), TOPIC, 0, self.offset))
            out.add_offset(TOPIC, 0, self.offset)
            self.offset += 1
        return out


def world(feed: Feed) -> Batch:
    """Two customers ('p:a' absorbed into 'c:1', and 'c:2'), rows in every table, a failed event each."""
    return feed.batch(
        ("sessions", syn.session(RNG, "s-a", "p:a", T0)),
        ("sessions", syn.session(RNG, "s-1", "c:1", T0)),
        ("sessions", syn.session(RNG, "s-2", "c:2", T0)),
        ("signals", syn.signal("g-1", "c:1", "cart_abandoned", T0)),
        ("signals", syn.signal("g-2", "c:2", "cart_abandoned", T0)),
        ("journey_transitions", syn.transition("c:1", 1, None, "engaged", T0)),
        ("journey_transitions", syn.transition("c:2", 1, None, "engaged", T0)),
        ("customers", syn.profile("c:1", 1, T0)),
        ("customers", syn.profile("c:2", 1, T0)),
        ("identity_merges", syn.merge("p:a", "c:1", T0)),
        ("failed_events", syn.failed(7)),
        ("failed_events", syn.failed(8)),
    )


def rows(con: duckdb.DuckDBPyConnection, table: str, where: str = "true") -> list[tuple[Any, ...]]:
    return con.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY ALL").fetchall()


def others(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    out = {t: rows(con, t, "customer_id <> 'c:1'") for t in PROFILE_TABLES}
    out["failed_events"] = rows(con, "failed_events", "source_offset <> 7")
    return out


def erase_c1(requests: Requests, request: str = "r1") -> Batch:
    return requests.batch(request, (TOKENS.profile("c:1"), PROFILE), (TOKENS.profile("p:a"), PROFILE),
                          ("web/0/7", FAILED))  # fmt: skip


def test_erasure_deletes_the_person_everywhere_and_nothing_else(tmp_path: Path, tables: list[BoundTable]) -> None:
    sink = make_sink(tmp_path, tables, tokens=TOKENS)
    sink.open()
    feed, requests = Feed(), Requests()
    sink.write(world(feed))
    con = sink.connection()
    before = others(con)
    sink.write(erase_c1(requests))
    for table in PROFILE_TABLES:
        assert rows(con, table, "customer_id IN ('c:1', 'p:a')") == [], table
    assert rows(con, "identity_merges") == []
    assert rows(con, "_identity_alias") == []
    assert rows(con, "failed_events", "source_offset = 7") == []
    assert others(con) == before
    log = dict(con.execute("SELECT table_name, rows_deleted FROM _erasure_log WHERE request_id = 'r1'").fetchall())
    assert log["sessions"] == 2 and log["identity_merges"] == 1 and log["failed_events"] == 1
    assert sink.committed[(TOPIC, 0)] == requests.offset
    # the snapshot published next holds none of it
    sink.publish()
    with open_snapshot(tmp_path / "snap.duckdb") as snap:
        assert rows(snap, "sessions", "customer_id IN ('c:1', 'p:a')") == []
        assert snap.execute("SELECT count(*) FROM _erasure_log").fetchone() == (len(log),)


def test_later_rows_of_the_person_are_kept_out_and_a_repeat_deletes_nothing(
    tmp_path: Path, tables: list[BoundTable]
) -> None:
    sink = make_sink(tmp_path, tables, tokens=TOKENS)
    sink.open()
    feed, requests = Feed(), Requests()
    sink.write(world(feed))
    sink.write(erase_c1(requests))
    con = sink.connection()
    before = {t: rows(con, t) for t in (*PROFILE_TABLES, "failed_events", "identity_merges")}
    sink.write(feed.batch(("signals", syn.signal("g-late", "p:a", "win_back", T0)),
                          ("sessions", syn.session(RNG, "s-late", "c:1", T0)),
                          ("failed_events", syn.failed(7))))  # fmt: skip
    assert {t: rows(con, t) for t in before} == before
    sink.write(erase_c1(requests, "r2"))  # the same person again
    assert {t: rows(con, t) for t in before} == before
    assert con.execute("SELECT sum(rows_deleted) FROM _erasure_log WHERE request_id = 'r2'").fetchone() == (0,)
    sink.close()
    # a restarted sink still keeps them out (the erased tokens are in the warehouse, not in memory only)
    again = make_sink(tmp_path, tables, tokens=TOKENS)
    again.open()
    again.write(feed.batch(("signals", syn.signal("g-later", "c:1", "win_back", T0))))
    assert rows(again.connection(), "signals", "customer_id = 'c:1'") == []


def test_an_erased_identifier_takes_its_canonical_events_with_it(tmp_path: Path, tables: list[BoundTable]) -> None:
    sink = make_sink(tmp_path, tables, tokens=TOKENS)
    sink.open()
    feed, requests = Feed(), Requests()
    config = SimConfig(customers=120, days=10, seed=2, end_ms=T0, bad_share=0.0, late_share=0.0)
    events = [dict(e) for e in simulated_events(config, 1)]
    devices = sorted({e["device_id"] for e in events if e.get("device_id")})
    assert len(devices) >= 2
    erased = devices[0]
    sink.write(feed.batch(*(("customer_events", e) for e in events[1:])))
    sink.write(requests.batch("r1", (TOKENS.node(f"device_id:{erased}"), NODE)))
    con = sink.connection()
    left = {r[0] for r in con.execute("SELECT DISTINCT device_id FROM customer_events").fetchall()}
    assert erased not in left and set(devices[1:]) <= left
    again = next(e for e in events if e.get("device_id") == erased)
    sink.write(feed.batch(("customer_events", {**again, "event_id": "late-copy"})))
    assert con.execute("SELECT count(*) FROM customer_events WHERE device_id = ?", [erased]).fetchone() == (0,)


def test_a_replayed_erasure_batch_is_not_applied_twice(tmp_path: Path, tables: list[BoundTable]) -> None:
    sink: DuckDBSink = make_sink(tmp_path, tables, tokens=TOKENS)
    sink.open()
    feed, requests = Feed(), Requests()
    sink.write(world(feed))
    batch = erase_c1(requests)
    sink.write(batch)
    sink.write(batch)  # delivered again after a crash before the consumer saw the commit
    con = sink.connection()
    assert con.execute("SELECT count(DISTINCT request_id), count(*) FROM _erasure_log").fetchone()[0] == 1
