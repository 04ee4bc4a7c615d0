"""The peer job on Quix Streams: one Application, the four channel topics concatenated into one StreamingDataFrame.

Quix keeps state per Kafka partition, scoped by the message key; the inputs are keyed by the customer key
(``core``), and the four channel topics are co-partitioned, so ``concat`` of their dataframes gives one store per
partition number that sees a customer's events from every channel, without a repartition topic (``group_by``
would add one more produce and consume per event). The session is kept with a stateful ``apply`` in the
default RocksDB store (changelog topic on, Quix's default); updates go out with ``to_topic`` as JSON through
Quix's own serializer (orjson). Concatenating topics makes Quix align the partitions by timestamp (its buffered
poll): that is part of what is measured. The one setting changed from Quix's defaults is the consumer poll
timeout, 0.1 s instead of 1 s: the buffered poll asks librdkafka for up to 10,000 messages and waits the whole
timeout whenever fewer are ready, so with 1 s a draining job sits idle for seconds (it ran at ~35 % CPU on the
quick workload; events per CPU-second is the same either way). The job stops itself once every input offset
taken at start has been processed; ``run()`` then commits a last checkpoint, which flushes the producer, and
only then does the clock stop.

``python -m bench.peers.quix_job SPEC.json RESULT.json`` (in the peers' virtualenv).
"""

from __future__ import annotations

import sys
from typing import Any

from bench.peers.core import CoreJob, Ends, read_spec, update, versions, write_result

POLL_TIMEOUT_S = 0.1  # see the module docstring


def run(spec: dict[str, Any]) -> dict[str, Any]:
    from quixstreams import Application

    job, ends = CoreJob(spec), Ends(spec["ends"])
    app: Any = None

    def processed(topic: str, partition: int, offset: int) -> None:
        if ends.processed(topic, partition, offset):
            app.stop()

    app = Application(
        broker_address=spec["bootstrap"],
        consumer_group=spec["group"],
        auto_offset_reset="earliest",
        state_dir=spec["state_dir"],
        on_message_processed=processed,
        consumer_poll_timeout=POLL_TIMEOUT_S,
        loglevel="INFO",
    )
    inputs = [app.topic(t, key_deserializer="bytes", value_deserializer="bytes") for t in spec["topics"]]
    output = app.topic(spec["output"], key_serializer="str", value_serializer="json")

    def session(value: bytes, key: bytes | None, _ts: int, _headers: Any, state: Any) -> dict[str, Any] | None:
        parsed = job.event(key, value)
        if parsed is None:
            return None
        customer, event_ms = parsed
        current, late = job.step(state.get(customer), event_ms)
        if not late:
            state.set(customer, current)
        return update(customer, current, late)

    frames = [app.dataframe(topic) for topic in inputs]
    sdf = frames[0]
    for other in frames[1:]:
        sdf = sdf.concat(other)
    sdf = sdf.apply(session, stateful=True, metadata=True).filter(lambda u: u is not None)
    sdf.to_topic(output, key=lambda u: u["customer"])
    app.run()
    return job.result(ends.expected, packages=versions("quixstreams", "confluent-kafka", "rocksdict"))


def main(argv: list[str]) -> None:
    write_result(argv[2], run(read_spec(argv[1])))


if __name__ == "__main__":
    main(sys.argv)
