"""The DuckDB writer in a process of its own: :class:`ProcessWriter` (consumer side) drives a child process
hosting :class:`~sinks.duckdb_sink.DuckDBSink` over a ``multiprocessing`` pipe.

Why a process and not a thread: DuckDB's Python client re-acquires the GIL many times while one statement runs
(interrupt checks between its tasks). When another thread of the same process holds the GIL (a ``pa.array``
conversion holds it for a whole call; Kafka polling and Avro decoding hold it too), a 0.10 s MERGE took 1.4 s
and varied up to 40x. So a writer *thread* slows DuckDB down instead of overlapping with it. In a process of
its own, DuckDB never waits for the consumer's GIL, and the two use both cores: the consumer polls, decodes and
converts batch N+1 while the child writes batch N.

Protocol: one request at a time (``open``, ``write``, ``publish``, ``close``); a ``write`` request carries the
number of out-of-band buffers and is followed by the batch's pickled structure and those buffers, each sent
with ``send_bytes`` from Arrow's memory (``sinks.wire``). The child answers with any
number of ``retry`` notices (each infrastructure retry, as it happens, so the metric moves during an outage)
and then one ``ok`` or ``error``.

Guarantees (on top of :class:`~sinks.contract.SinkWriter`'s, which the child's ``DuckDBSink`` keeps):

* The child dies with the consumer process: it asks the kernel for SIGKILL when its parent dies
  (``PR_SET_PDEATHSIG``, Linux), exits when the pipe reports EOF, and ignores SIGINT/SIGTERM (the consumer
  decides when to stop: it finishes the batch, publishes, then closes the writer). So a ``kill -9`` of the
  sink leaves no process holding the DuckDB file lock. PDEATHSIG follows the *thread* that started the child:
  call ``open`` from the thread that lives as long as the sink (the main thread).
* Errors keep their meaning: :class:`~sinks.contract.SinkInfraError` in the child is raised as
  ``SinkInfraError`` here; any other exception is re-raised as itself when it can be pickled (else as
  :class:`WriterProcessError`), chained to a :class:`RemoteTraceback` holding the child's traceback text.
* A child that dies (killed, crashed) makes the pending call raise ``SinkInfraError``: the batch in flight may or
  may not be committed, the offsets stored with it say which, and a restarted sink resumes from them.

Not guaranteed: the child uses the system clock (``committed_at``, ``snapshot_published_at``), not an injected
one; the metrics (:class:`~sinks.metrics.SinkMeter`, in this process) use the injected clock.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.clock import Clock
from sinks.columnar import PreparedBatch, prepare
from sinks.contract import Batch, SinkInfraError, TopicPartition, WriteResult
from sinks.metrics import SinkMeter, SinkMetrics
from sinks.snapshot import SnapshotInfo
from sinks.tables import BoundTable
from sinks.wire import encode

log = logging.getLogger(__name__)
#: How long ``close`` waits for the child to close DuckDB (it checkpoints) before killing it.
CLOSE_TIMEOUT_S = 60.0


class WriterProcessError(RuntimeError):
    """An exception of the writer process that could not be sent back as itself (its type name is in the text)."""


class RemoteTraceback(Exception):
    """The writer process's traceback text, chained as the cause of the error raised here."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class WriterConfig:
    """What the child needs to build its ``DuckDBSink`` (pickled once, at start)."""

    db_path: Path
    snapshot_path: Path
    tables: tuple[BoundTable, ...]
    retry_for_s: float = 120.0
    snapshot_method: str = "copy"
    durable_snapshots: bool = True
    log_level: int = logging.INFO
    #: The PII secret, for erasure tokens (``sinks.erasure``); None: the suppression list is not applied.
    erasure_secret: bytes | None = field(default=None, repr=False)


class ProcessWriter:
    """A :class:`~sinks.contract.SinkWriter` whose DuckDB work runs in a child process (see the module docstring).

    ``metrics`` (optional) are recorded here, from what the child reports; the child has no registry.
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
        snapshot_method: str = "copy",
        durable_snapshots: bool = True,
        erasure_secret: bytes | None = None,
    ) -> None:
        # The writer never converts records, so a spec's ``to_row`` (maybe not picklable) stays here.
        plain = tuple(dataclasses.replace(t, spec=dataclasses.replace(t.spec, to_row=None)) for t in tables)
        self.config = WriterConfig(
            db_path,
            snapshot_path,
            plain,
            retry_for_s,
            snapshot_method,
            durable_snapshots,
            logging.root.level,
            erasure_secret,
        )
        self._by_name = {t.name: t for t in tables}
        self._meter = None if metrics is None else SinkMeter(metrics, db_path, snapshot_path, clock)
        self._proc: Any = None  # multiprocessing.process.BaseProcess
        self._conn: Any = None  # multiprocessing.connection.Connection
        self._in_flight = False

    @property
    def pid(self) -> int | None:
        """The writer process's pid while it runs."""
        return None if self._proc is None else int(self._proc.pid)

    def open(self) -> dict[TopicPartition, int]:
        """Start the writer process (from this thread: see PDEATHSIG above) and open the database in it."""
        if self._proc is None:
            self._start()
        if self._meter is not None:
            self._meter.opened()
        committed: dict[TopicPartition, int] = self._call("open")
        return committed

    def write(self, batch: Batch | PreparedBatch) -> WriteResult:
        return self.submit(batch).result()

    def submit(self, batch: Batch | PreparedBatch) -> PendingProcessWrite:
        """Send ``batch`` to the writer process and return without waiting for the commit."""
        if self._in_flight:
            raise RuntimeError("a write is already in flight: call result() on it first")
        prepared = prepare(batch, self._by_name) if isinstance(batch, Batch) else batch
        head, buffers = encode(prepared)
        self._send("write", len(buffers), [head, *buffers])
        self._in_flight = True
        return PendingProcessWrite(self)

    def publish(self) -> SnapshotInfo | None:
        started_ms = self._meter.now_ms() if self._meter is not None else 0
        started = time.perf_counter()
        info: SnapshotInfo | None = self._call("publish")
        if self._meter is not None:
            self._meter.published(started_ms, info is not None, time.perf_counter() - started)
        return info

    def close(self) -> None:
        """Close the database in the writer process and wait for it to exit (killed after ``CLOSE_TIMEOUT_S``).

        With a write still in flight (the caller is failing), the pipe is just closed: the child finishes or
        rolls back that write, sees EOF and exits. Safe to call twice."""
        proc, conn = self._proc, self._conn
        if proc is None:
            return
        try:
            if not self._in_flight:
                with contextlib.suppress(EOFError, OSError, SinkInfraError):
                    self._call("close", timeout_s=CLOSE_TIMEOUT_S)
        finally:
            self._proc = self._conn = None
            self._in_flight = False
            conn.close()
            proc.join(CLOSE_TIMEOUT_S)
            if proc.is_alive():
                log.error("DuckDB writer process %s did not exit; killing it", proc.pid)
                proc.kill()
                proc.join()
            atexit.unregister(self.close)

    # --- internals ------------------------------------------------------------------------------------------

    def _start(self) -> None:
        from sinks.writer_child import serve  # here: that module imports this one

        ctx = multiprocessing.get_context("spawn")  # the consumer has threads: never fork it
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(target=serve, args=(child_end, self.config, os.getpid()), name="duckdb-writer")
        proc.start()
        child_end.close()  # else the child's death would not show as EOF here
        self._proc, self._conn = proc, parent_end
        # Before multiprocessing's own exit handler (which would join a child still waiting for requests).
        atexit.register(self.close)
        log.info("DuckDB writer process %s started for %s", proc.pid, self.config.db_path)

    def _send(self, op: str, arg: Any = None, buffers: list[Any] | None = None) -> None:
        conn = self._live_conn()
        try:
            conn.send((op, arg))
            for buffer in buffers or ():
                conn.send_bytes(buffer)
        except OSError as error:  # BrokenPipeError / ConnectionResetError: the child is gone
            raise self._died(error) from error

    def _receive(self, timeout_s: float | None = None) -> Any:
        conn = self._live_conn()
        try:
            while True:
                if timeout_s is not None and not conn.poll(timeout_s):
                    raise SinkInfraError(f"the DuckDB writer process did not answer within {timeout_s:.0f}s")
                kind, payload = conn.recv()
                if kind == "retry":
                    if self._meter is not None:
                        self._meter.retried(payload)
                    continue
                break
        except (EOFError, OSError) as error:
            raise self._died(error) from error
        if kind == "ok":
            return payload
        raise _rebuild(payload)

    def _call(self, op: str, *, timeout_s: float | None = None) -> Any:
        if self._in_flight:
            raise RuntimeError(f"{op} while a write is in flight: call result() on it first")
        self._send(op)
        return self._receive(timeout_s)

    def _live_conn(self) -> Any:
        if self._conn is None:
            raise SinkInfraError("the DuckDB writer process is not running (open() it first)")
        return self._conn

    def _died(self, error: BaseException) -> SinkInfraError:
        proc = self._proc
        code = None
        if proc is not None:
            proc.join(5.0)
            code = proc.exitcode
        return SinkInfraError(
            f"the DuckDB writer process died (exit code {code}, {type(error).__name__}); the batch in flight "
            "is committed only if its offsets are stored, and a restart resumes from them"
        )


class PendingProcessWrite:
    """A write sent to the writer process; ``result`` waits for its commit (once; later calls repeat it)."""

    def __init__(self, writer: ProcessWriter) -> None:
        self._writer = writer
        self._result: WriteResult | None = None

    def result(self) -> WriteResult:
        if self._result is None:
            writer = self._writer
            try:
                result: WriteResult = writer._receive()
            finally:
                writer._in_flight = False
            if writer._meter is not None:
                writer._meter.wrote(result)
            self._result = result
        return self._result


def _rebuild(payload: tuple[bool, BaseException | None, str, str]) -> BaseException:
    """The exception to raise here for an ``error`` answer ``(infra, exception, description, traceback)``."""
    infra, error, description, text = payload
    if infra:
        error = SinkInfraError(description)
    elif error is None:
        error = WriterProcessError(description)
    error.__cause__ = RemoteTraceback(f"\n--- in the DuckDB writer process ---\n{text}")
    return error
