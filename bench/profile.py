"""Where the time goes: py-spy sampling of a running worker, summarised into the report's top entries.

``SpySession`` attaches ``py-spy record --nonblocking`` (the target is never paused, so the profiled run is
also the measured run; 100 samples/s of the thread holding work, idle threads excluded) and writes raw
collapsed stacks aggregated per function. ``summarise`` turns them into shares per component (Faust, mode,
aiokafka, asyncio, fastavro, prometheus, omnistream code) by leaf frame ("self"), the top leaf functions, and
omnistream functions by inclusive time. Compiled code (fastavro's Cython reader and writer, hashing) has no
Python frame of its own: its time shows up as self time of the Python function that called it.
When py-spy cannot attach (no ptrace permission), the report says so and has no profile.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.context import REPO_ROOT

_COMPONENTS = (
    ("/faust/", "faust"),
    ("/mode/", "mode (Faust services)"),
    ("/aiokafka/", "aiokafka"),
    ("/kafka/", "kafka-python"),
    ("/fastavro/", "fastavro (Python parts)"),
    ("/prometheus_client/", "prometheus_client"),
    ("/asyncio/", "asyncio event loop"),
    ("/selectors.py", "asyncio event loop"),
    (f"{REPO_ROOT}/schemas/", "omnistream schemas (codec: fastavro C time lands here)"),
    (f"{REPO_ROOT}/agents/", "omnistream agents"),
    (f"{REPO_ROOT}/pipeline/", "omnistream pipeline (steps, domain)"),
)

#: Our frames that are on every stack (entry points), left out of the inclusive ranking.
_NOT_WORK = ("/.venv/", "/pipeline/cli/", "/pipeline/__main__.py", "/bench/")


@dataclass
class ProfileSummary:
    """Sample counts and the ranked entries the report prints."""

    tool: str
    samples: int
    components: list[tuple[str, int]] = field(default_factory=list)
    top_self: list[tuple[str, int]] = field(default_factory=list)
    top_ours_inclusive: list[tuple[str, int]] = field(default_factory=list)
    note: str = ""


def py_spy() -> str | None:
    """Path of the py-spy executable of this venv (or on PATH), None if not installed."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


class SpySession:
    """One ``py-spy record`` attached to ``pid`` until ``stop()``."""

    def __init__(self, pid: int, raw_path: Path, log_path: Path, rate: int = 100) -> None:
        exe = py_spy()
        if exe is None:
            raise FileNotFoundError("py-spy is not installed (pip install py-spy)")
        self.raw_path = raw_path
        self._log = log_path.open("wb")
        cmd = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking", "--function"]
        cmd += ["--full-filenames", "--format", "raw", "--output", str(raw_path)]
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Ask py-spy to write its output (SIGINT) and wait; True when the output file exists."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()
        return self.raw_path.is_file() and self.raw_path.stat().st_size > 0


def component_of(frame: str) -> str:
    for marker, name in _COMPONENTS:
        if marker in frame:
            return name
    return "other (stdlib, builtins)"


def short(frame: str) -> str:
    """``func (/long/path/site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py:12)``."""
    name, _, location = frame.partition(" (")
    location = location.rstrip(")")
    for prefix in ("site-packages/", f"{REPO_ROOT}/", "/lib/python3."):
        if prefix in location:
            location = location.split(prefix, 1)[1]
            if prefix == "/lib/python3.":
                location = "stdlib:" + location.split("/", 1)[-1]
            break
    return f"{name} ({location})"


def summarise(raw_path: Path, top: int = 15) -> ProfileSummary:
    """Aggregate py-spy raw output (``frame;frame;...;leaf count`` per line) into a ProfileSummary."""
    own: Counter[str] = Counter()
    comps: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in raw_path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        leaf = frames[-1]
        own[short(leaf)] += count
        comps[component_of(leaf)] += count
        for frame in set(frames):
            if str(REPO_ROOT) in frame and not any(skip in frame for skip in _NOT_WORK):
                ours[short(frame)] += count
    return ProfileSummary(
        tool="py-spy record --nonblocking --function (100 Hz, idle excluded)",
        samples=total,
        components=comps.most_common(),
        top_self=own.most_common(top),
        top_ours_inclusive=ours.most_common(top),
    )
