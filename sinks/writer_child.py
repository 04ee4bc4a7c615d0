"""The writer process's side of :mod:`sinks.process_writer`: serve requests on the pipe with one ``DuckDBSink``.

Guarantees: the process dies with its parent (``PR_SET_PDEATHSIG`` = SIGKILL on Linux, set first thing, then
a check that the parent did not die before that), exits when the pipe reports EOF, and ignores SIGINT/SIGTERM
(a Ctrl-C or a process-group SIGTERM reaches the consumer, which finishes its batch and then closes this
process; a signal here would abort that batch). Every request gets exactly one final answer, ``ok`` or
``error``; an error answer carries whether it is a :class:`~sinks.contract.SinkInfraError`, the exception itself
when it survives pickling, its description and the traceback text.

Not guaranteed: anything after the parent is gone; a request in progress then is cut short by SIGKILL, and
DuckDB's transaction makes that a rollback.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import signal
import sys
import traceback
from typing import Any

from pipeline.privacy.tokens import Tokens
from sinks.contract import SinkInfraError
from sinks.duckdb_sink import DuckDBSink
from sinks.process_writer import WriterConfig
from sinks.wire import decode

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def serve(conn: Any, config: WriterConfig, parent_pid: int) -> None:
    """Entry point of the writer process: answer requests until ``close`` or EOF."""
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s [duckdb-writer]: %(message)s"
    )
    sink = DuckDBSink(
        config.db_path,
        config.snapshot_path,
        list(config.tables),
        retry_for_s=config.retry_for_s,
        snapshot_method=config.snapshot_method,
        durable_snapshots=config.durable_snapshots,
        on_retry=lambda operation: conn.send(("retry", operation)),
        tokens=None if config.erasure_secret is None else Tokens(config.erasure_secret),
    )
    by_name = {t.name: t for t in config.tables}
    try:
        while True:
            head, buffers = b"", []
            try:
                op, arg = conn.recv()
                if op == "write":
                    head = conn.recv_bytes()
                    buffers = [conn.recv_bytes() for _ in range(arg)]
            except EOFError:
                log.info("the consumer process closed the pipe; exiting")
                return
            try:
                if op == "open":
                    value: Any = sink.open()
                elif op == "write":
                    value = sink.write(decode(head, buffers, by_name))
                elif op == "publish":
                    value = sink.publish()
                elif op == "close":
                    sink.close()
                    conn.send(("ok", None))
                    return
                else:
                    raise ValueError(f"unknown request {op!r}")
            except Exception as error:
                conn.send(("error", describe(error)))
            else:
                conn.send(("ok", value))
    except (BrokenPipeError, ConnectionResetError):
        log.info("the consumer process is gone; exiting")
    finally:
        sink.close()


def describe(error: Exception) -> tuple[bool, BaseException | None, str, str]:
    """``(infra, the exception if it pickles both ways, "Type: message", traceback text)``."""
    sendable: BaseException | None = error
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        sendable = None
    text = "".join(traceback.format_exception(error))
    infra = isinstance(error, SinkInfraError)
    return infra, sendable, str(error) if infra else f"{type(error).__name__}: {error}", text


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux); exit now if it already did."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(errno)}")
    if os.getppid() != parent_pid:  # the parent died before prctl: nobody would kill us later
        os._exit(0)
