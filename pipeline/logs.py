"""Log hygiene for long outages: the Kafka client repeats the same error thousands of times a second while a
broker is down, which buries the one line an operator needs. Identical messages are let through once per
interval, and the next one says how many were held back."""

from __future__ import annotations

import json
import logging
import logging.config
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any


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


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Third-party loggers whose INFO is connection chatter (every reconnect, every metadata refresh).
CHATTY = ("kafka", "aiokafka")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, process, message, exception."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for every omnistream process: one format (``text`` or ``json``) on
    stderr, no colour codes, third-party chatter at WARNING unless the level asks for more."""
    asked = logging.getLevelName(level.upper())
    asked = asked if isinstance(asked, int) else logging.INFO
    chatty = asked if asked < logging.INFO else max(asked, logging.WARNING)  # DEBUG shows everything
    formatter: dict[str, Any] = {"()": JsonFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"omnistream": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "omnistream"}
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {name: {"level": logging.getLevelName(chatty)} for name in CHATTY},
    }


def setup_logging(log_format: str, level: str) -> None:
    """Configure logging for a process that is not a Faust worker (the worker passes the same config to Faust)."""
    logging.config.dictConfig(logging_config(log_format, level))
