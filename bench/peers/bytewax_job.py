"""The peer job on Bytewax: one dataflow, one worker, KafkaSource -> filter_map -> stateful_map -> KafkaSink.

``KafkaSource`` reads every partition of the four channel topics from the beginning with ``tail=False``: each
partition ends at the end offset it finds (the inputs are loaded once and do not grow, so that is the end
offset taken at start), and the dataflow finishes when all have ended. ``filter_map`` decodes and keys
(``core``), ``stateful_map`` keeps the session per customer key in Bytewax's in-memory state (no recovery
configured: fresh state every run), and the updates go out as JSON (``core.encode``, the standard library's
json) through ``KafkaSink``, which flushes its producer after every batch and on close. The clock stops when
``cli_main`` returns, so the output is flushed; CPU time covers the Rust threads of the process.

``python -m bench.peers.bytewax_job SPEC.json RESULT.json`` (in the peers' virtualenv).
"""

from __future__ import annotations

import sys
from typing import Any

from bench.peers.core import CoreJob, Ends, Session, encode, read_spec, update, versions, write_result


def run(spec: dict[str, Any]) -> dict[str, Any]:
    import bytewax.operators as op
    from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
    from bytewax.dataflow import Dataflow
    from bytewax.run import cli_main

    job, ends = CoreJob(spec), Ends(spec["ends"])
    brokers = spec["bootstrap"].split(",")

    def keyed(msg: Any) -> tuple[str, int] | None:
        return job.event(msg.key, msg.value)

    def session(state: Session | None, event_ms: int) -> tuple[Session | None, tuple[Session, bool]]:
        current, late = job.step(state, event_ms)
        return (state if late else current), (current, late)

    def to_message(item: tuple[str, tuple[Session, bool]]) -> Any:
        customer, (current, late) = item
        return KafkaSinkMessage(customer.encode(), encode(update(customer, current, late)))

    flow = Dataflow("peer_sessions")
    messages = op.input("kafka_in", flow, KafkaSource(brokers, spec["topics"], tail=False))
    events = op.filter_map("decode_and_key", messages, keyed)
    sessions = op.stateful_map("session", events, session)
    op.output("kafka_out", op.map("to_message", sessions, to_message), KafkaSink(brokers, spec["output"]))
    cli_main(flow, workers_per_process=1)  # type: ignore[no-untyped-call]  # untyped in bytewax's stub
    return job.result(ends.expected, packages=versions("bytewax", "confluent-kafka"))


def main(argv: list[str]) -> None:
    write_result(argv[2], run(read_spec(argv[1])))


if __name__ == "__main__":
    main(sys.argv)
