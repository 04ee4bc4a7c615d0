"""/healthz and /ready of a real worker and a real sink follow the process state: not ready while starting
(no partitions, tables not recovered), ready once assigned; /healthz alive throughout."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.integration.pipeline_env import PipelineEnv, free_port
from tests.integration.processes import Proc


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read().decode().strip()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode().strip()
    except OSError:
        return 0, "not listening"


def _watch_ready(proc: Proc, port: int, timeout_s: float) -> list[tuple[int, str]]:
    """The distinct /ready answers from start until the first 200."""
    seen: list[tuple[int, str]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.alive(), proc.log_tail()
        answer = _get(port, "/ready")
        if answer[0] and (not seen or seen[-1] != answer):
            seen.append(answer)
        if answer[0] == 200:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"not ready in {timeout_s:.0f}s: {seen}\n{proc.log_tail()}")


def test_worker_and_sink_are_ready_only_once_assigned(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = PipelineEnv.create(kafka_bootstrap, tmp_path)
    port = free_port()
    worker = env.start_worker(OMNISTREAM_METRICS_PORT=str(port))
    try:
        seen = _watch_ready(worker, port, 120)
        assert seen[0][0] == 503 and seen[-1] == (200, "ok"), seen
        assert any(
            why in text
            for code, text in seen
            if code == 503
            for why in ("starting", "waiting for partitions", "recovering", "rebalancing", "replica")
        )
        assert _get(port, "/healthz") == (200, "ok")
        assert "omnistream_" in _get(port, "/metrics")[1]

        sink_port = free_port()
        args = ["sink", "--db", str(tmp_path / "w.duckdb"), "--metrics-port", str(sink_port), "--log-level", "INFO"]
        sink = Proc(args, env.env(), tmp_path / "sink.log")
        try:
            seen = _watch_ready(sink, sink_port, 60)
            assert seen[0][0] == 503 and seen[-1] == (200, "ok"), seen
            assert _get(sink_port, "/healthz") == (200, "ok")
            assert _get(sink_port, "/nothing-here")[0] == 404
            print(f"sink /ready before 200: {seen[:-1]}")
        finally:
            assert sink.terminate() == 0, sink.log_tail()
    finally:
        assert worker.terminate() == 0, worker.log_tail()
