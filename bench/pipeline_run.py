"""omnistream: the real worker processes over the loaded workload, 1 or N workers, until the group has no lag.

Workers run ``python -m bench.worker`` (the project's ``omnistream worker`` with the bench's topic naming, see
``bench.topics``): a fresh app id (consumer group), every non-input topic under a prefix of their own, their own
state dir and free web ports. The clock starts when the group is stable with every worker and the first output
exists (start-up and the first rebalance are excluded and reported as start-up time); it stops at the last
write to an output topic once ``pipeline.drain.group_lag`` over everything the group consumes is zero.
events/s = input messages consumed in that window / window. Also worker CPU% (100% = one core), broker CPU%,
worker RSS at the end and the journey state per customer (``bench.memory``).
Does not check outputs for correctness or duplicates (the tests do): a redelivery after a rebalance is counted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.context import REPO_ROOT, BenchContext, Measurement, failed, free_port_range
from bench.kafka_probe import GroupProbe, TopicCounter
from bench.memory import changelog_topic, state_sizes
from bench.monitor import ProcessSampler
from bench.profile import SpySession
from bench.topics import SharedInputSettings, consumed_topics, drop_topics, ensure_measurement_topics
from bench.workload import Workload
from pipeline.drain import group_lag

POLL_S = 0.25
STALL_S = 60.0
OUTPUTS = ("customer-events", "failed-events", "resolved-events", "sessions", "journey-stages", "signals")


@dataclass(frozen=True)
class Variant:
    """A measurement of the pipeline with other settings (e.g. a previous design kept for comparison)."""

    label: str
    title: str
    env: dict[str, str]


#: Today's pipeline with the settings of the design before the throughput work: Faust's per-event streams.
PREVIOUS = Variant("previous", "previous design (per-event input delivery)", {"OMNISTREAM_INPUT_DELIVERY": "stream"})


def worker_env(ctx: BenchContext, settings: SharedInputSettings, state_dir: Path, workers: int) -> dict[str, str]:
    """The ``OMNISTREAM_*`` environment of a measurement's workers."""
    return {
        **os.environ,
        "OMNISTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "OMNISTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "OMNISTREAM_INPUT_PREFIX": settings.input_prefix,
        "OMNISTREAM_APP_ID": settings.app_id,
        "OMNISTREAM_STATE_DIR": str(state_dir),
        "OMNISTREAM_PARTITIONS": str(ctx.partitions),
        "OMNISTREAM_WEB_PORT": str(free_port_range(workers)),
        "OMNISTREAM_DEVELOPMENT": "1",  # generated data, the built-in PII secret
        "OMNISTREAM_METRICS_PORT": str(free_port_range(workers)),
        "PYTHONUNBUFFERED": "1",
    }


def _families(port: int) -> list[Any]:
    """The metric families of a worker's /metrics (empty when the worker does not answer)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return []
    return list(text_string_to_metric_families(text))


def scrape_batches(port: int) -> dict[str, dict[str, float]]:
    """Micro-batches per stage from a worker's /metrics: count, mean seconds (``batch_seconds`` histogram)."""
    stats: dict[str, dict[str, float]] = {}
    for family in _families(port):
        if family.name.endswith("batch_seconds"):
            for sample in family.samples:
                stage = sample.labels.get("stage", "?")
                if sample.name.endswith("_count"):
                    stats.setdefault(stage, {})["batches"] = sample.value
                elif sample.name.endswith("_sum"):
                    stats.setdefault(stage, {})["seconds"] = sample.value
    return stats


def scrape_counter(port: int, name: str) -> float:
    """A counter's total over its labels from a worker's /metrics (0 when the worker does not answer)."""
    return sum(s.value for f in _families(port) if f.name == name for s in f.samples if s.name == f"{name}_total")


def start_workers(
    ctx: BenchContext, count: int, env: dict[str, str], tag: str, module: str
) -> list[subprocess.Popen[bytes]]:
    """Spawn ``count`` worker processes (worker ids 0..count-1); logs in the run's log dir."""
    procs = []
    for worker_id in range(count):
        with (ctx.logs / f"{tag}-worker{worker_id}.log").open("wb") as log:
            cmd = [ctx.python, "-m", module, "worker", "--worker-id", str(worker_id), "--log-level", "WARNING"]
            if module == "bench.worker":
                cmd = [ctx.python, "-m", module, str(worker_id)]
            procs.append(
                subprocess.Popen(
                    cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]], timeout_s: float = 60.0) -> list[int]:
    """SIGTERM every worker, wait, SIGKILL the process group of any that does not exit."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=timeout_s))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            codes.append(proc.wait())
    return codes


def journey_events(env: dict[str, str], workers: int) -> int:
    """Events the workers' journey stages have applied so far (their ``journey_events`` counters)."""
    base = int(env["OMNISTREAM_METRICS_PORT"])
    return int(sum(scrape_counter(base + i, "omnistream_journey_events") for i in range(workers)))


def measure(
    ctx: BenchContext, workload: Workload, workers: int, timeout_s: float, report: Callable[[str], None],
    profile_raw: Path | None = None, cap_s: float | None = None, variant: Variant | None = None,
) -> Measurement:  # fmt: skip
    """Run ``workers`` workers until the group has drained the workload (or ``cap_s`` after the clock started:
    then the rate counts the inputs the journey stage has committed); profile worker 0 if asked. A ``variant``
    runs them with settings of its own (another row: its label joins the key and the title)."""
    tag = f"{workers}w" + (f"-{variant.label}" if variant else "")
    key, title = f"omnistream_{tag}", f"omnistream: {workers} worker{'s' if workers > 1 else ''} (full pipeline)"
    if variant is not None:
        title += f", {variant.title}"
    settings = SharedInputSettings(
        kafka_bootstrap=ctx.bootstrap, topic_prefix=ctx.measurement_prefix(tag), input_prefix=ctx.prefix,
        app_id=ctx.app_id(tag), partitions=ctx.partitions, metrics_port=0,
    )  # fmt: skip
    ensure_measurement_topics(settings)
    counter = TopicCounter(ctx.bootstrap, [settings.topic(t) for t in OUTPUTS])
    ingest = [settings.topic("customer-events"), settings.topic("failed-events")]
    consumed = consumed_topics(settings)
    group = GroupProbe(ctx.bootstrap, settings.app_id)
    env = worker_env(ctx, settings, ctx.dir(f"runs-{ctx.run_id}") / f"{tag}-state", workers)
    env.update(variant.env if variant else {})
    spawned = time.monotonic()
    procs = start_workers(ctx, workers, env, tag, "bench.worker")
    sampler = ProcessSampler([p.pid for p in procs])
    broker = ProcessSampler([ctx.broker_pid] if ctx.broker_pid else [])
    spy: SpySession | None = None
    t_first: float | None = None
    t_done: float | None = None
    ingest_first = ingested = total = journey_first = 0
    capped: float | None = None
    last_growth = last_lag = spawned
    status, note, lag, rss_end = "ok", "", -1, 0
    batches: dict[str, dict[str, dict[str, float]]] = {}
    try:
        while True:
            now = time.monotonic()
            counts = counter.per_topic()
            ingested = sum(counts.get(t, 0) for t in ingest)
            if sum(counts.values()) != total:
                total, last_growth = sum(counts.values()), now
            if t_first is None and total > 0 and group.stable_members() == workers:
                t_first, ingest_first = now, ingested
                journey_first = journey_events(env, workers)
                sampler.start()
                broker.start()
                report(
                    f"  {workers} worker(s) stable after {now - spawned:.1f} s; measuring until the group has no lag"
                )
                if profile_raw is not None:
                    spy = SpySession(procs[0].pid, profile_raw, ctx.logs / f"{tag}-py-spy.log")
            if t_first is not None and ingested >= workload.expected_ingest and now - last_lag >= 1.0:
                last_lag = now
                lag = group_lag(ctx.bootstrap, settings.app_id, consumed)
                if lag == 0:
                    t_done = last_growth
                    break
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                status, note = "failed", f"worker exited with code {dead[0].returncode} (see {ctx.logs})"
                break
            if t_first is not None and cap_s is not None and now - t_first > cap_s:
                status, t_done = "partial", now
                done = journey_events(env, workers) - journey_first
                capped = min(1.0, done / max(workload.expected_canonical, 1))
                note = f"capped at {cap_s:.0f} s: journey had applied {capped:.0%} of the workload's events"
                break
            if now - spawned > timeout_s or (t_first is not None and now - last_growth > STALL_S):
                status, t_done = "partial", last_growth
                note = f"stopped after {now - spawned:.0f} s: {ingested:,} of {workload.expected_ingest:,} ingested"
                break
            if t_first is not None:
                sampler.sample()
            time.sleep(POLL_S)
        usage = sampler.finish() if t_first is not None else None
        broker_usage = broker.finish() if t_first is not None else None
        rss_end = sampler.sample()
        metrics_base = int(env["OMNISTREAM_METRICS_PORT"])
        batches = {f"worker{i}": scrape_batches(metrics_base + i) for i in range(workers)}
        journey_applied = scrape_counter(metrics_base, "omnistream_journey_events")
        if spy is not None and not spy.stop():
            note += "; py-spy wrote no profile (see its log)"
    finally:
        codes = stop_workers(procs)
        counter.close()
        group.close()
    wall = time.monotonic() - spawned
    state = state_sizes(ctx.bootstrap, changelog_topic(settings.app_id)) if status != "failed" else None
    drop_topics(ctx.bootstrap, settings.topic_prefix, settings.app_id + "-")
    if t_first is None or t_done is None or usage is None or broker_usage is None:
        return failed(key, title, note or "no output ever appeared", wall)
    seconds = max(t_done - t_first, 1e-9)
    # Inputs consumed in the window: all minus the share whose ingest outputs existed when the clock started.
    share = max(0.0, min(1.0, (ingested - ingest_first) / max(workload.expected_ingest, 1)))
    if capped is not None:  # the end-to-end progress is the journey's, not ingest's (which runs ahead)
        share = min(share, capped)
    events = int(workload.messages * share)
    details = [f"timed {events:,} of {workload.messages:,} inputs; start-up {t_first - spawned:.1f} s"]
    if lag > 0:
        details.append(f"group lag {lag:,} at the end")
    if any(codes):
        details.append(f"worker exit codes {codes}")
    return Measurement(
        key, title, status=status, events=events, seconds=seconds, rate=events / seconds, wall_s=wall,
        rss_bytes=rss_end, cpu_percent=usage.cpu_percent, broker_cpu_percent=broker_usage.cpu_percent,
        note="; ".join(filter(None, [note, *details])),
        extra={"workers": workers, "rss_peak": usage.rss_peak, "startup_s": t_first - spawned,
               "state": state.__dict__ if state else None, "outputs": counts, "batches": batches,
               "journey_events_worker0": journey_applied},
    )  # fmt: skip
