"""Recovery of a worker holding N customers after ``kill -9`` (part of ``--only state``).

The journey's state topic (``<app id>-journey-changelog``, created with the project's configs) is loaded with N
records as the journey writes them (key = profile id on Kafka's partition for it, value = header + body from
bench/state_build.py, tag 0); resolved-events gets one probe per partition (a bundle with a progress mark and
no items), which the journey answers by writing its partition record. A real worker (``bench.worker``) is
started on that deployment: it takes every partition and rebuilds them from the state topic (the *cold start*:
a new deployment or a worker taking the partitions over). Once it has answered and committed, it is killed with
SIGKILL, new probes are published and the worker is started again: the *restart* figure is from spawning it to
its answers for every partition (Faust start-up, the group rebalance, and reading the whole state topic back).
The worker's own ``journey_restore_seconds`` gives the part spent rebuilding partitions.

Also the plain read of one partition (``scan_partition`` + ``recover``, what ``restore`` runs) on its own, and
the same records loaded from a local RocksDB file (``rocksdict``, optional: bench/state_store.py).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from agents.journey import partition_of
from agents.state_table import pack, recover
from bench.context import BenchContext, Measurement, failed, free_port_range
from bench.pipeline_run import scrape_batches, start_workers, stop_workers, worker_env
from bench.state_build import Template, codec, customers
from bench.state_store import rocksdb_load
from bench.topics import SharedInputSettings, drop_topics, ensure_measurement_topics
from pipeline.steps.bundles import Mark, bundle
from pipeline.topic_reader import scan_partition
from pipeline.topics import ensure_journey_state_topic

COMMIT_WAIT_S = 5.0  # the worker commits every second; then it is killed


def _ends(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False)
    try:
        found = consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return {tp.partition: int(off) for tp, off in found.items()}
    finally:
        consumer.close()


def load_state(bootstrap: str, topic: str, sample: list[Template], n: int, partitions: int) -> dict[str, float]:
    """Produce N records as the journey writes them; (seconds, bytes)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), linger_ms=20, batch_size=1 << 20,
                             max_request_size=8 << 20, acks=1)  # fmt: skip
    started, total = time.perf_counter(), 0
    for key, body, due in customers(sample, n):
        value = pack(0, due, body)
        total += len(key) + len(value)
        producer.send(topic, key=key, value=value, partition=partition_of(key, partitions))
    producer.flush()
    producer.close()
    return {"seconds": time.perf_counter() - started, "bytes": total}


def probe(bootstrap: str, topic: str, partitions: int, mark: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","))
    for p, (key, value) in enumerate(bundle(codec(), [], lambda _k: 0, partitions, [Mark("bench-probe", mark)])):
        producer.send(topic, key=key, value=value, partition=p)
    producer.flush()
    producer.close()


def run_until_answered(
    ctx: BenchContext, env: dict[str, str], state_topic: str, tag: str, timeout_s: float
) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """Start one worker; wait until it has written to every partition of the state topic."""
    before = _ends(ctx.bootstrap, state_topic, ctx.partitions)
    env = {**env, "OMNISTREAM_METRICS_PORT": str(free_port_range(1)), "OMNISTREAM_WEB_PORT": str(free_port_range(1))}
    spawned = time.monotonic()
    proc = start_workers(ctx, 1, env, tag, "bench.worker")[0]
    answered: dict[int, float] = {}
    while len(answered) < ctx.partitions and time.monotonic() - spawned < timeout_s and proc.poll() is None:
        time.sleep(0.25)
        for p, end in _ends(ctx.bootstrap, state_topic, ctx.partitions).items():
            if end > before[p] and p not in answered:
                answered[p] = time.monotonic() - spawned
    port = int(env["OMNISTREAM_METRICS_PORT"])
    restore = _histogram(port, "omnistream_journey_restore_seconds")
    figures = {"seconds": max(answered.values()) if len(answered) == ctx.partitions else None,
               "first_partition_s": min(answered.values(), default=None), "restore": restore,
               "batches": scrape_batches(port).get("journey", {}), "exit": proc.poll()}  # fmt: skip
    return proc, figures


def _histogram(port: int, name: str) -> dict[str, float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in (f"{name}_sum", f"{name}_count"):
                out[s.name.rsplit("_", 1)[1]] = s.value
    return out


def plain_read(bootstrap: str, topic: str, partition: int) -> dict[str, float]:
    """One partition read back as ``restore`` does it, outside a worker."""
    started = time.perf_counter()
    store = recover(scan_partition(bootstrap, topic, partition), 10**12)
    seconds = time.perf_counter() - started
    return {"records": len(store), "seconds": seconds, "rate": len(store) / seconds,
            "bytes": sum(len(k) + len(v) for k, v in store.items())}  # fmt: skip


def measure(
    ctx: BenchContext, n: int, sample: list[Template], report: Callable[[str], None], timeout_s: float = 600.0
) -> Measurement:  # fmt: skip
    key, title = "state_recovery", f"recovery of a worker holding {n:,} customers"
    prefix = ctx.measurement_prefix("state")
    settings = SharedInputSettings(kafka_bootstrap=ctx.bootstrap, topic_prefix=prefix, input_prefix=prefix,
                                   app_id=ctx.app_id("state"), partitions=ctx.partitions, metrics_port=0)  # fmt: skip
    ensure_measurement_topics(settings)
    state_topic = ensure_journey_state_topic(settings)
    resolved = settings.topic("resolved-events")
    env = worker_env(ctx, settings, ctx.dir(f"runs-{ctx.run_id}") / "state-worker", 1)
    procs: list[Any] = []
    try:
        loaded = load_state(ctx.bootstrap, state_topic, sample, n, ctx.partitions)
        report(f"  state topic loaded: {n:,} records, {loaded['bytes'] / 1e6:,.0f} MB in {loaded['seconds']:.0f} s")
        read = plain_read(ctx.bootstrap, state_topic, 0)
        report(f"  plain read of partition 0: {read['records']:,} records in {read['seconds']:.1f} s")
        local = rocksdb_load(ctx.dir(f"runs-{ctx.run_id}") / "state-rocksdb",
                             scan_partition(ctx.bootstrap, state_topic, 0))  # fmt: skip
        probe(ctx.bootstrap, resolved, ctx.partitions, 1)
        proc, cold = run_until_answered(ctx, env, state_topic, "state-cold", timeout_s)
        procs.append(proc)
        report(f"  cold start: every partition answered after {cold['seconds']} s")
        if cold["seconds"] is None:
            return failed(key, title, f"the worker did not answer (see {ctx.logs})")
        time.sleep(COMMIT_WAIT_S)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        probe(ctx.bootstrap, resolved, ctx.partitions, 2)
        proc, restart = run_until_answered(ctx, env, state_topic, "state-restart", timeout_s)
        procs.append(proc)
        report(f"  restart after kill -9: every partition answered after {restart['seconds']} s")
    finally:
        stop_workers([p for p in procs if p.poll() is None])
        drop_topics(ctx.bootstrap, prefix, settings.app_id + "-")
    seconds = restart["seconds"]
    return Measurement(key, title, status="ok" if seconds is not None else "failed", events=n, seconds=seconds,
                       rate=n / seconds if seconds else None,
                       note=f"restart after kill -9 until every partition answered; cold start "
                            f"{cold['seconds']:.1f} s",
                       extra={"partitions": ctx.partitions, "load": loaded, "plain_read": read, "rocksdb": local,
                              "cold": cold, "restart": restart})  # fmt: skip
