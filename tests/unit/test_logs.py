"""One log format for every process: text or one JSON object per line; Kafka client chatter at WARNING."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from pipeline.logs import logging_config


@pytest.fixture
def restore_logging() -> object:
    root, kafka = logging.getLogger(), logging.getLogger("kafka.conn")
    saved = (root.handlers[:], root.level, logging.getLogger("kafka").level)
    yield kafka
    root.handlers[:], root.level = saved[0], saved[1]
    logging.getLogger("kafka").setLevel(saved[2])


def _configure(fmt: str, level: str, stream: io.StringIO) -> None:
    config = logging_config(fmt, level)
    config["handlers"]["stderr"]["stream"] = stream
    logging.config.dictConfig(config)


def test_json_lines_carry_level_logger_message_and_exception(restore_logging: object) -> None:
    out = io.StringIO()
    _configure("json", "INFO", out)
    log = logging.getLogger("omnistream.test")
    log.info("sink assigned %d partitions", 24)
    try:
        raise ValueError("bad batch")
    except ValueError:
        log.exception("batch failed")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert (first["level"], first["logger"], first["message"]) == (
        "INFO",
        "omnistream.test",
        "sink assigned 24 partitions",
    )
    assert first["time"].endswith("+00:00") and isinstance(first["process"], int)
    assert second["level"] == "ERROR" and "ValueError: bad batch" in second["exception"]


def test_text_has_no_colour_codes_and_kafka_chatter_waits_for_warning(restore_logging: object) -> None:
    out = io.StringIO()
    _configure("text", "INFO", out)
    logging.getLogger("kafka.conn").info("Connected")
    logging.getLogger("kafka.conn").warning("Connection lost")
    logging.getLogger("omnistream.test").info("ready")
    text = out.getvalue()
    assert "Connected" not in text and "WARNING kafka.conn: Connection lost" in text
    assert "INFO omnistream.test: ready" in text and "\x1b[" not in text


def test_debug_shows_the_chatter_too(restore_logging: object) -> None:
    out = io.StringIO()
    _configure("text", "DEBUG", out)
    logging.getLogger("kafka.conn").info("Connected")
    assert "Connected" in out.getvalue()
