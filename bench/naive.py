"""Naive: the same concerns as omnistream in the shape most Faust code takes — per event, one table per concern.

Per input event, in one agent (concurrency 1) over the four input topics: decode with the project's
``AvroCodec`` (bad input -> ``await failed.send()``), then one Faust table write per concern, each producing a
changelog message — dedup (``seen[event_id]``), identity (``identity[identifier] = customer`` for the event's
first identifier), session (``sessions[customer]``: start, last event time, count, with the 30-minute gap) and
journey profile (``profiles[customer]``: events, channels, revenue, stage) — then ``await out.send()`` of the
event keyed by customer. Tables use the memory store (as the real worker) and JSON values.

Generous to the naive design on purpose: no validation, no pseudonymisation, no re-encoding (the input bytes
are forwarded), no identity graph and no repartition by customer (one hop instead of omnistream's three), so
omnistream/naive understates the gap. ``max_events`` caps the run (the rate is steady, so a prefix of the
stream measures it without spending minutes); the cap is stated in the results.

Child entry point: ``python -m bench.naive SPEC.json RESULT.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.child import run_child
from bench.context import BenchContext, Measurement, failed, read_json
from bench.faust_ceiling import faust_row
from bench.faust_common import StopAt, bench_app, child_spec, raw_topic, run_worker
from bench.workload import Workload

_ID_ORDER = ("customer_id", "loyalty_id", "device_id", "anonymous_id", "social_handle", "email", "phone")
GAP_MS = 30 * 60 * 1000


def customer_of(record: dict[str, Any]) -> str:
    """The naive customer key: the first identifier present (no identity resolution)."""
    identifiers = record["envelope"]["identifiers"]
    for name in _ID_ORDER:
        value = identifiers.get(name)
        if value:
            return f"{name}:{value}"
    return "unknown"


def build(spec: dict[str, Any], result_path: Path) -> Any:
    """The naive app: four tables, an output and a failed topic, one agent."""
    from schemas.codec import AvroCodec
    from schemas.errors import CodecError
    from schemas.registry import FileSchemaRegistry

    app = bench_app(spec, value_serializer="json", allow_declare=True)
    codec = AvroCodec(FileSchemaRegistry())
    n = spec["partitions"]
    seen = app.Table("seen-ids", default=bool, key_type=str, value_type=bool, partitions=n)
    identity = app.Table("identity", default=str, key_type=str, value_type=str, partitions=n)
    sessions = app.Table("sessions", default=dict, key_type=str, value_type=dict, partitions=n)
    profiles = app.Table("profiles", default=dict, key_type=str, value_type=dict, partitions=n)
    source = raw_topic(app, *spec["topics"])
    out = raw_topic(app, spec["out_topic"])
    failed_topic = raw_topic(app, spec["failed_topic"])
    tallies = {"duplicates": 0, "failed": 0, "published": 0}
    stop = StopAt(int(spec["target"]), result_path, extra=lambda: dict(tallies))

    async def naive(stream: Any) -> None:
        async for event in stream.events():
            value = event.value
            try:
                record = codec.decode(value).record
            except CodecError:
                tallies["failed"] += 1
                await failed_topic.send(key=event.key, value=value)
                stop.tick()
                continue
            envelope = record["envelope"]
            event_id, at = envelope["event_id"], int(envelope["event_time"])
            if seen[event_id]:
                tallies["duplicates"] += 1
                stop.tick()
                continue
            seen[event_id] = True
            customer = customer_of(record)
            identity[customer] = identity[customer] or customer
            session = sessions[customer]
            if not session or at - session["last"] > GAP_MS:
                session = {"start": at, "last": at, "count": 0}
            sessions[customer] = {**session, "last": max(at, session["last"]), "count": session["count"] + 1}
            profile = profiles[customer]
            channels = sorted({*profile.get("channels", []), event.message.topic})
            events = profile.get("events", 0) + 1
            stage = "engaged" if events > 3 else "aware"
            profiles[customer] = {"events": events, "channels": channels, "stage": stage}
            await out.send(key=customer.encode(), value=value)
            tallies["published"] += 1
            stop.tick()

    app.agent(source, name="naive", concurrency=1)(naive)
    return app


def measure(ctx: BenchContext, workload: Workload, timeout_s: float, max_events: int | None) -> Measurement:
    """Run the naive design in a child process over all (or the first ``max_events``) input messages."""
    key, title = "naive", "naive: per event decode + 4 table writes + send"
    target = min(workload.messages, max_events) if max_events else workload.messages
    out_prefix = ctx.measurement_prefix("naive")
    spec = child_spec(ctx, "naive", target, out_topic=f"{out_prefix}out", failed_topic=f"{out_prefix}failed")
    run = run_child(ctx, key, "bench.naive", spec, timeout_s)
    if run.result is None:
        return failed(key, title, f"no result: {run.log_tail(3)}", run.wall_s)
    note = "4 changelog writes + 1 send per valid event, one hop"
    if target < workload.messages:
        note += f"; first {target:,} of {workload.messages:,} events (rate is steady)"
    return faust_row(key, title, run.result, run.wall_s, run.usage.rss_peak, run.broker.cpu_percent, note)


def main(argv: list[str]) -> None:
    spec = read_json(Path(argv[1]))
    run_worker(build(spec, Path(argv[2])))


if __name__ == "__main__":
    main(sys.argv)
