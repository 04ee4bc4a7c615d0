"""Child ``omnistream`` processes of the demo: started in their own session with a log file, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def start_child(command: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Run ``python -m pipeline <command> --log-level WARNING`` with its output in ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", command, "--log-level", "WARNING"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_child(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> int:
    """SIGTERM (a clean stop: finish the batch, commit), SIGKILL the group after ``timeout_s``; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()
    return int(proc.returncode)
