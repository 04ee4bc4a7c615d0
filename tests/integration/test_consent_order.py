"""A consent withdrawal that precedes a store visit in event time suppresses the in-store offer, whichever topic
the workers read first (docs/time.md): triggers see events in event-time order, not in arrival order."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline.drain import wait_drained
from pipeline.simulate import records as rec
from pipeline.simulate.messages import VALID, SimMessage
from pipeline.topic_reader import iter_topic
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from tests.integration.event_time_runs import IDLE_S, send
from tests.integration.pipeline_env import PipelineEnv

HOUR_MS = 3_600_000
NOW = int(time.time() * 1000)
T0 = NOW - NOW % HOUR_MS - 10 * HOUR_MS
CONSENT = {"marketing": True, "analytics": True, "personalization": True}
WITHDRAWN = {"marketing": False, "analytics": True, "personalization": True}


def _msg(channel: str, record: dict[str, Any], version: int = 1) -> SimMessage:
    env = record["envelope"]
    return SimMessage(channel, b"C-CONSENT", VALID, "valid", env["event_time"], env["event_id"], "p1",
                      subject=channel, version=version, record=record)  # fmt: skip


def journey(withdraw: bool) -> tuple[list[SimMessage], list[SimMessage]]:
    """(web messages, store messages): a cart, maybe a consent withdrawal 30 min later, a visit 3 h after that."""
    ids = rec.identifiers(customer_id="C-CONSENT")
    env = rec.envelope(str(uuid.uuid4()), T0, ids, CONSENT)
    web = [
        _msg(
            "web",
            rec.web(2, rec.envelope(str(uuid.uuid4()), T0 - 60_000, ids, CONSENT), "product_view", product_id="P-7"),
            2,
        ),
        _msg(
            "web",
            rec.web(2, env, "add_to_cart", product_id="P-7", quantity=1, unit_price_minor=2999, currency="EUR"),
            2,
        ),
    ]
    if withdraw:  # the privacy settings page: marketing consent withdrawn
        settings_env = rec.envelope(str(uuid.uuid4()), T0 + HOUR_MS // 2, ids, WITHDRAWN)
        web.append(_msg("web", rec.web(2, settings_env, "page_view"), 2))
    visit_env = rec.envelope(str(uuid.uuid4()), T0 + 3 * HOUR_MS + HOUR_MS // 2, ids)
    store = [_msg("store", rec.store(visit_env, "store_visit", "S-001", visit_method="loyalty_scan"))]
    return web, store


def run(bootstrap: str, workdir: Path, withdraw: bool, store_first: bool) -> list[str]:
    env = PipelineEnv.create(bootstrap, workdir)
    web, store = journey(withdraw)
    for batch in (store, web) if store_first else (web, store):
        send(env, batch)
    worker = env.start_worker(OMNISTREAM_SOURCE_IDLE_S=str(IDLE_S), OMNISTREAM_HOLDOUT_SHARE="0")
    try:
        wait_drained(env.settings(), quiet_s=3 * IDLE_S + 2, timeout_s=180, alive=worker.alive)
    finally:
        assert worker.terminate() == 0, worker.log_tail()
    codec = AvroCodec(FileSchemaRegistry())
    signals = [codec.decode(m.value).record for m in iter_topic(bootstrap, env.settings().topic("signals"))]
    return sorted(s["signal_type"] for s in signals)


@pytest.mark.parametrize("store_first", [True, False], ids=["store-topic-first", "web-topic-first"])
def test_a_consent_withdrawal_before_the_visit_suppresses_the_offer(
    kafka_bootstrap: str, tmp_path: Path, store_first: bool
) -> None:
    assert run(kafka_bootstrap, tmp_path, withdraw=True, store_first=store_first) == []


def test_without_the_withdrawal_the_same_journey_gets_both_signals(kafka_bootstrap: str, tmp_path: Path) -> None:
    assert run(kafka_bootstrap, tmp_path, withdraw=False, store_first=True) == [
        "cart_abandoned",
        "store_visit_open_cart",
    ]
