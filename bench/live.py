"""A live, paced producer for the latency measurement: ``python -m bench.live SPEC.json RESULT.json``.

Takes the simulator's valid events (``Simulation.valid_events``: realistic mix, no bad input) and sends them at
a fixed rate with their event time set to the moment they are encoded, as a live producer would: so "event time
-> output" is the pipeline's end-to-end latency, producer batching (linger 5 ms) included. The simulated
timeline is compressed into the run (a customer's month happens in seconds), which changes which signals fire
(timer-based ones, e.g. cart abandoned after an hour, do not) but not what a batch costs.
Guarantees: paced against the schedule (a slow send is caught up), every message acknowledged (acks=all) or
counted as failed in the result.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from bench.context import read_json, write_json


def run(spec: dict[str, Any]) -> dict[str, Any]:
    from kafka import KafkaProducer

    from pipeline.simulate.config import SimConfig
    from pipeline.simulate.simulation import Simulation
    from schemas.codec import AvroCodec
    from schemas.registry import FileSchemaRegistry

    rate, seconds, prefix = float(spec["rate"]), float(spec["seconds"]), spec["prefix"]
    target = int(rate * seconds)
    now_ms = int(time.time() * 1000)
    customers = max(500, target // 8)
    events = Simulation(SimConfig(customers=customers, days=30, seed=int(spec["seed"]), end_ms=now_ms)).valid_events()
    codec = AvroCodec(FileSchemaRegistry())
    producer = KafkaProducer(
        bootstrap_servers=spec["bootstrap"].split(","), acks="all", linger_ms=5, max_in_flight_requests_per_connection=5
    )
    acked = errors = sent = 0

    def ok(_meta: Any) -> None:
        nonlocal acked
        acked += 1

    def bad(_exc: BaseException) -> None:
        nonlocal errors
        errors += 1

    started = time.monotonic()
    first_ms = int(time.time() * 1000)
    for msg in events:
        if sent >= target:
            break
        if msg.record is None or msg.subject is None:
            continue
        stamp = int(time.time() * 1000)
        record = {**msg.record, "envelope": {**msg.record["envelope"], "event_time": stamp}}
        value = codec.encode(msg.subject, record, msg.version)
        producer.send(f"{prefix}{msg.channel}", key=msg.key, value=value).add_callback(ok).add_errback(bad)
        sent += 1
        ahead = started + sent / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    producer.flush(timeout=60)
    producer.close(timeout=10)
    elapsed = time.monotonic() - started
    return {"sent": sent, "acked": acked, "errors": errors, "seconds": elapsed, "first_ms": first_ms,
            "last_ms": int(time.time() * 1000), "rate": sent / max(elapsed, 1e-9)}  # fmt: skip


def main(argv: list[str]) -> None:
    write_json(Path(argv[2]), run(read_json(Path(argv[1]))))


if __name__ == "__main__":
    main(sys.argv)
