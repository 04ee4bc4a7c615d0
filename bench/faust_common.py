"""What the Faust-based baselines share: an app configured like ``pipeline.app.create_app`` and a counter that
stops the worker once the target number of events has been seen.

The app uses the same broker settings as the real worker (memory store, raw serializers for topics, acks=all,
linger 5 ms, commit every second, offset reset earliest) with a fresh app id, so the baselines differ from the
real worker only in what their agents do. The counter's clock runs from the first event to the event that
reaches the target (start-up, rebalance and shutdown excluded); CPU time is this process's over that window.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.context import BenchContext, write_json


def child_spec(ctx: BenchContext, name: str, target: int, **extra: Any) -> dict[str, Any]:
    """The spec a Faust baseline child reads: fresh app id and data dir, the shared input topics, its target."""
    return {
        "app_id": ctx.app_id(name),
        "bootstrap": ctx.bootstrap,
        "datadir": str(ctx.dir(f"runs-{ctx.run_id}") / f"{name}-data"),
        "partitions": ctx.partitions,
        "topics": ctx.input_topics,
        "target": target,
        **extra,
    }


def bench_app(spec: dict[str, Any], *, value_serializer: str = "raw", allow_declare: bool = False) -> Any:
    """A Faust app for a baseline measurement described by ``spec`` (app_id, bootstrap, datadir, partitions)."""
    import faust

    from pipeline.app import faust_broker_url

    Path(spec["datadir"]).mkdir(parents=True, exist_ok=True)
    return faust.App(
        spec["app_id"],
        broker=faust_broker_url(spec["bootstrap"]),
        datadir=spec["datadir"],
        autodiscover=False,
        store="memory://",
        key_serializer="raw",
        value_serializer=value_serializer,
        topic_partitions=spec["partitions"],
        topic_replication_factor=1,
        topic_allow_declare=allow_declare,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=5,
        broker_commit_interval=1.0,
        web_enabled=False,
    )


def raw_topic(app: Any, *names: str) -> Any:
    """A topic (or several as one source) of raw bytes keys and values."""
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


class StopAt:
    """Counts events; at ``target`` writes the result file and asks this worker to stop (SIGTERM to itself)."""

    def __init__(self, target: int, result_path: Path, extra: Callable[[], dict[str, Any]] | None = None) -> None:
        self.target = target
        self.count = 0
        self.done = False
        self._result_path = result_path
        self._extra = extra
        self._first = 0.0
        self._cpu0 = 0.0
        self._last_report = 0.0

    def tick(self) -> bool:
        """Count one event; True once the target is reached (the caller may stop iterating)."""
        if self.count == 0:
            self._first = self._last_report = time.perf_counter()
            self._cpu0 = time.process_time()
        self.count += 1
        if self.count >= self.target and not self.done:
            self.finish()
        elif self.count % 50_000 == 0:
            now = time.perf_counter()
            print(f"{self.count:,} events, {50_000 / max(now - self._last_report, 1e-9):,.0f} events/s", flush=True)
            self._last_report = now
        return self.done

    def finish(self) -> None:
        seconds = time.perf_counter() - self._first
        result: dict[str, Any] = {
            "events": self.count,
            "seconds": seconds,
            "cpu_s": time.process_time() - self._cpu0,
        }
        if self._extra is not None:
            result.update(self._extra())
        write_json(self._result_path, result)
        self.done = True
        print(f"target reached: {self.count:,} events in {seconds:.2f} s; stopping", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)


def run_worker(app: Any) -> None:
    """Run ``app`` as a Faust worker until the agent's StopAt (or a signal) stops it."""
    import faust

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
