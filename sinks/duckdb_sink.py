"""The DuckDB implementation of :class:`~sinks.contract.SinkWriter`: batches + offsets in one transaction.

One ``DuckDBSink`` owns the live database file (DuckDB: one read-write process per file) and is driven from
one thread. ``omnistream sink`` runs it in a process of its own (``sinks.process_writer``); tests, the bench's
``serial`` mode and tools use it in-process.

``write`` filters messages whose offset is already committed, cuts each table's rows to one per key
(``first_per_key``: highest version, else first), and writes them with ONE set-based statement per table
from the Arrow table registered on the connection: ``MERGE INTO t USING batch ON key WHEN MATCHED AND newer
THEN UPDATE WHEN NOT MATCHED THEN INSERT`` (keep-highest-version tables) or ``… WHEN NOT MATCHED THEN INSERT``
(insert-or-ignore tables); hundreds of thousands of rows per second, where ``executemany`` manages a few
thousand. It stores rejects and upserts the batch's next offsets into ``_sink_offsets``, all between one
``BEGIN`` and one ``COMMIT``. The Arrow conversion itself (``sinks.columnar.prepare``) is normally done by the
caller, in the consumer process.

Checkpoints: DuckDB checkpoints on its own once the WAL passes ``checkpoint_threshold``; its default (16 MB)
made the sink checkpoint every few batches, and each checkpoint recompresses the tables' open row groups, so
the sink raises it (``CHECKPOINT_THRESHOLD``) and lets ``publish`` (a CHECKPOINT every snapshot interval)
do the work: measured on the throughput bench, commits + checkpoints took about half the CPU (1.1 s instead
of 2.2 s per million messages). The WAL (and so replay time after a crash) stays bounded by the threshold
when snapshots are far apart.

Infrastructure errors (``IOException``: disk full, IO error, file lock held by another process;
``OutOfMemoryException``; ``FatalException``, which invalidates the database object) are retried with
exponential backoff: the transaction is rolled back, the connection closed and reopened, and the committed
offsets re-read, so a commit that failed *after* reaching disk is recognised and not written twice. After
``retry_for_s`` it raises :class:`~sinks.contract.SinkInfraError`. Anything else (constraint or conversion
errors: a bug) propagates at once. In both cases nothing of the batch is committed.

Metrics: the sink reports, it does not own a registry. ``write`` returns everything the metrics need
(``WriteResult``), each retry is announced through ``on_retry`` as it happens; ``metrics`` (in-process use
only) wires both into a :class:`~sinks.metrics.SinkMeter`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import duckdb
import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped,unused-ignore]

from pipeline.clock import Clock, SystemClock
from pipeline.privacy.tokens import Tokens
from sinks.columnar import PreparedBatch, PreparedTable, first_per_key, prepare
from sinks.contract import Batch, Reject, SinkInfraError, TopicPartition, WriteResult
from sinks.duckdb_schema import META, OFFSETS, REJECTS, ensure_schema, quote
from sinks.erasure import ErasedSet, ErasureMessage, apply_erasures, keep_rows
from sinks.metrics import SinkMeter, SinkMetrics
from sinks.repoint import alias_join, apply_merges
from sinks.snapshot import STORAGE_VERSION, SnapshotInfo, publish_snapshot, remove_leftovers
from sinks.tables import BoundTable

log = logging.getLogger(__name__)
T = TypeVar("T")

#: DuckDB errors that say "the storage is unwell", not "this batch is wrong": retried, then fatal.
INFRA_ERRORS: tuple[type[BaseException], ...] = (
    duckdb.IOException,
    duckdb.OutOfMemoryException,
    duckdb.FatalException,
    duckdb.ConnectionException,
    OSError,
)
#: WAL size at which DuckDB checkpoints by itself (see the module docstring); ``publish`` checkpoints too.
CHECKPOINT_THRESHOLD = "256MB"
_OFFSETS_SCHEMA = pa.schema([("topic", pa.string()), ("partition", pa.int32()), ("next_offset", pa.int64())])
_REJECTS_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("error", pa.string()),
        ("value", pa.binary()),
    ]
)


class DuckDBSink:
    """Writes batches into the DuckDB file ``db_path`` and publishes snapshots at ``snapshot_path``.

    See :class:`~sinks.contract.SinkWriter` for the guarantees; this class adds: ``publish`` returns ``None``
    without copying when nothing was committed since the last snapshot (the snapshot is then current).
    ``submit`` writes at once (in-process: there is nothing to overlap with).
    """

    def __init__(
        self,
        db_path: Path,
        snapshot_path: Path,
        tables: list[BoundTable],
        metrics: SinkMetrics | None = None,
        *,
        clock: Clock | None = None,
        retry_for_s: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        snapshot_method: str = "copy",
        durable_snapshots: bool = True,
        on_retry: Callable[[str], None] | None = None,
        tokens: Tokens | None = None,
    ) -> None:
        self.db_path = db_path
        self._tokens = tokens
        self._erased = ErasedSet()
        self._deleted: dict[str, int] = {}  # rows erased per table by this process (logged)
        self.snapshot_path = snapshot_path
        self.tables = tables
        self._clock = clock or SystemClock()
        self._retry_for_s = retry_for_s
        self._sleep = sleep
        self._snapshot_method = snapshot_method
        self._durable = durable_snapshots
        self._con: duckdb.DuckDBPyConnection | None = None
        self._committed: dict[TopicPartition, int] = {}
        self._dirty = True  # the first publish of a process always copies
        self._merge_tables = [t for t in tables if t.spec.merges]
        self._profile_tables = [t for t in tables if t.spec.customer_column]
        self._row_tables = [t for t in tables if not t.spec.merges]
        self._by_name = {t.name: t for t in tables}
        self._meter = None if metrics is None else SinkMeter(metrics, db_path, snapshot_path, self._clock)
        meter_retry = None if self._meter is None else self._meter.retried
        self._on_retry = on_retry or meter_retry

    # --- SinkWriter -----------------------------------------------------------------------------------------

    def open(self) -> dict[TopicPartition, int]:
        """Open (create, migrate) the database; the committed next offset of every stored partition."""
        if self._meter is not None:
            self._meter.opened()
        remove_leftovers(self.snapshot_path)
        self._retrying("open", self._connect)
        return dict(self._committed)

    def write(self, batch: Batch | PreparedBatch) -> WriteResult:
        """Commit ``batch`` (rows, rejects, offsets) in one transaction; see the contract.

        A :class:`~sinks.columnar.PreparedBatch` (``prepare`` run by the caller, in the consumer process) skips the
        Arrow conversion here; a plain :class:`~sinks.contract.Batch` is prepared first."""
        result = self._retrying("write", lambda: self._write_once(batch))
        if self._meter is not None:
            self._meter.wrote(result)
        return result

    def submit(self, batch: Batch | PreparedBatch) -> Written:
        """``write`` now; the handle returns its result."""
        return Written(self.write(batch))

    def publish(self) -> SnapshotInfo | None:
        """Publish a snapshot if anything was committed since the last one (see the module docstring)."""
        now = self._clock.now_ms()
        started = time.perf_counter()
        info = None
        if self._dirty or not self.snapshot_path.is_file():
            info = self._retrying("snapshot", lambda: self._publish_once(now))
            self._dirty = False
        if self._meter is not None:
            self._meter.published(now, info is not None, time.perf_counter() - started)
        return info

    def close(self) -> None:
        """Close the connection (DuckDB checkpoints on close). Safe to call twice."""
        con, self._con = self._con, None
        if con is not None:
            con.close()

    # --- extras ---------------------------------------------------------------------------------------------

    @property
    def committed(self) -> dict[TopicPartition, int]:
        """Next offset per partition as of the last commit (a copy)."""
        return dict(self._committed)

    def connection(self) -> duckdb.DuckDBPyConnection:
        """The live connection (tests, bench); only from the sink's thread."""
        if self._con is None:
            self._connect()
        assert self._con is not None
        return self._con

    # --- internals ------------------------------------------------------------------------------------------

    def _connect(self) -> None:
        self.close()
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        # A new live file in the snapshot readers' storage version: publishing is then a plain copy, not a
        # conversion (sinks/snapshot.py); an existing file keeps the version it has.
        con = duckdb.connect(str(self.db_path), config={"storage_compatibility_version": STORAGE_VERSION})
        try:
            con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
            ensure_schema(con, self.tables)
            rows = con.execute(f'SELECT topic, "partition", next_offset FROM {OFFSETS}').fetchall()
            self._erased = ErasedSet.load(con)
        except BaseException:
            con.close()
            raise
        self._con = con
        self._committed = {(str(t), int(p)): int(o) for t, p, o in rows}

    def _retrying(self, operation: str, attempt: Callable[[], T]) -> T:
        started = time.monotonic()
        delay = 0.2
        while True:
            try:
                return attempt()
            except INFRA_ERRORS as error:
                elapsed = time.monotonic() - started
                # Drop the connection: after a FatalException DuckDB refuses every further statement, and a
                # fresh open re-reads the committed offsets (did the failed COMMIT reach disk after all?).
                with contextlib.suppress(Exception):
                    self.close()
                if elapsed + delay > self._retry_for_s:
                    raise SinkInfraError(
                        f"DuckDB {operation} on {self.db_path} kept failing for {elapsed:.0f}s; nothing of the "
                        f"current batch was committed: {type(error).__name__}: {error}"
                    ) from error
                log.warning(
                    "DuckDB %s failed (%s: %s); retrying in %.1fs", operation, type(error).__name__, error, delay
                )
                if self._on_retry is not None:
                    self._on_retry(operation)
                self._sleep(delay)
                delay = min(delay * 2, 10.0)

    def _write_once(self, batch: Batch | PreparedBatch) -> WriteResult:
        con = self.connection()
        if isinstance(batch, Batch):
            batch = prepare(batch, self._by_name)
        tables, rejects, replayed = self._fresh(batch)
        advance = {tp: nxt for tp, (_, nxt) in batch.offsets.items() if nxt > self._committed.get(tp, -1)}
        written: dict[str, int] = {}
        started = time.perf_counter()
        erasures = [e for e in batch.erasures if self._fresh_erasure(e)]
        if self._tokens is not None and self._erased and not erasures:  # with erasures: filtered once, below
            tables = {n: kept for n, t in tables.items() if len(kept := keep_rows(t, self._tokens, self._erased))}
        if advance or tables or rejects:
            con.execute("BEGIN TRANSACTION")
            try:
                if erasures and self._tokens is not None:  # first: rows of this batch are then filtered as well
                    erased = self._erased.copy()  # kept only if the transaction commits
                    deleted = apply_erasures(con, erasures, self.tables, self._tokens, erased, self._now())
                    tables = {n: kept for n, t in tables.items() if len(kept := keep_rows(t, self._tokens, erased))}
                    for name, count in deleted.items():
                        self._deleted[name] = self._deleted.get(name, 0) + count
                # Merges first: rows of this same batch then already map through the updated alias table.
                for table in self._merge_tables:
                    merges = tables.get(table.name)
                    if merges is not None:
                        written[table.name] = self._insert(con, merges)
                        pairs = merges.arrow.select(["old_id", "new_id"]).to_pylist()
                        apply_merges(con, pairs, self._profile_tables)
                for table in self._row_tables:
                    rows = tables.get(table.name)
                    if rows is not None:
                        written[table.name] = self._insert(con, rows)
                if rejects:
                    self._insert_rejects(con, rejects)
                if advance:
                    self._upsert_offsets(con, advance)
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    con.execute("ROLLBACK")
                raise
            self._committed.update(advance)
            self._dirty = True
            if erasures and self._tokens is not None:
                self._erased = erased
                log.info("erasure of %d records applied; rows deleted so far: %s", len(erasures),
                         ", ".join(f"{k} {v}" for k, v in sorted(self._deleted.items())) or "none")  # fmt: skip
        seconds = time.perf_counter() - started
        messages = {name: len(t) for name, t in tables.items()}
        return WriteResult(written, replayed, len(rejects), seconds, messages)

    def _fresh_erasure(self, erasure: ErasureMessage) -> bool:
        """Whether a suppression record's offset is not committed yet (a replayed one was applied already)."""
        tp = (erasure.topic, erasure.partition)
        return bool(erasure.offset >= self._committed.get(tp, 0))

    def _fresh(self, batch: PreparedBatch) -> tuple[dict[str, PreparedTable], list[Reject], int]:
        """Tables (non-empty) and rejects whose offsets are not committed yet, and how many were dropped as replays."""
        committed = self._committed
        stale = {tp: committed[tp] for tp, (first, _) in batch.offsets.items() if first < committed.get(tp, 0)}
        if not stale:
            return {n: t for n, t in batch.tables.items() if len(t)}, batch.rejects, 0  # normal: no per-row check
        tables: dict[str, PreparedTable] = {}
        for name, prepared in batch.tables.items():
            coords, drop = prepared.coords, None
            for (topic, partition), next_offset in stale.items():
                old = pc.and_(
                    pc.and_(pc.equal(coords["topic"], topic), pc.equal(coords["partition"], partition)),
                    pc.less(coords["offset"], next_offset),
                )
                drop = old if drop is None else pc.or_(drop, old)
            kept = prepared if drop is None else prepared.filter(pc.invert(drop))
            if len(kept):
                tables[name] = kept
        rejects = [r for r in batch.rejects if r.offset >= committed.get((r.topic, r.partition), 0)]
        kept_messages = sum(len(t) for t in tables.values()) + len(rejects)
        return tables, rejects, batch.messages - kept_messages

    def _insert(self, con: duckdb.DuckDBPyConnection, prepared: PreparedTable) -> int:
        """One ``MERGE`` for the table's rows of this batch (see the module docstring); rows inserted or updated."""
        table = prepared.table
        spec = table.spec
        con.register("_batch", first_per_key(prepared.arrow, spec.key, spec.version_column))
        try:
            on = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in spec.key)
            sql = f"MERGE INTO {quote(table.name)} AS t USING ({alias_join(table, '_batch')}) AS s ON {on}"
            if spec.version_column is not None:
                v = quote(spec.version_column)
                # Explicit names: DuckDB's ``UPDATE SET *`` assigns by position.
                sets = ", ".join(
                    f"{quote(c.name)} = s.{quote(c.name)}" for c in table.columns if c.name not in spec.key
                )
                sql += f" WHEN MATCHED AND s.{v} > t.{v} THEN UPDATE SET {sets}"
            result = con.execute(sql + " WHEN NOT MATCHED THEN INSERT BY NAME").fetchone()
        finally:
            con.unregister("_batch")
        return int(result[0]) if result else 0

    def _insert_rejects(self, con: duckdb.DuckDBPyConnection, rejects: list[Reject]) -> None:
        data = pa.table(
            [
                [r.topic for r in rejects],
                [r.partition for r in rejects],
                [r.offset for r in rejects],
                [r.error for r in rejects],
                [r.value for r in rejects],
            ],
            schema=_REJECTS_SCHEMA,
        )
        con.register("_rejects", data)
        try:
            con.execute(
                f'INSERT INTO {REJECTS} SELECT topic, "partition", "offset", error, value, ? FROM _rejects '
                "ON CONFLICT DO NOTHING",
                [self._now()],
            )
        finally:
            con.unregister("_rejects")

    def _upsert_offsets(self, con: duckdb.DuckDBPyConnection, advance: dict[TopicPartition, int]) -> None:
        data = pa.table(
            [[t for t, _ in advance], [p for _, p in advance], list(advance.values())], schema=_OFFSETS_SCHEMA
        )
        con.register("_offsets", data)
        try:
            con.execute(
                f'INSERT INTO {OFFSETS} SELECT topic, "partition", next_offset, ? FROM _offsets '
                "ON CONFLICT DO UPDATE SET next_offset = EXCLUDED.next_offset, committed_at = EXCLUDED.committed_at",
                [self._now()],
            )
        finally:
            con.unregister("_offsets")

    def _publish_once(self, now_ms: int) -> SnapshotInfo:
        con = self.connection()
        con.execute(f"INSERT OR REPLACE INTO {META} VALUES ('snapshot_published_at', ?)", [str(now_ms)])
        return publish_snapshot(con, self.db_path, self.snapshot_path, self._snapshot_method, self._durable)

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock.now_ms() / 1000, dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Written:
    """A write that already happened (``DuckDBSink.submit``)."""

    value: WriteResult

    def result(self) -> WriteResult:
        return self.value
