"""Running omnistream processes (workers) as real OS processes for integration and chaos tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

#: Every child process started in this session, so that the module clean-up can stop those a failed test left.
STARTED: list[Proc] = []


class Proc:
    """One ``python -m pipeline ...`` child process with its own environment and log file."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self._log = log_path.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        STARTED.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit code (raises if it does not exit in time)."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout_s)
        finally:
            self._log.close()

    def kill(self) -> int:
        """SIGKILL the whole process group (no chance to commit or flush)."""
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGKILL)
        code = self.popen.wait(timeout=30)
        self._log.close()
        return code


def wait_until(predicate: object, timeout_s: float, interval_s: float = 0.5, what: str = "condition") -> None:
    """Poll ``predicate()`` until true; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
