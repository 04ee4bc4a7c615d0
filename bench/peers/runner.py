"""Step ``peers``: run the three peer jobs on the bench input topics and return one table row each.

Each job runs in a child process of the peers' virtualenv (``venv``) with a spec: the broker, the four input
topics, their end offsets taken now (the drain target), the writer schemas by id from the project's file
registry (channel subjects), a fresh output topic (same partition count as the inputs) and, for Quix, a fresh
consumer group and state directory. A job measures itself (``core.CoreJob.result``); here the row gets the
child's peak RSS and the broker's CPU, and the output topic's size is checked against the updates the job says
it sent. A job that does not finish within the timeout, fails, or whose venv cannot be built is reported as
failed with the reason. The job's topics (output, Quix's changelog) and state directory are deleted afterwards.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.child import run_child
from bench.context import BenchContext, Measurement, failed
from bench.peers.venv import PeerVenvError, ensure_peers_venv
from bench.workload import Workload, end_offsets
from pipeline.kafka_local import delete_topics, ensure_topics, list_topics
from pipeline.settings import CHANNELS
from schemas.registry_file import FileSchemaRegistry

CORE = "decode Confluent Avro, key by customer, 30-min event-time session per key, one JSON update per event"


@dataclass(frozen=True)
class Peer:
    key: str
    title: str
    module: str
    how: str


PEERS = (
    Peer("peer_quix", "peer: Quix Streams, 1 process", "bench.peers.quix_job",
         "StreamingDataFrame over the 4 topics concatenated, stateful apply in RocksDB (changelog on), to_topic "
         "with Quix's JSON serializer (orjson); poll timeout 0.1 s"),
    Peer("peer_bytewax", "peer: Bytewax, 1 worker", "bench.peers.bytewax_job",
         "KafkaSource (tail=False) -> filter_map -> stateful_map (in memory, no recovery) -> KafkaSink; stdlib "
         "JSON"),
    Peer("peer_aiokafka", "peer: aiokafka + dict (hand-written)", "bench.peers.aiokafka_job",
         "getmany batches, dict state, send_batch per partition; stdlib JSON"),
)  # fmt: skip


def schema_table() -> dict[str, dict[str, Any]]:
    """str(schema id) -> writer schema and, when the writer is not its subject's latest, the latest to read with.

    Only the channel subjects (the inputs' contracts): a message framed with any other id is bad input.
    """
    registry = FileSchemaRegistry()
    table: dict[str, dict[str, Any]] = {}
    for schema in registry.all_schemas():
        if schema.subject not in CHANNELS:
            continue
        latest = registry.latest(schema.subject)
        reader = None if latest.schema_id == schema.schema_id else latest.schema_json
        table[str(schema.schema_id)] = {"subject": schema.subject, "writer": schema.schema_json, "reader": reader}
    return table


def measure_all(
    ctx: BenchContext, workload: Workload, timeout_s: float, report: Callable[[str], None]
) -> list[Measurement]:
    """One row per peer, in PEERS order; every failure becomes a failed row."""
    try:
        python = str(ensure_peers_venv(ctx.out, report, ctx.logs / "peers-venv.log"))
    except PeerVenvError as exc:
        return [failed(p.key, p.title, f"peers venv: {exc}") for p in PEERS]
    ends = end_offsets(ctx.bootstrap, ctx.input_topics)
    if sum(ends.values()) != workload.messages:
        report(f"warning: the input topics hold {sum(ends.values()):,} messages, the workload {workload.messages:,}")
    schemas = schema_table()
    rows = []
    for peer in PEERS:
        report(f"{peer.title}: running")
        try:
            rows.append(measure(ctx, peer, python, ends, schemas, timeout_s))
        except Exception as exc:  # reported, not fatal: the other rows stand
            rows.append(failed(peer.key, peer.title, f"{type(exc).__name__}: {exc}"))
    return rows


def measure(
    ctx: BenchContext, peer: Peer, python: str, ends: dict[str, int], schemas: dict[str, Any], timeout_s: float
) -> Measurement:
    tag = peer.key.replace("_", "-")
    prefix = ctx.measurement_prefix(tag)
    output, group = f"{prefix}sessions", ctx.app_id(tag)
    state_dir = ctx.dir(f"runs-{ctx.run_id}") / f"{tag}-state"
    ensure_topics(ctx.bootstrap, [output], ctx.partitions, 1)
    spec = {"bootstrap": ctx.bootstrap, "topics": ctx.input_topics, "ends": ends, "output": output,
            "schemas": schemas, "group": group, "state_dir": str(state_dir)}  # fmt: skip
    try:
        run = run_child(ctx, peer.key, peer.module, spec, timeout_s, python=python)
        written = sum(end_offsets(ctx.bootstrap, [output]).values())
    finally:
        delete_topics(ctx.bootstrap, [t for t in list_topics(ctx.bootstrap) if t.startswith(prefix) or group in t])
        shutil.rmtree(state_dir, ignore_errors=True)
    res = run.result
    if res is None:
        why = "timed out" if run.exit_code is None else f"exit code {run.exit_code}"
        return failed(peer.key, peer.title, f"{why}: {run.log_tail(3)}", run.wall_s)
    return row(peer, res, written, run.wall_s, run.usage.rss_peak, run.broker.cpu_percent)


def row(peer: Peer, res: dict[str, Any], written: int, wall_s: float, rss: int, broker_cpu: float) -> Measurement:
    """The table row of one job's RESULT.json; ``written``: messages found in its output topic afterwards."""
    events, seconds = int(res["events"]), float(res["seconds"])
    notes = [f"{peer.how}; {', '.join(res['packages'])}",
             f"{res['bad']:,} bad input, {res['unkeyed']:,} without a customer key, {res['late']:,} late; "
             f"{res['updates']:,} updates"]  # fmt: skip
    if written != res["updates"]:
        notes.append(f"but {written:,} messages in the output topic")
    if res["rekeyed"]:
        notes.append(f"{res['rekeyed']:,} events keyed differently from their Kafka key")
    if not res["drained"]:
        notes.append(f"processed {events:,} of {res['expected']:,}")
    return Measurement(
        peer.key,
        peer.title,
        status="ok" if res["drained"] and written == res["updates"] else "partial",
        events=events,
        seconds=seconds,
        rate=events / seconds if seconds else None,
        wall_s=wall_s,
        rss_bytes=rss,
        cpu_percent=res["cpu_percent"],
        broker_cpu_percent=broker_cpu,
        note="; ".join(notes),
        extra={"result": res, "output_messages": written},
    )
