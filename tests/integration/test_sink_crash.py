"""The sink against the real broker: kill -9 mid-batch while events flow, and readers during ingest + restarts.

Both tests publish synthetic output records (sessions with several versions, transitions, signals, profiles,
identity merges, failed events, some sent twice like an at-least-once producer would) to an isolated set of
topics, run ``omnistream sink`` as a real process, and compare the warehouse with a clean, uninterrupted run
over the same topics.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
from kafka import KafkaProducer

from pipeline.topic_reader import topic_end_total
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from sinks import synthetic as syn
from sinks.tables import DEFAULT_TABLES, TABLES
from tests.integration.pipeline_env import PipelineEnv
from tests.integration.processes import Proc, wait_until

T0 = 1_700_000_000_000
CHECKS = {
    "sessions": "session_id",
    "signals": "signal_id",
    "journey_transitions": "transition_id",
    "customers": "customer_id",
    "failed_events": "source_offset",
}


def workload(seed: int, customers: int, chunks: int) -> list[list[tuple[str, str, dict[str, Any]]]]:
    """``chunks`` lists of ``(table, key, record)``; later chunks hold higher session versions and merges."""
    rng = random.Random(seed)
    out: list[list[tuple[str, str, dict[str, Any]]]] = [[] for _ in range(chunks)]
    for c in range(customers):
        cid = f"c:{c}" if c % 5 else f"p:{c}"
        for s in range(3):
            for v in range(1, rng.randint(2, 4)):
                rec = syn.session(rng, f"s-{c}-{s}", cid, T0 + s * syn.DAY_MS, version=v, bought=["a", "b"][: v - 1])
                out[min(chunks - 1, v - 1 + rng.randrange(chunks - 2))].append(("sessions", cid, rec))
        for seq in range(1, 3):
            out[rng.randrange(chunks)].append(("journey_transitions", cid, syn.transition(cid, seq, None, "x", T0)))
        out[rng.randrange(chunks)].append(("signals", cid, syn.signal(f"g-{c}", cid, "win_back", T0)))
        for v in (1, 2):
            out[min(chunks - 1, v + rng.randrange(chunks - 2))].append(("customers", cid, syn.profile(cid, v, T0)))
        if c % 5 == 0 and c + 1 < customers:  # p:c is absorbed by the next customer
            out[rng.randrange(chunks)].append(("identity_merges", cid, syn.merge(cid, f"c:{c + 1}", T0)))
        out[rng.randrange(chunks)].append(("failed_events", cid, syn.failed(c + 1)))
    for chunk in out:  # at-least-once upstream: some records arrive twice
        chunk.extend(rng.sample(chunk, len(chunk) // 20))
        rng.shuffle(chunk)
    return out


def publish(env: PipelineEnv, chunk: list[tuple[str, str, dict[str, Any]]], codec: AvroCodec) -> None:
    producer = KafkaProducer(bootstrap_servers=env.bootstrap, acks="all", linger_ms=5)
    s = env.settings()
    for table, key, record in chunk:
        spec = TABLES[table]
        producer.send(s.topic(spec.topic), key=key.encode(), value=codec.encode(spec.subject, record))
    producer.flush()
    producer.close()


def total_end(env: PipelineEnv) -> int:
    s = env.settings()
    return sum(topic_end_total(env.bootstrap, s.topic(TABLES[t].topic)) for t in DEFAULT_TABLES)


def start_sink(env: PipelineEnv, name: str, db: Path, *extra: str) -> Proc:
    args = ["sink", "--db", str(db), "--snapshot", str(db.with_suffix(".snap")), "--metrics-port", "0"]
    return Proc([*args, "--log-level", "INFO", *extra], env.env(), env.workdir / f"{name}.log")


def stored_offsets(path: Path) -> int:
    if not path.is_file():
        return -1
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute("SELECT coalesce(sum(next_offset), 0) FROM _sink_offsets").fetchone()
    return int(row[0]) if row else 0


def run_to_end(env: PipelineEnv, name: str, db: Path, want: int) -> None:
    """Run a sink until its snapshot holds offsets of every message, then stop it cleanly."""
    proc = start_sink(env, name, db, "--snapshot-every", "0.5")
    # The work may already be stored by the sink before it: stop only a sink that has its SIGTERM handler.
    wait_until(lambda: "sink assigned" in proc.log_tail(), 30, 0.1, f"{name} to start")

    def caught_up() -> bool:
        assert proc.alive(), proc.log_tail()
        return stored_offsets(db.with_suffix(".snap")) >= want

    wait_until(caught_up, 60, what=f"{name} to store {want} offsets")
    assert proc.terminate() == 0, proc.log_tail()


def table_state(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in (*CHECKS, "identity_merges")}


def assert_exactly_once(db: Path) -> None:
    with duckdb.connect(str(db), read_only=True) as con:
        for table, key in CHECKS.items():
            rows, keys = con.execute(f"SELECT count(*), count(DISTINCT {key}) FROM {table}").fetchone() or (0, 0)
            assert rows == keys and rows > 0, table
        orphans = con.execute(
            "SELECT count(*) FROM sessions WHERE customer_id IN (SELECT old_id FROM _identity_alias)"
        ).fetchone()
        assert orphans == (0,)


def test_kill_9_mid_batch_keeps_every_row_exactly_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = PipelineEnv.create(kafka_bootstrap, tmp_path, partitions=2)
    codec = AvroCodec(FileSchemaRegistry())
    chunks = workload(seed=11, customers=600, chunks=6)
    crashed = tmp_path / "crashed.duckdb"
    kills = 0
    proc = start_sink(env, "sink-0", crashed, "--batch-size", "300", "--batch-ms", "100")
    rng = random.Random(3)
    for i, chunk in enumerate(chunks):
        publish(env, chunk, codec)  # events flow while the sink is being killed
        time.sleep(rng.uniform(0.6, 1.6))
        assert proc.alive(), proc.log_tail()
        proc.kill()
        kills += 1
        proc = start_sink(env, f"sink-{i + 1}", crashed, "--batch-size", "300", "--batch-ms", "100")
    proc.kill()
    want = total_end(env)
    assert want == sum(len(c) for c in chunks)
    assert stored_offsets(crashed) < want, "the sink finished before the last kill: the test proved nothing"
    run_to_end(env, "sink-final", crashed, want)

    clean = tmp_path / "clean.duckdb"
    run_to_end(env, "sink-clean", clean, want)
    assert kills == len(chunks)
    assert_exactly_once(crashed)
    assert table_state(crashed) == table_state(clean)


def test_readers_never_see_lock_errors_or_counts_going_back(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = PipelineEnv.create(kafka_bootstrap, tmp_path, partitions=2)
    codec = AvroCodec(FileSchemaRegistry())
    db = tmp_path / "live.duckdb"
    snapshot = db.with_suffix(".snap")
    errors: list[str] = []
    seen: dict[int, list[tuple[int, int]]] = {0: [], 1: []}
    stop = threading.Event()

    def reader(me: int) -> None:
        while not stop.is_set():
            if not snapshot.is_file():
                time.sleep(0.05)
                continue
            try:
                with duckdb.connect(str(snapshot), read_only=True) as con:
                    row = con.execute(
                        "SELECT (SELECT count(*) FROM failed_events), (SELECT sum(next_offset) FROM _sink_offsets)"
                    ).fetchone()
                assert row is not None
                seen[me].append((int(row[0]), int(row[1] or 0)))
            except Exception as error:  # every error counts, a lock error above all
                errors.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=reader, args=(me,), daemon=True) for me in seen]
    for t in threads:
        t.start()
    try:
        for i, chunk in enumerate(workload(seed=5, customers=300, chunks=4)):
            proc = start_sink(env, f"sink-{i}", db, "--snapshot-every", "0.5", "--batch-size", "200")
            publish(env, chunk, codec)
            wait_until(lambda p=proc: "sink assigned" in p.log_tail(), 30, 0.1, "the sink to start")
            # Stopped only once the readers saw a snapshot with this sink's first rows in it.
            before = max((o for reads in seen.values() for _c, o in reads[-1:]), default=0)
            wait_until(lambda b=before: all(reads and reads[-1][1] > b for reads in seen.values()), 60, 0.1,
                       "the readers to see the new sink's rows")  # fmt: skip
            if i % 2:
                proc.kill()
            else:
                assert proc.terminate() == 0, proc.log_tail()
        run_to_end(env, "sink-last", db, total_end(env))
        end = total_end(env)
        wait_until(lambda: all(reads and reads[-1][1] == end for reads in seen.values()), 30, 0.1,
                   "the readers to see the final snapshot")  # fmt: skip
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert errors == []
    for reads in seen.values():
        assert len(reads) > 20
        assert reads == sorted(reads), "a reader saw counts or offsets go backwards"
        assert reads[-1][1] == total_end(env)
