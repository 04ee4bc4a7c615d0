"""Log hygiene for long outages: the Kafka client repeats the same error thousands of times a second while a
broker is down, which buries the one line an operator needs. Identical messages are let through once per
interval, and the next one says how many were held back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RepeatFilter(logging.Filter):
    """Passes a given (logger, message template) at most once per ``interval_s``; counts the rest."""

    def __init__(self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._interval = interval_s
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} (repeated {held} more times in the last {self._interval:.0f}s)"
        return True


def quiet_repeats(prefixes: tuple[str, ...] = ("aiokafka", "kafka"), interval_s: float = 10.0) -> RepeatFilter:
    """Attach one ``RepeatFilter`` to every existing logger under ``prefixes`` (call after the imports)."""
    shared = RepeatFilter(interval_s)
    for name in list(logging.Logger.manager.loggerDict):
        if name.split(".", 1)[0] in prefixes:
            logging.getLogger(name).addFilter(shared)
    for prefix in prefixes:
        logging.getLogger(prefix).addFilter(shared)
    return shared
