"""Whole-pipeline runs through the real broker for the event-time tests: one simulated input produced into a
fresh prefix in a chosen order, real worker processes (optionally killed), the real sink, and the warehouse rows.

Every run produces the same messages (the simulator is deterministic for a seed and an end time, and Kafka's
partitioner puts a key on the same partition in every prefix), so runs must end with the same rows.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from kafka import KafkaAdminClient

from pipeline.drain import wait_drained
from pipeline.evaluate.warehouse import COMPARED, PROCESSING_TIME_COLUMNS
from pipeline.simulate.config import SimConfig
from pipeline.simulate.messages import SimMessage
from pipeline.simulate.producer import KafkaSink, produce
from pipeline.simulate.simulation import Simulation
from pipeline.simulate.truth import TruthRecorder
from pipeline.topic_reader import topic_end_total
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from sinks.tables import SINK_TOPICS
from tests.integration.pipeline_env import PipelineEnv
from tests.integration.processes import Proc, wait_until

TABLES = (*COMPARED, "failed_events")
LATENESS_S = 4 * 3600  # below the simulator's longest delivery delay (12 h): some valid events are late
IDLE_S = 2


@dataclass(frozen=True)
class SimInput:
    """The simulated messages of one world, in delivery order, and their truth (partitions as in Kafka)."""

    config: SimConfig
    messages: list[SimMessage]
    truth: dict[str, Any]


def make_input(config: SimConfig, partitions: int) -> SimInput:
    sim = Simulation(config)
    channels = ("web", "mobile", "store", "social")
    recorder = TruthRecorder(sim, {c: c for c in channels}, dict.fromkeys(channels, partitions))
    messages = list(sim.messages())
    for msg in messages:
        recorder.observe(msg)
    return SimInput(config, messages, recorder.to_dict())


def send(env: PipelineEnv, messages: Iterable[SimMessage], rate: float | None = None) -> None:
    sink = KafkaSink(env.bootstrap)
    report = produce(messages, sink, AvroCodec(FileSchemaRegistry()), env.settings().input_topics, rate=rate,
                     show_progress=False)  # fmt: skip
    sink.close(report)
    assert report.ok, report.errors


@dataclass
class Run:
    """One pipeline deployment on its own prefix and what it left in its warehouse."""

    env: PipelineEnv
    extra: dict[str, str]
    workers: list[Proc] = field(default_factory=list)
    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    snapshot: Path | None = None
    resumes: list[float] = field(default_factory=list)

    def start_worker(self, i: int, name: str | None = None) -> Proc:
        proc = self.env.start_worker(name or f"worker-{i}-{len(self.workers)}", OMNISTREAM_WORKER_ID=str(i),
                                     **self.extra)  # fmt: skip
        self.workers.append(proc)
        return proc

    def alive(self) -> list[Proc]:
        return [p for p in self.workers if p.alive()]

    def __enter__(self) -> Run:
        return self

    def __exit__(self, error: type[BaseException] | None, *_: object) -> None:
        """A run that failed part-way leaves no worker behind to compete with the next run."""
        if error is not None:
            for proc in self.alive():
                proc.kill()


def new_run(bootstrap: str, workdir: Path, params: Path, partitions: int = 4) -> Run:
    env = PipelineEnv.create(bootstrap, workdir, partitions=partitions)
    extra = {
        "OMNISTREAM_MODEL_PARAMS_PATH": str(params),
        "OMNISTREAM_ALLOWED_LATENESS_S": str(LATENESS_S),
        "OMNISTREAM_SOURCE_IDLE_S": str(IDLE_S),
        "OMNISTREAM_HOLDOUT_SHARE": "0.1",
    }
    return Run(env, extra)


def finish(run: Run, timeout_s: float = 600.0) -> Run:
    """Wait until the workers drained every input (and their watermarks passed the end), stop them cleanly, run
    the sink until its snapshot holds every output, and keep the rows."""
    settings = run.env.settings()
    # Quiet for longer than the idle timeout: the last watermark moves only once every partition is idle.
    idle = float(run.extra.get("OMNISTREAM_SOURCE_IDLE_S", IDLE_S))
    wait_drained(settings, quiet_s=idle + 2 * IDLE_S + 2, timeout_s=timeout_s, alive=lambda: bool(run.alive()))
    codes = [p.terminate() for p in run.alive()]
    assert codes == [0] * len(codes), [p.log_tail() for p in run.workers]
    run.snapshot = run_sink(run.env)
    run.rows = warehouse_rows(run.snapshot, run.env.prefix)
    return run


def run_sink(env: PipelineEnv) -> Path:
    db = env.workdir / "warehouse.duckdb"
    snapshot = db.with_suffix(".snap")
    sink = Proc(["sink", "--db", str(db), "--snapshot", str(snapshot), "--snapshot-every", "0.5",
                 "--metrics-port", "0", "--log-level", "INFO"], env.env(), env.workdir / "sink.log")  # fmt: skip
    s = env.settings()
    want = sum(topic_end_total(env.bootstrap, s.topic(t)) for t in SINK_TOPICS)

    def caught_up() -> bool:
        assert sink.alive(), sink.log_tail()
        if not snapshot.is_file():
            return False
        try:
            with duckdb.connect(str(snapshot), read_only=True) as con:
                row = con.execute("SELECT coalesce(sum(next_offset), 0) FROM _sink_offsets").fetchone()
        except duckdb.Error:  # being replaced: try again
            return False
        return bool(row) and int(row[0]) >= want

    wait_until(caught_up, 180, what=f"the sink to store {want} messages")
    assert sink.terminate() == 0, sink.log_tail()
    return snapshot


def warehouse_rows(snapshot: Path, prefix: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the compared tables, without the processing-time columns and the run's topic prefix, in a
    canonical order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with duckdb.connect(str(snapshot), read_only=True) as con:
        for table in TABLES:
            skip = PROCESSING_TIME_COLUMNS.get(table, frozenset())
            cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall() if r[0] not in skip]
            quoted = ", ".join(f"replace(\"{c}\", ?, '')" if c == "source_topic" else f'"{c}"' for c in cols)
            params = [prefix] if "source_topic" in cols else []
            out[table] = con.execute(f"SELECT {quoted} FROM {table} ORDER BY ALL", params).fetchall()
    return out


def differences(a: dict[str, list[tuple[Any, ...]]], b: dict[str, list[tuple[Any, ...]]]) -> dict[str, Any]:
    """Per table with differences: (rows only in a, rows only in b)."""
    out = {}
    for table in TABLES:
        left, right = Counter(map(repr, a[table])), Counter(map(repr, b[table]))
        if left != right:
            out[table] = (sum((left - right).values()), sum((right - left).values()))
    return out


def committed(run: Run, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    """The worker group's committed offset per input partition."""
    settings = run.env.settings()
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        offsets = admin.list_group_offsets({settings.app_id: None}).get(settings.app_id, {})
    finally:
        admin.close()
    names = {settings.topic(t) for t in topics}
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if tp.topic in names}


def end_offsets(settings: Any, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return {tp.partition: end for tp, end in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def produce_in_background(env: PipelineEnv, messages: list[SimMessage], rate: float) -> Callable[[], None]:
    """Produce at ``rate`` messages/s in a thread; returns a function that waits for it and checks it."""
    errors: list[BaseException] = []

    def work() -> None:
        try:
            send(env, messages, rate)
        except BaseException as exc:  # reported by the join below
            errors.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()

    def join() -> None:
        thread.join(600)
        assert not thread.is_alive() and not errors, errors

    return join


class SourceProgress:
    """The highest input offset per input partition with a canonical event published from now on, read
    incrementally from customer-events (ingest publishes it as soon as it processes a message, before event-time
    routing)."""

    def __init__(self, settings: Any) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self._codec = AvroCodec(FileSchemaRegistry())
        self._consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                       enable_auto_commit=False)  # fmt: skip
        topic = settings.topic("customer-events")
        tps = [TopicPartition(topic, p) for p in sorted(self._consumer.partitions_for_topic(topic) or ())]
        self._consumer.assign(tps)
        self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end positions now, not at the first poll
            self._consumer.position(tp)
        self.highest: dict[tuple[str, int], int] = {}

    def poll(self) -> dict[tuple[str, int], int]:
        for records in self._consumer.poll(timeout_ms=200, max_records=50_000).values():
            for rec in records:
                event = self._codec.decode(rec.value).record
                key = (str(event["source_topic"]), int(event["source_partition"]))
                self.highest[key] = max(self.highest.get(key, -1), int(event["source_offset"]))
        return self.highest

    def close(self) -> None:
        self._consumer.close()


def wait_resumed(run: Run, killed_at: float, before: dict[tuple[str, int], int], timeout_s: float = 60.0) -> float:
    """Seconds from a kill until every input partition with messages after ``before`` (the committed offsets
    at the kill) was processed again: a canonical event published after the kill for an offset at or past
    ``before`` (the new owner re-reads from the committed offset). Call it right after the kill. Ingest publishes
    canonical events as it processes; commits follow the event-time watermark, which waits for the sparsest
    source (docs/time.md), so they are not what "resumed" means here."""

    settings = run.env.settings()
    progress = SourceProgress(settings)
    behind: dict[tuple[str, int], tuple[int, int, int]] = {}

    def moved() -> bool:
        seen = progress.poll()
        ends = {(t, p): end for t in settings.input_topics.values() for p, end in end_offsets(settings, t).items()}
        # A partition with nothing new since the kill has nothing to resume.
        behind.clear()
        behind.update({tp: (off, seen.get(tp, -1), ends.get(tp, 0)) for tp, off in before.items()
                       if ends.get(tp, 0) > off and seen.get(tp, -1) < off})  # fmt: skip
        return not behind

    try:
        wait_until(moved, timeout_s, 0.2, "every input partition to be processed again")
    except AssertionError as error:
        stuck = ", ".join(f"{t}[{p}] processed to {c} (committed {b} at the kill, end {e})"
                          for (t, p), (b, c, e) in sorted(behind.items()))  # fmt: skip
        raise AssertionError(f"{error}: {stuck}") from None
    finally:
        progress.close()
    return time.monotonic() - killed_at
