"""The broker goes away while the worker runs: the worker reports and retries, and loses nothing."""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.kafka_local import start_broker, stop_broker
from pipeline.settings import load_settings
from tests.integration.pipeline_env import PipelineEnv, expected_failed, free_port
from tests.integration.processes import wait_until


def test_worker_survives_a_broker_outage_without_loss(tmp_path: Path) -> None:
    # A broker of its own: stopping the shared one would break every other test.
    settings = load_settings(
        broker_port=free_port(), controller_port=free_port(), state_dir=tmp_path / "broker", partitions=4
    )
    bootstrap = start_broker(settings).bootstrap
    try:
        env = PipelineEnv.create(bootstrap, tmp_path)
        truth = env.simulate("--customers", "3000", "--days", "14", "--seed", "5", "--bad-share", "0.02")
        want = int(truth["expected"]["unique_valid_events"]) + expected_failed(truth)
        worker = env.start_worker()
        wait_until(lambda: env.output_count() > 0, 120, what="first outputs")
        stop_broker(settings)
        assert worker.alive(), worker.log_tail()
        time.sleep(10)
        assert worker.alive(), "the worker must ride out a short outage:\n" + worker.log_tail()
        start_broker(settings)
        env.wait_for_outputs(want, timeout_s=300, worker=worker)
        time.sleep(3)  # let a replayed batch (if any) land before counting
        assert worker.terminate() == 0, worker.log_tail()

        summary = env.summary()
        assert len(summary.canonical_event_ids) == truth["expected"]["unique_valid_events"], "events lost"
        assert summary.failed_total >= expected_failed(truth)
        log = worker.log_path.read_text(errors="replace")
        assert any(s in log for s in ("retry", "Unable to connect", "Connection", "KafkaConnectionError")), (
            "the outage must be visible in the worker log"
        )
        print(
            f"outage run: {want} expected outputs, {summary.canonical_total} canonical "
            f"({summary.duplicate_event_ids} replayed duplicates), {summary.failed_total} failed"
        )
    finally:
        stop_broker(settings, purge=True)
