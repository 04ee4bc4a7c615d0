"""Journey stages, the in-store offer and customer profiles through the real broker; backfill onto the store topic."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.models import bgnbd
from pipeline.models.fit import fit_model
from pipeline.models.params import save
from pipeline.models.transactions import Transaction, read_transactions, summarise
from pipeline.simulate import records as rec
from pipeline.simulate.messages import VALID, SimMessage
from pipeline.simulate.producer import KafkaSink, ProduceReport, produce
from pipeline.topic_reader import iter_topic
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from tests.integration.pipeline_env import PipelineEnv, _os_env
from tests.integration.processes import wait_until

HOUR_MS = 3_600_000
DATA = Path(__file__).parent.parent / "data"


def _msg(channel: str, subject: str, record: dict[str, Any], version: int = 1) -> SimMessage:
    env = record["envelope"]
    return SimMessage(
        channel,
        b"C-IT-1",
        VALID,
        "valid",
        env["event_time"],
        env["event_id"],
        "p1",
        subject=subject,
        version=version,
        record=record,
    )


def _send(env: PipelineEnv, codec: AvroCodec, msgs: list[SimMessage]) -> None:
    sink = KafkaSink(env.bootstrap)
    report: ProduceReport = produce(msgs, sink, codec, env.settings().input_topics, show_progress=False)
    sink.close(report)
    assert report.ok, report.errors


def _records(env: PipelineEnv, codec: AvroCodec, topic: str) -> list[dict[str, Any]]:
    return [codec.decode(m.value).record for m in iter_topic(env.bootstrap, env.settings().topic(topic))]


def test_scripted_journey_yields_stages_and_the_in_store_offer(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = PipelineEnv.create(kafka_bootstrap, tmp_path)
    codec = AvroCodec(FileSchemaRegistry())
    txs = [t for t in read_transactions(DATA / "cdnow_sample.txt") if isinstance(t, Transaction)]
    end = date(1997, 9, 30)
    params_path = tmp_path / "btyd.json"
    save(fit_model(summarise(txs, end, 7.0), end, 7.0, bgnbd.MBGNBD, version="cdnow-it"), params_path)
    # Partitions without traffic count as idle after 2 s, so the watermark follows the few scripted events.
    worker = env.start_worker(
        OMNISTREAM_MODEL_PARAMS_PATH=str(params_path), OMNISTREAM_SOURCE_IDLE_S="2", OMNISTREAM_HOLDOUT_SHARE="0"
    )
    now = int(time.time() * 1000)
    ids = rec.identifiers(customer_id="C-IT-1")
    consent = {"marketing": True, "analytics": True, "personalization": True}
    night = now - 11 * HOUR_MS
    view = rec.web(2, rec.envelope(str(uuid.uuid4()), night, ids, consent), "product_view", product_id="P-42")
    cart = rec.web(
        2,
        rec.envelope(str(uuid.uuid4()), night + 60_000, ids, consent),
        "add_to_cart",
        product_id="P-42",
        quantity=1,
        unit_price_minor=4999,
        currency="EUR",
    )
    app = rec.mobile(
        rec.envelope(str(uuid.uuid4()), now - 2 * HOUR_MS, ids, consent), "app_open", os="ios", app_version="5.2.0"
    )
    visit = rec.store(
        rec.envelope(str(uuid.uuid4()), now - 60_000, ids), "store_visit", "S-001", visit_method="loyalty_scan"
    )
    try:
        _send(env, codec, [_msg("web", "web", view, 2), _msg("web", "web", cart, 2), _msg("mobile", "mobile", app)])
        wait_until(lambda: len(_records(env, codec, "signals")) >= 1, 120, what="cart_abandoned signal")
        sent = time.monotonic()
        _send(env, codec, [_msg("store", "store", visit)])

        def offered() -> bool:
            return any(s["signal_type"] == "store_visit_open_cart" for s in _records(env, codec, "signals"))

        wait_until(offered, 60, what="in-store offer")
        print(f"offer seen {time.monotonic() - sent:.2f} s after the visit was acknowledged by Kafka")
        items = rec.line_items([("P-42", 1, 4999)])
        buy = rec.store(
            rec.envelope(str(uuid.uuid4()), now, ids),
            "pos_purchase",
            "S-001",
            receipt_id="R-1",
            items=items,
            amount_minor=4999,
            currency="EUR",
        )
        _send(env, codec, [_msg("store", "store", buy)])
        wait_until(lambda: len(_records(env, codec, "journey-stages")) >= 3, 60, what="first_purchase transition")
    finally:
        assert worker.terminate() == 0, worker.log_tail()
    moves = sorted(_records(env, codec, "journey-stages"), key=lambda m: m["seq"])
    assert [(m["from_stage"], m["to_stage"]) for m in moves] == [
        (None, "visitor"),
        ("visitor", "considering"),
        ("considering", "first_purchase"),
    ]
    assert [m["evidence_event_ids"] for m in moves] == [
        [view["envelope"]["event_id"]],
        [cart["envelope"]["event_id"]],
        [buy["envelope"]["event_id"]],
    ]
    assert all(m["reason"] and m["machine_version"] == "stages/1" for m in moves)
    assert len({m["customer_id"] for m in moves}) == 1
    signals = _records(env, codec, "signals")
    assert [s["signal_type"] for s in signals] == ["cart_abandoned", "store_visit_open_cart"]
    offer = signals[1]
    assert offer["evidence_event_ids"] == [visit["envelope"]["event_id"], cart["envelope"]["event_id"]]
    assert offer["product_ids"] == ["P-42"] and offer["store_id"] == "S-001" and offer["holdout"] is False
    assert offer["event_time"] == visit["envelope"]["event_time"] and "in-store offer" in offer["reason"]
    assert offer["customer_id"] == moves[0]["customer_id"]
    profiles = _records(env, codec, "customer-profiles")
    last = max(profiles, key=lambda p: p["version"])
    assert last["stage"] == "first_purchase" and last["purchase_days"] == 1 and last["revenue_minor"] == 4999
    assert last["model_version"] == "cdnow-it" and last["p_alive"] is not None and last["marketing_consent"]


def test_backfill_sends_store_purchases(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = PipelineEnv.create(kafka_bootstrap, tmp_path, partitions=1)
    today = datetime.now(UTC).date()
    lines = [f"c{i % 3},{(today - timedelta(days=i)).isoformat()},{10 + i}.50,{1 + i % 2}" for i in range(7)]
    src = tmp_path / "history.csv"
    src.write_text("customer,date,amount,items\n" + "\n".join(lines) + "\nbroken,line\n")
    cmd = [sys.executable, "-m", "pipeline", "backfill", str(src), "--no-progress", "--currency", "EUR"]
    done = subprocess.run(cmd, env={**_os_env(), **env.env()}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 unreadable lines" in done.stderr
    codec = AvroCodec(FileSchemaRegistry())
    got = _records(env, codec, "store")
    assert len(got) == 7
    assert all(r["event_type"] == "pos_purchase" and r["currency"] == "EUR" for r in got)
    assert sorted(r["amount_minor"] for r in got) == sorted(1050 + 100 * i for i in range(7))
    # Deterministic ids: a second run of the same file produces the same events (absorbed downstream).
    subprocess.run(cmd, env={**_os_env(), **env.env()}, capture_output=True, text=True, timeout=120, check=True)
    again = _records(env, codec, "store")
    assert {r["envelope"]["event_id"] for r in again} == {r["envelope"]["event_id"] for r in got}
