"""CPU and memory of the processes under measurement (and of the broker JVM competing for the same cores).

``ProcessSampler`` reads cumulative CPU time at start and end (so CPU% is exact over the window, 100% = one
core) and samples resident set size on every ``sample()`` call (peak) and at ``finish()`` (end). Processes
that exit in between are skipped, not an error. It does not measure children of the watched processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Usage:
    """CPU% over the window (summed over the watched processes) and resident sizes in bytes."""

    cpu_percent: float
    rss_end: int
    rss_peak: int


class ProcessSampler:
    """Watch a set of pids from ``start()`` to ``finish()``."""

    def __init__(self, pids: list[int]) -> None:
        self._procs = []
        for pid in pids:
            try:
                self._procs.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                continue
        self._cpu0 = 0.0
        self._t0 = 0.0
        self._peak = 0

    def add(self, pid: int) -> None:
        """Watch one more process from now on (its CPU time before this call is not counted)."""
        try:
            proc = psutil.Process(pid)
            self._cpu0 += _cpu(proc)
            self._procs.append(proc)
        except psutil.NoSuchProcess:
            return

    def start(self) -> ProcessSampler:
        self._t0 = time.monotonic()
        self._cpu0 = sum(_cpu(p) for p in self._procs)
        self.sample()
        return self

    def restart_window(self) -> None:
        """Start the CPU window now (e.g. once the measured phase begins after a start-up phase)."""
        self.start()

    def sample(self) -> int:
        """Current total RSS; updates the peak."""
        rss = sum(_rss(p) for p in self._procs)
        self._peak = max(self._peak, rss)
        return rss

    def finish(self) -> Usage:
        rss = self.sample()
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        cpu = sum(_cpu(p) for p in self._procs) - self._cpu0
        return Usage(100.0 * cpu / elapsed, rss, self._peak)


def _cpu(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0
    return float(times.user + times.system)


def _rss(proc: psutil.Process) -> int:
    try:
        return int(proc.memory_info().rss)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0
