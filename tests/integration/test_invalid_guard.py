"""A broken upstream (most input invalid) stops the worker with a clear error instead of filling failed-events."""

from __future__ import annotations

from pathlib import Path

from tests.integration.pipeline_env import PipelineEnv
from tests.integration.processes import wait_until


def test_worker_stops_when_invalid_share_passes_the_limit(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = PipelineEnv.create(kafka_bootstrap, tmp_path)
    env.simulate("--customers", "200", "--days", "5", "--seed", "3", "--bad-share", "0.45")
    worker = env.start_worker(
        OMNISTREAM_INVALID_RATIO_LIMIT="0.2", OMNISTREAM_INVALID_WINDOW="100", OMNISTREAM_INVALID_MIN_EVENTS="50"
    )
    wait_until(lambda: not worker.alive(), 120, what="the guard to stop the worker")
    assert worker.popen.returncode == 65
    log = worker.log_path.read_text(errors="replace")
    assert "FATAL" in log and "invalid" in log.lower()
    # The tripping batch was not acknowledged, so a restarted worker meets the same inputs and stops again
    # instead of silently moving past a broken upstream.
    again = env.start_worker(
        "worker-again",
        OMNISTREAM_INVALID_RATIO_LIMIT="0.2",
        OMNISTREAM_INVALID_WINDOW="100",
        OMNISTREAM_INVALID_MIN_EVENTS="50",
    )
    wait_until(lambda: not again.alive(), 120, what="the guard to stop the restarted worker")
    assert again.popen.returncode == 65
