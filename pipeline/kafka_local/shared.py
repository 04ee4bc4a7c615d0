"""A broker shared by concurrent test sessions: the last session to leave stops it.

Several pytest sessions (several engineers, or CI jobs on one host) may run against the same port at
once. Each session registers a lease file named after its pid; a session tearing down stops the broker
only when no other live session holds a lease, so nobody pulls the broker from under a running suite.
Use a state dir reserved for tests: whatever broker runs from it is considered test-owned.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pipeline.kafka_local.broker import StartResult, start_broker, stop_broker
from pipeline.kafka_local.config import BrokerLayout
from pipeline.kafka_local.locking import file_lock
from pipeline.kafka_local.process import process_argv
from pipeline.settings import Settings

Report = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def _lease_dir(layout: BrokerLayout) -> Path:
    return layout.root / "sessions"


def live_leases(layout: BrokerLayout) -> list[int]:
    """Pids of sessions holding a lease whose process still lives; dead sessions' leases are removed."""
    directory = _lease_dir(layout)
    if not directory.is_dir():
        return []
    alive = []
    for lease in directory.iterdir():
        pid = int(lease.name) if lease.name.isdigit() else None
        if pid is not None and process_argv(pid) is not None:
            alive.append(pid)
        else:
            lease.unlink(missing_ok=True)
    return sorted(alive)


def join_shared_broker(
    settings: Settings, *, java: str = "java", mvn: str = "mvn", report: Report = _quiet
) -> StartResult:
    """Register this process's lease, then make sure the broker runs (see :func:`start_broker`).

    On failure the lease is withdrawn again and LocalKafkaError propagates.
    """
    layout = BrokerLayout.from_settings(settings)
    lease = _lease_dir(layout) / str(os.getpid())
    with file_lock(layout.lock_file):
        lease.parent.mkdir(parents=True, exist_ok=True)
        lease.write_text("pytest session\n")
    try:
        return start_broker(settings, java=java, mvn=mvn, report=report)
    except BaseException:
        leave_shared_broker(settings)
        raise


def leave_shared_broker(settings: Settings, *, purge: bool = True) -> bool:
    """Withdraw this process's lease; stop (and by default purge) the broker if no live lease remains.

    Returns True when this call stopped a broker. The lease check and the stop happen under one lock, so a
    session joining at the same moment either keeps the broker alive or starts a fresh one afterwards.
    """
    layout = BrokerLayout.from_settings(settings)
    if not layout.root.exists():
        return False
    with file_lock(layout.lock_file):
        (_lease_dir(layout) / str(os.getpid())).unlink(missing_ok=True)
        if live_leases(layout):
            return False
        return stop_broker(settings, purge=purge) is not None
