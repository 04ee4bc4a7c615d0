"""RepeatFilter: an outage's error storm becomes one line per interval with a count."""

from __future__ import annotations

import logging

from pipeline.logs import RepeatFilter


def _record(msg: str, level: int = logging.ERROR, name: str = "aiokafka.cluster") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def test_repeats_are_held_back_and_counted() -> None:
    now = [0.0]
    f = RepeatFilter(interval_s=10, clock=lambda: now[0])
    assert f.filter(_record("Unable to update metadata from %s"))
    assert not any(f.filter(_record("Unable to update metadata from %s")) for _ in range(500))
    now[0] = 10.5
    again = _record("Unable to update metadata from %s")
    assert f.filter(again)
    assert "repeated 500 more times" in str(again.msg)


def test_distinct_messages_and_info_pass() -> None:
    f = RepeatFilter(interval_s=10, clock=lambda: 0.0)
    assert f.filter(_record("a"))
    assert f.filter(_record("b"))
    assert f.filter(_record("a", name="aiokafka.conn"))
    assert all(f.filter(_record("a", level=logging.INFO)) for _ in range(3))
