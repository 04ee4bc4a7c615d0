"""Faust ceiling: a bare Faust agent that iterates every input event and does nothing else.

Measures events/s of one agent (concurrency 1) subscribed to the four input topics, ``async for value in
stream`` with raw bytes (so no deserialisation), Faust acking each event, offsets committed every second.
This is Faust's own per-event cost: the most any single-hop Faust agent can do here. The clock runs from the
first event to the last input message (fresh consumer group, reading from the beginning).
Does not measure: decoding, producing, tables, or multi-hop topologies.

Child entry point: ``python -m bench.faust_ceiling SPEC.json RESULT.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.child import run_child
from bench.context import BenchContext, Measurement, read_json
from bench.faust_common import StopAt, bench_app, child_spec, raw_topic, run_worker
from bench.workload import Workload


def build(spec: dict[str, Any], result_path: Path) -> Any:
    """The app with its single bare agent; the agent stops the worker after ``spec['target']`` events."""
    app = bench_app(spec)
    source = raw_topic(app, *spec["topics"])
    stop = StopAt(int(spec["target"]), result_path)

    async def bare(stream: Any) -> None:
        async for _value in stream:
            stop.tick()

    app.agent(source, name="bare", concurrency=1)(bare)
    return app


def measure(ctx: BenchContext, workload: Workload, timeout_s: float) -> Measurement:
    """Run the ceiling in a child process over every input message."""
    key, title = "faust_ceiling", "Faust ceiling: bare agent, iterate only"
    spec = child_spec(ctx, "ceiling", workload.messages)
    run = run_child(ctx, key, "bench.faust_ceiling", spec, timeout_s)
    if run.result is None:
        return Measurement(key, title, status="failed", wall_s=run.wall_s, note=f"no result: {run.log_tail(3)}")
    return faust_row(key, title, run.result, run.wall_s, run.usage.rss_peak, run.broker.cpu_percent, "")


def faust_row(
    key: str, title: str, res: dict[str, Any], wall_s: float, rss: int, broker_cpu: float, note: str
) -> Measurement:
    """A table row from a StopAt result."""
    seconds = float(res["seconds"])
    return Measurement(
        key,
        title,
        events=int(res["events"]),
        seconds=seconds,
        rate=res["events"] / max(seconds, 1e-9),
        wall_s=wall_s,
        rss_bytes=rss,
        cpu_percent=100.0 * float(res["cpu_s"]) / max(seconds, 1e-9),
        broker_cpu_percent=broker_cpu,
        note=note,
        extra={k: v for k, v in res.items() if k not in ("events", "seconds", "cpu_s")},
    )


def main(argv: list[str]) -> None:
    spec = read_json(Path(argv[1]))
    run_worker(build(spec, Path(argv[2])))


if __name__ == "__main__":
    main(sys.argv)
