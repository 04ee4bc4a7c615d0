"""Hostile inputs through a real worker: thousands of messages of every kind of wrong, on the channel topics;
each ends as exactly one canonical event or one failed event, and the worker drains and stays up."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from pipeline.topic_reader import iter_topic
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from tests.integration.hostile_inputs import KINDS
from tests.integration.pipeline_env import PipelineEnv
from tests.integration.processes import wait_until

Ref = tuple[str, int, int]
PER_KIND = 180
OVERSIZE_PER_KIND = 12  # 800 KB each: enough to prove the point without a gigabyte of topic
ANY_TOPIC = ("random", "empty", "short", "bad_magic", "null")  # kinds sent to every channel topic


def _ref(record: Any) -> Ref:
    return record["source_topic"], record["source_partition"], record["source_offset"]


def test_every_hostile_message_has_exactly_one_outcome(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = PipelineEnv.create(kafka_bootstrap, tmp_path)
    settings = env.settings()
    codec = AvroCodec(FileSchemaRegistry())
    rng = random.Random(12)
    now = int(time.time() * 1000)
    topics = list(settings.input_topics.values())
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", max_request_size=2_000_000)
    sent: Counter[str] = Counter()
    futures = []
    for kind, build in KINDS.items():
        for _ in range(OVERSIZE_PER_KIND if kind.startswith("oversize") else PER_KIND):
            key, value = build(rng, codec, now)
            topic = rng.choice(topics) if kind.startswith(ANY_TOPIC) else settings.input_topics["web"]
            futures.append(producer.send(topic, key=key, value=value))
            sent[kind] += 1
    producer.flush()
    for f in futures:
        f.get(timeout=30)  # every input acknowledged by the broker
    producer.close()
    total = sum(sent.values())
    print(f"hostile inputs: {total:,} messages of {len(sent)} kinds")
    assert total >= 5000 and len(sent) >= 20

    def outcomes() -> tuple[Counter[Ref], list[dict[str, Any]]]:
        events = iter_topic(env.bootstrap, settings.topic("customer-events"))
        canonical = Counter(_ref(codec.decode(m.value).record) for m in events)
        records = [codec.decode(m.value).record for m in iter_topic(env.bootstrap, settings.topic("failed-events"))]
        return canonical, [r for r in records if r["processor"].startswith("ingest/")]

    worker = env.start_worker(OMNISTREAM_INVALID_RATIO_LIMIT="1.0")

    def done() -> bool:
        assert worker.alive(), worker.log_tail()
        canonical, failed = outcomes()
        return sum(canonical.values()) + len(failed) >= total

    try:
        wait_until(done, 300, 2.0, f"{total} ingest outcomes")
    finally:
        code = worker.terminate()
    assert code == 0, worker.log_tail()

    inputs = {(m.topic, m.partition, m.offset) for t in topics for m in iter_topic(env.bootstrap, t)}
    assert len(inputs) == total
    canonical, failed_records = outcomes()
    failed = Counter(_ref(r) for r in failed_records)
    lost = inputs - set(canonical) - set(failed)
    twice = [ref for ref, n in (canonical + failed).items() if n > 1]
    rules = Counter(r["rule"] for r in failed_records)
    print(f"outcomes: {sum(canonical.values()):,} canonical, {sum(failed.values()):,} failed; "
          f"{len(lost)} without an outcome, {len(twice)} with more than one")  # fmt: skip
    print("failed by rule: " + ", ".join(f"{rule} {n}" for rule, n in rules.most_common()))
    assert not lost and not twice
    assert not set(canonical) & set(failed)
    big = [r for r in failed_records if r["original_bytes"] and r["original_bytes"] > 700_000]
    assert len(big) == OVERSIZE_PER_KIND and all(r["original_sealed"] is None and r["original_hmac"] for r in big)
    assert {r["schema_id"] for r in failed_records} >= {0x80000000, 0xFFFFFFFF}
    assert rules["null_value"] == sent["null_value"] and rules["invalid_identifier"] >= 6 * PER_KIND
