"""End-to-end latency at a fixed input rate (half the measured maximum): event time -> signal / stage / session
emitted, and event time -> row visible in the sink's published DuckDB snapshot.

Runs on its own fresh topics (``<prefix>lat-<run>.``): one real ``omnistream worker``, one real
``omnistream sink`` (default snapshot interval), and ``bench.live`` producing valid events stamped with the
time they are sent. Emitted latency = the output message's Kafka timestamp (set by the worker's producer when
it sends) minus the event time it carries (``signals.event_time``, ``journey-stages.event_time``, a session
version's ``end_ms`` = its newest event). Visible latency = the first poll (every ``POLL_S``) at which the row
is in the snapshot minus its event time, so it is exact to ``POLL_S``. Only events of the window
``[WARMUP_S, seconds)`` count: the first ``WARMUP_S`` are left out (joins, first metadata), and traffic goes on
for ``COOLDOWN_S`` after the window, so that every counted event meets live traffic behind it (when traffic
stops, the last events wait for the idle timeout instead: docs/time.md). Does not measure the sink under the
full-speed workload (see bench/sink).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaConsumer, TopicPartition

from bench.context import REPO_ROOT, BenchContext, read_json, write_json
from bench.kafka_probe import GroupProbe
from bench.pipeline_run import start_workers, stop_workers, worker_env
from bench.topics import SharedInputSettings, consumed_topics, drop_topics
from pipeline.drain import group_lag
from pipeline.topics import ensure_pipeline_topics

POLL_S = 0.5
WARMUP_S = 5.0
COOLDOWN_S = 5.0
_SNAPSHOT_QUERIES = {
    "signal": "SELECT signal_id, epoch_ms(event_time) FROM signals WHERE epoch_ms(event_time) >= ?",
    "stage": "SELECT transition_id, epoch_ms(event_time) FROM journey_transitions WHERE epoch_ms(event_time) >= ?",
}


@dataclass
class LatencyResult:
    """Latency samples (ms) per path, and what ran."""

    rate: float
    sent: int = 0
    seconds: float = 0.0
    emitted: dict[str, list[int]] = field(default_factory=dict)
    visible: dict[str, list[int]] = field(default_factory=dict)
    note: str = ""

    def percentiles(self) -> dict[str, dict[str, float]]:
        out = {}
        for group, samples in (("emitted", self.emitted), ("visible", self.visible)):
            for kind, values in samples.items():
                if values:
                    p50, p95, p99 = np.percentile(values, [50, 95, 99])
                    out[f"{kind} {group}"] = {"n": len(values), "p50": p50, "p95": p95, "p99": p99, "max": max(values)}
        return out


class SnapshotWatcher:
    """Polls the published snapshot and remembers when each row was first visible."""

    def __init__(self, path: Path, since_ms: int, until_ms: int) -> None:
        self.path, self.since_ms, self.until_ms = path, since_ms, until_ms
        self.first_seen: dict[str, dict[str, tuple[int, int]]] = {kind: {} for kind in _SNAPSHOT_QUERIES}

    def poll(self) -> None:
        import duckdb

        if not self.path.is_file():
            return
        now = int(time.time() * 1000)
        try:
            con = duckdb.connect(str(self.path), read_only=True)
        except duckdb.Error:  # replaced while opening: the next poll sees the new file
            return
        try:
            for kind, sql in _SNAPSHOT_QUERIES.items():
                seen = self.first_seen[kind]
                for row_id, event_ms in con.execute(sql, [self.since_ms]).fetchall():
                    if event_ms < self.until_ms:
                        seen.setdefault(row_id, (now, int(event_ms)))
        except duckdb.Error:
            return
        finally:
            con.close()

    def latencies(self) -> dict[str, list[int]]:
        return {kind: [seen - at for seen, at in rows.values()] for kind, rows in self.first_seen.items()}


def emitted_latencies(
    bootstrap: str, topics: dict[str, tuple[str, str]], since_ms: int, until_ms: int
) -> dict[str, list[int]]:
    """Kafka timestamp minus the event time carried in ``field``, per ``kind -> (topic, field)``, for events
    in ``[since_ms, until_ms)``; records without the field (journey-control messages on resolved-events) are
    skipped, and an event bundle counts once per entry (each entry was emitted when the bundle was)."""
    from pipeline.steps.bundles import read
    from schemas.codec import AvroCodec
    from schemas.registry import FileSchemaRegistry

    codec = AvroCodec(FileSchemaRegistry())
    out: dict[str, list[int]] = {}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False)
    try:
        for kind, (topic, field_name) in topics.items():
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            ends = {tp: off for tp, off in consumer.end_offsets(tps).items() if off > 0}
            samples: list[int] = []
            if ends:
                consumer.assign(list(ends))
                consumer.seek_to_beginning(*ends)
                remaining = set(ends)
                while remaining:
                    batch = consumer.poll(timeout_ms=3000)
                    if not batch:
                        break
                    for tp, records in batch.items():
                        for rec in records:
                            for entry in read(codec, rec.key or b"", rec.value)[0]:
                                at = codec.decode(entry.value).record.get(field_name)
                                if at is not None and since_ms <= int(at) < until_ms:
                                    samples.append(int(rec.timestamp) - int(at))
                        if records and records[-1].offset + 1 >= ends[tp]:
                            remaining.discard(tp)
            out[kind] = samples
    finally:
        consumer.close()
    return out


def measure(
    ctx: BenchContext, rate: float, seconds: float, report: Callable[[str], None], env: Mapping[str, str] | None = None
) -> LatencyResult:
    """One worker + the sink on fresh topics, ``bench.live`` at ``rate`` for ``seconds``; ``env``: settings of
    the worker that differ from the defaults."""
    prefix = ctx.measurement_prefix("lat")
    app_id = ctx.app_id("lat")
    settings = SharedInputSettings(
        kafka_bootstrap=ctx.bootstrap, topic_prefix=prefix, input_prefix=prefix, app_id=app_id, metrics_port=0
    )
    ensure_pipeline_topics(settings, ctx.bootstrap)
    state = ctx.dir(f"runs-{ctx.run_id}") / "lat-state"
    env = {**worker_env(ctx, settings, state, 1), **(env or {})}
    env.pop("OMNISTREAM_INPUT_PREFIX")  # a setting of bench.worker only; here the inputs share the prefix
    result = LatencyResult(rate=rate)
    worker = start_workers(ctx, 1, env, "lat", "pipeline")
    snapshot = state / "warehouse.snapshot.duckdb"
    sink_cmd = [ctx.python, "-m", "pipeline", "sink", "--db", str(state / "warehouse.duckdb"), "--snapshot"]
    sink_cmd += [str(snapshot), "--metrics-port", "0", "--log-level", "WARNING"]
    with (ctx.logs / "lat-sink.log").open("wb") as log:
        sink = subprocess.Popen(sink_cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    group = GroupProbe(ctx.bootstrap, app_id)
    try:
        deadline = time.monotonic() + 120
        while group.stable_members() < 1 and time.monotonic() < deadline and worker[0].poll() is None:
            time.sleep(0.5)
        report(f"  latency: worker and sink up; producing {rate:,.0f} events/s for {seconds:.0f} s")
        now_ms = int(time.time() * 1000)
        since, until = now_ms + int(WARMUP_S * 1000), now_ms + int(seconds * 1000)
        watcher = SnapshotWatcher(snapshot, since, until)
        live = _start_live(ctx, prefix, rate, seconds + COOLDOWN_S)
        while live.poll() is None:
            watcher.poll()
            time.sleep(POLL_S)
        drain_until = time.monotonic() + 90
        while time.monotonic() < drain_until and group_lag(ctx.bootstrap, app_id, consumed_topics(settings)) > 0:
            watcher.poll()
            time.sleep(POLL_S)
        # The last rows become visible with the next snapshot (default every 10 s) after the sink wrote them.
        settle = time.monotonic() + settings.snapshot_interval_s + 5
        while time.monotonic() < settle:
            watcher.poll()
            time.sleep(POLL_S)
        result.visible = watcher.latencies()
        produced = _read_result(ctx)
        result.sent, result.seconds = int(produced.get("sent", 0)), float(produced.get("seconds", 0.0))
    finally:
        group.close()
        sink.terminate()
        try:
            sink.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sink.kill()
        stop_workers(worker)
    topics = {  # the hops first: where along the way the time is spent
        "customer-events (ingest)": (settings.topic("customer-events"), "event_time"),
        "resolved-events (identity)": (settings.topic("resolved-events"), "event_time"),
        "session": (settings.topic("sessions"), "end_ms"),
        "stage": (settings.topic("journey-stages"), "event_time"),
        "signal": (settings.topic("signals"), "event_time"),
    }
    result.emitted = emitted_latencies(ctx.bootstrap, topics, since, until)
    drop_topics(ctx.bootstrap, prefix, app_id + "-")
    return result


def _start_live(ctx: BenchContext, prefix: str, rate: float, seconds: float) -> subprocess.Popen[bytes]:
    runs = ctx.dir(f"runs-{ctx.run_id}")
    spec = {"bootstrap": ctx.bootstrap, "prefix": prefix, "rate": rate, "seconds": seconds, "seed": 11}
    write_json(runs / "live.spec.json", spec)
    (runs / "live.result.json").unlink(missing_ok=True)
    cmd = [ctx.python, "-m", "bench.live", str(runs / "live.spec.json"), str(runs / "live.result.json")]
    with (ctx.logs / "live.log").open("wb") as log:
        return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)


def _read_result(ctx: BenchContext) -> dict[str, Any]:
    path = ctx.dir(f"runs-{ctx.run_id}") / "live.result.json"
    return dict(read_json(path)) if path.is_file() else {}
