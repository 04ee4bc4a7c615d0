"""Sink throughput: rows per second into DuckDB through ``prepare`` + the writer (run by hand, not a test).

Measures what the sink adds on top of consuming and decoding, per batch: the Arrow conversion of the decoded
records (``sinks.columnar.prepare``), the keyed inserts (insert-or-ignore / keep-highest-version upserts), the
offsets and the COMMIT, and one snapshot publish at the end (its CHECKPOINT compresses what the commits wrote
to the WAL; the sink publishes every snapshot interval), on a fresh file. Two ways, on the same batches:

* ``sink``: like ``SinkLoop`` runs it: this process converts batch N+1 while the writer process
  (``sinks.process_writer.ProcessWriter``: ``DuckDBSink`` in a child process, batches sent as Arrow IPC
  buffers over a pipe) commits batch N; one batch in flight. This is the sink's figure. The child is started
  and the file opened before the clock starts (the sink does that once).
* ``serial``: convert, then write, one batch after the other on one thread, in-process (what a single-threaded
  caller of ``DuckDBSink.write`` gets; the floor the process split has to beat).

Records are generated, and wrapped into batches with offsets, before the clock starts; the generated data is
then frozen out of the garbage collector, because the sink holds two batches, not a million records, and
collections scanning them would bill the bench's own data to the sink. ``cpu`` is this process's CPU time
only (the writer process's is not in it).
Does not measure Kafka fetching or Avro decoding (see bench/floor.py for those), nor merges of big tables.

    .venv/bin/python -m bench.sink_throughput --rows 1000000 --batch 100000
"""

from __future__ import annotations

import argparse
import gc
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipeline.settings import load_settings
from schemas.registry import FileSchemaRegistry
from sinks import synthetic as syn
from sinks.columnar import prepare
from sinks.contract import Batch, PendingWrite, SinkRow, WriteResult
from sinks.duckdb_sink import DuckDBSink
from sinks.process_writer import ProcessWriter
from sinks.tables import DEFAULT_TABLES, TABLES, BoundTable, bind_tables


def records(rows: int, seed: int) -> list[tuple[str, dict[str, object]]]:
    """``rows`` records, the mix of a busy day: 50% sessions (some restated), 30% transitions, 20% signals."""
    rng = random.Random(seed)
    out: list[tuple[str, dict[str, object]]] = []
    t0 = 1_700_000_000_000
    for i in range(rows):
        c = f"c:{i % 50_000}"
        kind = i % 10
        if kind < 5:
            out.append(("sessions", syn.session(rng, f"s:{i // 2}", c, t0 + i, version=1 + i % 2, bought=["p-1"])))
        elif kind < 8:
            out.append(("journey_transitions", syn.transition(c, i, None, "engaged", t0 + i)))
        else:
            out.append(("signals", syn.signal(f"g:{i}", c, "cart_abandoned", t0 + i)))
    return out


def batches(data: list[tuple[str, dict[str, object]]], size: int) -> list[Batch]:
    """``data`` cut into batches of ``size`` messages with increasing offsets per topic (partition 0)."""
    offsets: Counter[str] = Counter()
    out = []
    for start in range(0, len(data), size):
        batch = Batch()
        for table, values in data[start : start + size]:
            topic = TABLES[table].topic
            batch.rows.append(SinkRow(table, topic, 0, offsets[topic], values))
            batch.add_offset(topic, 0, offsets[topic])
            offsets[topic] += 1
        out.append(batch)
    return out


@dataclass(frozen=True)
class Run:
    written: int
    seconds: float
    cpu_seconds: float
    snapshot: str
    transactions_s: float  # sum of the writer's BEGIN..COMMIT times (WriteResult.commit_seconds)


def run(work: list[Batch], tables: list[BoundTable], pipelined: bool) -> Run:
    """Write ``work`` into a fresh file; the clock covers conversion, inserts, commits and one final publish."""
    by_name = {t.name: t for t in tables}
    with tempfile.TemporaryDirectory() as tmp:
        db, snap = Path(tmp) / "bench.duckdb", Path(tmp) / "bench.snap.duckdb"
        sink: ProcessWriter | DuckDBSink = (
            ProcessWriter(db, snap, tables) if pipelined else DuckDBSink(db, snap, tables)
        )
        results: list[WriteResult] = []
        sink.open()
        try:
            started, cpu_started = time.perf_counter(), time.process_time()
            pending: PendingWrite | None = None
            for batch in work:
                prepared = prepare(batch, by_name)  # while the writer process commits the previous batch
                if pending is not None:
                    results.append(pending.result())
                pending = sink.submit(prepared)  # in-process (serial): writes before returning
            if pending is not None:
                results.append(pending.result())
            # The publish is timed too: its CHECKPOINT does the compression work deferred by the writes.
            snap_started = time.perf_counter()
            info = sink.publish()
            snap_seconds = time.perf_counter() - snap_started
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        finally:
            sink.close()
    snapshot = "none" if info is None else f"{info.bytes / 1e6:.1f} MB by {info.how} in {snap_seconds:.2f}s"
    written = sum(sum(r.rows_written.values()) for r in results)
    return Run(written, seconds, cpu, snapshot, sum(r.commit_seconds for r in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=load_settings().sink_batch_size)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mode", choices=("both", "sink", "serial"), default="both")
    args = parser.parse_args()

    data = records(args.rows, args.seed)
    tables = bind_tables(DEFAULT_TABLES, str, FileSchemaRegistry())
    work = batches(data, args.batch)
    del data
    gc.collect()
    gc.freeze()
    print(f"messages: {args.rows:,} in {len(work)} batches of {args.batch:,}")
    modes = ("sink", "serial") if args.mode == "both" else (args.mode,)
    for mode in modes:
        result = run(work, tables, pipelined=mode == "sink")
        print(
            f"{mode:>6}: {result.written:,} rows inserted or updated in {result.seconds:.2f}s "
            f"(cpu {result.cpu_seconds:.2f}s) -> {args.rows / result.seconds:,.0f} messages/s, "
            f"{result.written / result.seconds:,.0f} rows/s; of which publish: {result.snapshot}; "
            f"writer transactions {result.transactions_s:.2f}s"
        )
    print("(rows < messages: restated sessions with lower versions are not rows of their own)")


if __name__ == "__main__":
    main()
