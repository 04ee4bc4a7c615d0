"""Advisory file locks, so two processes never fetch, format, start or stop the same broker at once."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# flock() locks belong to an open file description, so a second open() of the same file in this
# process would deadlock against our own lock. We keep one descriptor per path and count nesting;
# the RLock makes other threads wait while the owning thread may re-enter.
_guard = threading.Lock()
_held: dict[str, tuple[threading.RLock, list[int]]] = {}


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing) for the duration of the block.

    Re-entrant within a thread. The kernel drops the lock when the process dies, so a crashed holder
    never wedges later callers.
    """
    key = str(path.resolve())
    with _guard:
        rlock, state = _held.setdefault(key, (threading.RLock(), [0, -1]))
    with rlock:
        depth, _ = state
        if depth == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            state[1] = fd
        state[0] = depth + 1
        try:
            yield
        finally:
            state[0] -= 1
            if state[0] == 0:
                # Closing the descriptor releases the lock.
                os.close(state[1])
                state[1] = -1
