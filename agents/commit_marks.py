"""Progress marks of the input partitions, committed atomically with their offsets (commit metadata).

Why: a late event's order time and the ``late_event`` decision depend on the largest event time seen earlier
on its partition. After a restart or a rebalance the worker resumes from the committed offset, so it needs the
mark *as of that offset*, exactly -- a mark written elsewhere could be ahead of (crash before the commit) or
behind it. Kafka commits carry a metadata string per partition; Kafka Streams keeps its partition time there.
This module does the same for Faust: the worker records the mark at the end of every acknowledged batch, the
commit attaches the mark of the committed offset, and a worker taking a partition over reads it back.

Guarantees: a committed offset of an input partition carries the mark at that offset whenever the batch that
ended there was recorded (always, for the ingest agents); :func:`fetch_marks` returns (offset, mark) per
partition, mark None when the group never committed it with one. Not guaranteed: marks of offsets committed by
another tool (then the partition starts from no mark: its first events are never late).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping
from time import monotonic
from typing import Any

from aiokafka.errors import CommitFailedError
from aiokafka.structs import OffsetAndMetadata
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)
_ATTR = "omnistream_commit_marks"


class CommitMarks:
    """Marks at the end offsets of recorded batches, per (topic, partition); thread-safe (the commit runs on
    Faust's consumer thread)."""

    def __init__(self) -> None:
        self._marks: dict[tuple[str, int], dict[int, int]] = {}
        self._lock = threading.Lock()

    def record(self, topic: str, partition: int, end_offset: int, mark: int) -> None:
        with self._lock:
            self._marks.setdefault((topic, partition), {})[end_offset] = mark

    def metadata(self, topic: str, partition: int, offset: int) -> str:
        """The commit metadata for ``offset``; forgets marks of earlier offsets (they will not be committed)."""
        with self._lock:
            known = self._marks.get((topic, partition))
            if not known:
                return ""
            mark = known.get(offset)
            for old in [o for o in known if o < offset]:
                del known[old]
        return "" if mark is None else json.dumps({"mark": mark}, separators=(",", ":"))


def parse(metadata: str | None) -> int | None:
    """The mark in a commit's metadata, or None."""
    if not metadata:
        return None
    try:
        return int(json.loads(metadata)["mark"])
    except (ValueError, KeyError, TypeError):
        return None


class _MarkingConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    async def _commit(self, offsets: Mapping[Any, int]) -> bool:
        marks: CommitMarks | None = getattr(self.app, _ATTR, None)
        if marks is None:
            return bool(await super()._commit(offsets))
        consumer = self._ensure_consumer()
        assigned = self.assignment()
        commitable = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not commitable:  # all revoked by a rebalance meanwhile: nothing to commit (aiokafka rejects {})
            return False
        try:
            await consumer.commit({
                faust_aiokafka.ensure_aiokafka_TP(tp): OffsetAndMetadata(offset, marks.metadata(tp.topic, tp.partition,
                                                                                                  offset))
                for tp, offset in commitable.items()
            })  # fmt: skip
        except CommitFailedError as exc:
            if "already rebalanced" in str(exc):
                return False
            self.log.exception("Committing raised exception: %r", exc)
            await self.crash(exc)
            return False
        except Exception as exc:  # the same handling as Faust's own commit: crash the consumer loudly
            self.log.exception("Got exception: %r\nCurrent assignment: %r", exc, assigned)
            await self.crash(exc)
            return False
        now = monotonic()
        self.tp_last_committed_at.update({tp: now for tp in commitable})
        return True


def install(app: Any, marks: CommitMarks) -> None:
    """Make ``app``'s consumer attach ``marks`` to its commits. Call before the app starts."""
    setattr(app, _ATTR, marks)
    setattr(faust_aiokafka.Consumer, "_new_consumer_thread", _new_consumer_thread)  # noqa: B010


def _new_consumer_thread(self: Any) -> Any:
    return _MarkingConsumerThread(self, loop=self.loop, beacon=self.beacon)


def fetch_marks(
    bootstrap: str, group_id: str, tps: Iterable[tuple[str, int]], client_config: Mapping[str, Any] | None = None
) -> dict[tuple[str, int], tuple[int, int | None]]:
    """(committed offset, mark) per partition the group has committed (blocking: run it in an executor)."""
    from kafka import KafkaAdminClient, TopicPartition

    wanted = [TopicPartition(t, p) for t, p in tps]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), **dict(client_config or {}))
    try:
        found = admin.list_group_offsets({group_id: wanted}).get(group_id, {})
    finally:
        admin.close()
    return {(tp.topic, tp.partition): (meta.offset, parse(meta.metadata)) for tp, meta in found.items()
            if meta.offset >= 0}  # fmt: skip
