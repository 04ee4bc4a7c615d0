"""Where a bench run lives (broker, topic names, files) and the row every measurement returns.

The bench uses the project's local broker (``omnistream kafka up``, started when it is not running) and keeps
everything of its own apart: the loaded workload in the input topics ``<prefix><channel>`` (``bench.`` for the
full workload, ``benchq.`` for ``--quick``), every other topic under a per-measurement prefix, and its files
under ``<OMNISTREAM_STATE_DIR>/bench`` (git-ignored). Nothing here starts a process.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.settings import CHANNELS, Settings, load_settings

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_MD = BENCH_DIR / "RESULTS.md"


@dataclass(frozen=True)
class BenchContext:
    """One bench run: broker address, input prefix, run id, output directory."""

    bootstrap: str
    prefix: str
    out: Path
    run_id: str
    partitions: int
    broker_pid: int | None = None

    @classmethod
    def create(cls, quick: bool, broker_pid: int | None = None) -> BenchContext:
        base = load_settings()
        run_id = time.strftime("%H%M%S")
        out = Path(base.state_dir).resolve() / "bench"
        return cls(base.kafka_bootstrap, "benchq." if quick else "bench.", out, run_id, base.partitions, broker_pid)

    @property
    def python(self) -> str:
        """The interpreter of this venv: every child process runs the same Python and packages."""
        return sys.executable

    def dir(self, name: str) -> Path:
        path = self.out / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def logs(self) -> Path:
        return self.dir(f"logs-{self.run_id}")

    @property
    def input_topics(self) -> list[str]:
        return [f"{self.prefix}{channel}" for channel in CHANNELS]

    def settings(self, **overrides: Any) -> Settings:
        """Settings on the bench broker with the bench input prefix (metrics off)."""
        values: dict[str, Any] = {"kafka_bootstrap": self.bootstrap, "topic_prefix": self.prefix, "metrics_port": 0}
        values.update(overrides)
        return load_settings(**values)

    def measurement_prefix(self, tag: str) -> str:
        """Topic prefix of one measurement's own (non-input) topics, e.g. ``bench.1w-142501.``."""
        return f"{self.prefix}{tag}-{self.run_id}."

    def app_id(self, tag: str) -> str:
        """A fresh Faust app id (= consumer group and changelog prefix) per measurement and run."""
        return f"{self.prefix.rstrip('.')}-{tag}-{self.run_id}"


@dataclass
class Measurement:
    """One row of the results table. ``rate`` is events (or rows) per second; None when not measured."""

    key: str
    title: str
    status: str = "ok"  # ok | partial | failed | not_measured
    events: int | None = None
    seconds: float | None = None
    rate: float | None = None
    wall_s: float | None = None
    rss_bytes: int | None = None
    cpu_percent: float | None = None
    broker_cpu_percent: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def failed(key: str, title: str, why: str, wall_s: float | None = None) -> Measurement:
    return Measurement(key, title, status="failed", wall_s=wall_s, note=why)


def free_port_range(count: int) -> int:
    """First of ``count`` consecutive ports free right now on 127.0.0.1 (workers use ``base + worker_id``)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = int(sock.getsockname()[1])
        if base + count < 65535 and all(_is_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
