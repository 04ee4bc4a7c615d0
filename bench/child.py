"""Run one measurement in its own Python process and collect what it reports.

The parent writes a JSON spec, starts ``python -m bench.<module> SPEC RESULT``, watches the child's and the
broker's CPU and memory, and reads the child's JSON result. Separate processes keep Faust apps, event loops,
imported state and garbage from one measurement out of the next. A child that does not finish within the
timeout is killed (its whole process group) and the measurement reported as failed with its log tail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.context import REPO_ROOT, BenchContext, read_json, write_json
from bench.monitor import ProcessSampler, Usage


@dataclass(frozen=True)
class ChildRun:
    """The child's result (None when it failed), resource usage over its life, and its log."""

    result: dict[str, Any] | None
    usage: Usage
    broker: Usage
    wall_s: float
    exit_code: int | None
    log_path: Path

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def run_child(
    ctx: BenchContext, name: str, module: str, spec: dict[str, Any], timeout_s: float, python: str | None = None
) -> ChildRun:
    """Run ``python -m <module> spec.json result.json`` and wait for it (see the module docstring).

    ``python`` is another interpreter to run it with (the peers' virtualenv); default: the bench's own.
    """
    runs = ctx.dir(f"runs-{ctx.run_id}")
    spec_path = runs / f"{name}.spec.json"
    result_path = runs / f"{name}.result.json"
    result_path.unlink(missing_ok=True)
    write_json(spec_path, spec)
    log_path = ctx.logs / f"{name}.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [python or ctx.python, "-m", module, str(spec_path), str(result_path)],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        sampler = ProcessSampler([proc.pid]).start()
        broker = ProcessSampler([ctx.broker_pid] if ctx.broker_pid else []).start()
        deadline = started + timeout_s
        code: int | None = None
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                break
            sampler.sample()
            time.sleep(0.2)
        usage, broker_usage = sampler.finish(), broker.finish()
        if code is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wall = time.monotonic() - started
    result = read_json(result_path) if result_path.is_file() else None
    return ChildRun(result, usage, broker_usage, wall, code, log_path)
