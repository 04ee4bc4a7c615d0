"""The one writer contract of the warehouse sinks, and the batch it is handed.

A sink is fed by exactly one consumer loop (``sinks.consumer``): the loop reads Kafka, decodes, converts each
record into a row of its table, and hands the writer a :class:`Batch`. The writer stores the rows **and the
Kafka offsets the batch covers** atomically; the loop resumes from the offsets the *writer* reports, never from
Kafka's committed offsets. That is what turns an at-least-once stream into effectively-once rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sinks.columnar import PreparedBatch

#: ``(full topic name, partition)``; plain tuples so batches never depend on a Kafka client's classes.
TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class SinkRow:
    """One decoded message turned into a row of ``table``, with the Kafka coordinates it came from."""

    table: str
    topic: str
    partition: int
    offset: int
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reject:
    """A message the sink could not turn into a row (undecodable, wrong subject, null value).

    Rejects are *data*: they are stored in ``_sink_rejects`` in the same transaction as the batch, so they are
    visible and counted, and their offsets advance like any other. They are never infrastructure errors.
    """

    topic: str
    partition: int
    offset: int
    error: str
    value: bytes | None


@dataclass
class Batch:
    """What one writer transaction covers.

    ``offsets`` maps every partition the batch read to ``(first_offset, next_offset)``: the first offset of a
    message in this batch and the offset to resume from after it. It includes partitions whose messages were
    all rejected, so their position still advances. ``rows`` are in consumption order per partition.
    """

    rows: list[SinkRow] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    offsets: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)
    #: suppression records (``pipeline.privacy.suppression.Suppression``) read in this batch: ``sinks.erasure``
    erasures: list[Any] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return len(self.rows) + len(self.rejects) + len(self.erasures)

    def add_offset(self, topic: str, partition: int, offset: int) -> None:
        """Record that the message at ``offset`` is part of this batch."""
        tp = (topic, partition)
        span = self.offsets.get(tp)
        self.offsets[tp] = (offset, offset + 1) if span is None else (min(span[0], offset), max(span[1], offset + 1))


@dataclass(frozen=True)
class WriteResult:
    """What a committed batch changed: rows inserted or updated per table (duplicates ignored are not counted),
    rows skipped because their offset was already committed (replays), rejects stored, the transaction's wall
    time, and the messages per table the transaction covered (replays excluded). Plain values: it is what the
    writer process sends back, and what the consumer process records its metrics from."""

    rows_written: Mapping[str, int]
    replayed: int
    rejects: int
    commit_seconds: float
    messages: Mapping[str, int] = field(default_factory=dict)


class PendingWrite(Protocol):
    """A write handed to the writer and not awaited yet (see :meth:`SinkWriter.submit`)."""

    def result(self) -> WriteResult:
        """Wait for the write; raises what the write raised (then nothing of the batch is committed)."""
        ...


class SinkInfraError(RuntimeError):
    """Storage kept failing (disk full, IO error, lock held) after the retries: stop the sink, commit nothing.

    The batch that failed is not acknowledged anywhere; a restarted sink resumes from the stored offsets and
    writes it again.
    """


class SinkWriter(Protocol):
    """A transactional writer of batches with their Kafka offsets. Single-threaded: every call on one thread.

    Guarantees:

    * ``open`` creates or migrates the tables (idempotent) and returns the committed next offset of every
      partition the writer has ever stored; the consumer must seek there (partitions not listed start from
      the beginning).
    * ``write`` takes a :class:`Batch` or the same batch already converted to Arrow by
      :func:`sinks.columnar.prepare` (the consumer does that itself); both commit the same rows.
    * ``submit`` is ``write`` split in two: it hands the batch over and returns at once when the writer runs
      elsewhere (``sinks.process_writer``: another process), so the caller prepares the next batch meanwhile;
      ``result()`` waits. At most one write is in flight: call ``result()`` before the next call. An
      in-process writer may do the whole write in ``submit``.
    * ``write`` is atomic: the rows of every table in the batch, the rejects and the batch's offsets are
      committed in one transaction, or nothing is. When it returns, the transaction is durable.
    * ``write`` is idempotent: messages at offsets below the committed next offset of their partition are
      skipped (a replayed batch is a no-op), and each table's key makes a row that arrives twice at *different*
      offsets (an at-least-once duplicate upstream) insert-or-ignore, or upsert by version, never double.
    * Infrastructure errors are retried with backoff inside ``write``; when they persist it raises
      :class:`SinkInfraError` with nothing committed. Any other exception is a bug and also commits nothing.
      A batch is never acknowledged and skipped.
    * ``publish`` makes everything committed so far visible to readers atomically (a reader sees one
      committed state or the previous one, never a mix).

    Does not guarantee:

    * ordering of rows across partitions or topics (a session version and the merge that re-points it may
      arrive in either order; tables are designed so both orders end in the same state);
    * that readers see a batch before the next ``publish``;
    * that offsets only move forward if the caller seeks backwards on purpose (they are stored as given);
    * thread safety: every call from one thread (the one that opened the writer).
    """

    def open(self) -> dict[TopicPartition, int]: ...

    def write(self, batch: Batch | PreparedBatch) -> WriteResult: ...

    def submit(self, batch: Batch | PreparedBatch) -> PendingWrite: ...

    def publish(self) -> object: ...

    def close(self) -> None: ...
