"""The broker goes away for 100 s while a worker and the sink run: both report and retry within their retry
budget (OMNISTREAM_RETRY_BUDGET_S, 5 min by default), and nothing is lost."""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.kafka_local import start_broker, stop_broker
from pipeline.settings import load_settings
from tests.integration.chaos_run import duplicated_keys
from tests.integration.pipeline_env import PipelineEnv, expected_failed, free_port
from tests.integration.processes import wait_until
from tests.integration.test_sink_crash import start_sink, stored_offsets, total_end

OUTAGE_S = 100.0


def test_worker_and_sink_ride_out_a_100_s_broker_outage_without_loss(tmp_path: Path) -> None:
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
        db = tmp_path / "warehouse.duckdb"
        sink = start_sink(env, "sink", db, "--snapshot-every", "0.5")
        wait_until(lambda: "sink assigned" in sink.log_tail(), 60, 0.1, "the sink to start")
        stop_broker(settings)
        down = time.monotonic()

        def both_alive() -> bool:
            assert worker.alive(), "the worker must ride out the outage:\n" + worker.log_tail()
            assert sink.alive(), "the sink must ride out the outage:\n" + sink.log_tail()
            return time.monotonic() - down >= OUTAGE_S

        wait_until(both_alive, OUTAGE_S + 30, 1.0, f"{OUTAGE_S:.0f} s of outage")
        start_broker(settings)
        env.wait_for_outputs(want, timeout_s=300, worker=worker)

        def sink_caught_up() -> bool:
            assert sink.alive(), sink.log_tail()
            return stored_offsets(db.with_suffix(".snap")) >= total_end(env)

        wait_until(sink_caught_up, 180, what="the sink to store every output")
        assert sink.terminate() == 0, sink.log_tail()
        assert duplicated_keys(db) == 0, "a warehouse row stored twice"
        assert worker.terminate() == 0, worker.log_tail()  # a clean stop flushes what it published

        summary = env.summary()
        assert len(summary.canonical_event_ids) == truth["expected"]["unique_valid_events"], "events lost"
        assert summary.failed_total >= expected_failed(truth)
        for proc in (worker, sink):
            log = proc.log_path.read_text(errors="replace")
            assert any(s in log for s in ("retry", "Unable to connect", "Connection", "KafkaConnectionError")), (
                f"the outage must be visible in the log of {proc.log_path.name}"
            )
        print(
            f"outage run: {want} expected outputs, {summary.canonical_total} canonical "
            f"({summary.duplicate_event_ids} replayed duplicates), {summary.failed_total} failed"
        )
    finally:
        stop_broker(settings, purge=True)
