"""SIGTERM: the worker finishes its batch, flushes, commits and exits 0 within the bound.

Periodic commits are pushed out of reach (OMNISTREAM_COMMIT_INTERVAL_S=3600), so the group's committed
offsets can only reach the end offsets through the commit the worker makes while stopping.
"""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.drain import CONSUMED, OUTPUTS, group_lag
from pipeline.topic_reader import topic_end_total
from tests.integration.pipeline_env import PipelineEnv, expected_failed
from tests.integration.processes import wait_until

SHUTDOWN_BOUND_S = 30
IDLE_S = 2
STABLE_S = 3 * IDLE_S + 2  # events wait for the watermark, which passes the last of them once every source is idle


def test_sigterm_commits_everything_processed_and_exits_zero(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = PipelineEnv.create(kafka_bootstrap, tmp_path)
    truth = env.simulate("--customers", "120", "--days", "4", "--seed", "31", "--bad-share", "0.05")
    s = env.settings()
    worker = env.start_worker(
        OMNISTREAM_COMMIT_INTERVAL_S="3600",
        OMNISTREAM_SHUTDOWN_TIMEOUT_S=str(SHUTDOWN_BOUND_S),
        OMNISTREAM_SOURCE_IDLE_S=str(IDLE_S),
    )
    consumed = [s.topic(t) for t in CONSUMED]
    outputs = [s.topic(t) for t in OUTPUTS]
    try:
        env.wait_for_outputs(int(truth["expected"]["unique_valid_events"]) + expected_failed(truth), 180, worker)
        last: list[int] = []

        def outputs_stable() -> bool:
            nonlocal last
            now = [topic_end_total(env.bootstrap, t) for t in outputs]
            stable, last = now == last, now
            return stable

        wait_until(outputs_stable, 120, interval_s=STABLE_S, what=f"every stage done (outputs stable for {STABLE_S} s)")
        before = group_lag(env.bootstrap, s.app_id, consumed)
        assert before > 0, "nothing may be committed yet: the periodic commit is an hour away"
    finally:
        started = time.monotonic()
        code = worker.terminate(timeout_s=SHUTDOWN_BOUND_S + 15)
        took = time.monotonic() - started
    after = group_lag(env.bootstrap, s.app_id, consumed)
    print(f"SIGTERM: exit {code} after {took:.1f}s; group lag before {before}, after {after}")
    # Exit 0 also means within the bound: past OMNISTREAM_SHUTDOWN_TIMEOUT_S the worker exits 70.
    assert code == 0, worker.log_tail()
    assert after == 0
    assert "Traceback" not in worker.log_path.read_text(errors="replace")
