"""A local copy of a compacted topic, kept current by a background thread (no consumer group, from offset 0).

Subclasses say what a record does (:meth:`CompactedReplica.apply`); this class owns the thread, reconnecting
after a broker error, and the "caught up" signal.

Guarantees: after ``wait_caught_up`` returns True, every record the topic held when the thread started has
been applied, in offset order per partition. Not guaranteed: how fresh the copy is after that (a poll every
200 ms while records arrive).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition

log = logging.getLogger(__name__)


class CompactedReplica:
    """Base class: override :meth:`apply`."""

    def __init__(self, bootstrap: str, topic: str, client_config: Mapping[str, Any] | None = None,
                 name: str = "replica") -> None:  # fmt: skip
        self._client_config = dict(client_config or {})
        self._bootstrap = bootstrap
        self._topic = topic
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.error: BaseException | None = None

    def apply(self, key: bytes, value: bytes | None) -> None:
        raise NotImplementedError

    @property
    def started(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def caught_up(self) -> bool:
        """Whether the replica has read the topic to the end it had when it started."""
        return self._caught_up.is_set()

    def wait_caught_up(self, timeout_s: float) -> bool:
        return self._caught_up.wait(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
            except Exception as exc:  # the broker may be down: keep the copy we have and try again
                self.error = exc
                log.warning("%s: %r; reconnecting in 2s", self._thread.name, exc)
                time.sleep(2)

    def _consume(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self._bootstrap.split(","), group_id=None, enable_auto_commit=False, **self._client_config
        )
        try:
            parts = consumer.partitions_for_topic(self._topic) or set()
            if not parts:
                raise LookupError(f"topic {self._topic} does not exist")
            tps = [TopicPartition(self._topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            positions = {tp: 0 for tp in tps}
            for tp in tps:
                consumer.seek(tp, 0)
            end = consumer.end_offsets(tps)
            while not self._stop.is_set():
                if not self._caught_up.is_set() and all(positions[tp] >= end[tp] for tp in tps):
                    self._caught_up.set()
                for tp, records in consumer.poll(timeout_ms=200).items():
                    for rec in records:
                        self.apply(rec.key, rec.value)
                    positions[tp] = consumer.position(tp)
        finally:
            consumer.close()
