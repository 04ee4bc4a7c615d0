"""Floor: how fast plain Python reads (and Avro-decodes) the input topics with aiokafka.

Measures events/s of one bare ``AIOKafkaConsumer`` with manual assignment of every input partition, reading
from the beginning to the end offsets seen at start, and (``decode=True``) decoding every message with the
project's ``AvroCodec`` (bad input is counted, not routed). The clock starts when the first batch arrives,
so connection set-up is excluded, like the first-event-to-last-event clocks of the Faust measurements.
Does not measure: consumer groups, commits, producing anything, validation or any Faust machinery.

Child entry point: ``python -m bench.floor SPEC.json RESULT.json``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from bench.child import run_child
from bench.context import BenchContext, Measurement, read_json, write_json
from bench.workload import Workload


async def read_all(bootstrap: str, topics: list[str], partitions: int, decode: bool) -> dict[str, Any]:
    """Consume every message of ``topics`` once; returns counts and the timed window."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from schemas.codec import AvroCodec
    from schemas.errors import CodecError
    from schemas.registry import FileSchemaRegistry

    codec = AvroCodec(FileSchemaRegistry())
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = {tp: off for tp, off in (await consumer.end_offsets(tps)).items() if off > 0}
        remaining = set(ends)
        events = errors = size = 0
        first = cpu0 = 0.0
        while remaining:
            batch = await consumer.getmany(timeout_ms=2000, max_records=10_000)
            if not batch:
                raise TimeoutError(f"no data for 2 s with {len(remaining)} partitions unfinished")
            if not first:
                first, cpu0 = time.perf_counter(), time.process_time()
            for tp, records in batch.items():
                for record in records:
                    value = record.value or b""
                    events += 1
                    size += len(value)
                    if decode:
                        try:
                            codec.decode(value)
                        except CodecError:
                            errors += 1
                if records and records[-1].offset + 1 >= ends.get(tp, 0):
                    remaining.discard(tp)
        last = time.perf_counter()
        return {
            "events": events,
            "bytes": size,
            "decode_errors": errors,
            "seconds": last - first,
            "cpu_s": time.process_time() - cpu0,
        }
    finally:
        await consumer.stop()


def measure(ctx: BenchContext, workload: Workload, *, decode: bool = True) -> Measurement:
    """Run the floor in a child process and turn its result into a table row."""
    key = "floor" if decode else "floor_read"
    title = "floor: bare aiokafka, read + Avro decode" if decode else "floor: bare aiokafka, read only"
    spec = {"bootstrap": ctx.bootstrap, "topics": ctx.input_topics, "partitions": ctx.partitions, "decode": decode}
    run = run_child(ctx, key, "bench.floor", spec, timeout_s=600)
    if run.result is None:
        return Measurement(key, title, status="failed", wall_s=run.wall_s, note=f"child failed: {run.log_tail(3)}")
    res = run.result
    seconds = float(res["seconds"])
    note = f"{res['bytes'] / 1e6:,.0f} MB read"
    if decode:
        note += f"; {res['decode_errors']:,} messages do not decode (bad input, counted)"
    if res["events"] != workload.messages:
        note += f"; read {res['events']:,} of {workload.messages:,}"
    return Measurement(
        key,
        title,
        status="ok" if res["events"] == workload.messages else "partial",
        events=int(res["events"]),
        seconds=seconds,
        rate=res["events"] / max(seconds, 1e-9),
        wall_s=run.wall_s,
        rss_bytes=run.usage.rss_peak,
        cpu_percent=100.0 * float(res["cpu_s"]) / max(seconds, 1e-9),
        broker_cpu_percent=run.broker.cpu_percent,
        note=note,
    )


def main(argv: list[str]) -> None:
    spec = read_json(Path(argv[1]))
    result = asyncio.run(read_all(spec["bootstrap"], spec["topics"], spec["partitions"], spec["decode"]))
    write_json(Path(argv[2]), result)


if __name__ == "__main__":
    main(sys.argv)
