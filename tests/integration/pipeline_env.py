"""A pipeline deployment of its own per test: unique topic prefix, consumer group and ports."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.domain.records import FailureType
from pipeline.settings import load_settings
from pipeline.simulate.truth import expected_for
from pipeline.summary import OutputSummary, summarise
from pipeline.topic_reader import topic_end_total
from pipeline.topics import ensure_pipeline_topics
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from tests.integration.processes import Proc, wait_until

FAILURE_OUTCOMES = tuple(t.value for t in FailureType)

#: Every deployment created in this session: (bootstrap, topic prefix, app id), for the topic clean-up.
CREATED: list[tuple[str, str, str]] = []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PipelineEnv:
    """Environment variables and helpers for one isolated pipeline run on a broker."""

    bootstrap: str
    workdir: Path
    prefix: str
    app_id: str
    allowed_lateness_s: float | None = None  # None: the default

    @classmethod
    def create(
        cls, bootstrap: str, workdir: Path, partitions: int = 4, allowed_lateness_s: float | None = None
    ) -> PipelineEnv:
        tag = uuid.uuid4().hex[:8]
        env = cls(bootstrap, workdir, f"it{tag}.", f"omnistream-it-{tag}", allowed_lateness_s)
        CREATED.append((bootstrap, env.prefix, env.app_id))
        ensure_pipeline_topics(env.settings().model_copy(update={"partitions": partitions}), bootstrap)
        return env

    def settings(self) -> Any:
        lateness = {} if self.allowed_lateness_s is None else {"allowed_lateness_s": self.allowed_lateness_s}
        return load_settings(kafka_bootstrap=self.bootstrap, topic_prefix=self.prefix, app_id=self.app_id, **lateness)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "OMNISTREAM_KAFKA_BOOTSTRAP": self.bootstrap,
            "OMNISTREAM_TOPIC_PREFIX": self.prefix,
            "OMNISTREAM_APP_ID": self.app_id,
            "OMNISTREAM_STATE_DIR": str(self.workdir / "state"),
            "OMNISTREAM_METRICS_PORT": str(free_port()),
            "OMNISTREAM_WEB_PORT": str(free_port()),
            **(
                {}
                if self.allowed_lateness_s is None
                else {"OMNISTREAM_ALLOWED_LATENESS_S": str(self.allowed_lateness_s)}
            ),
            **extra,
        }

    def simulate(self, *args: str) -> dict[str, Any]:
        """Run ``omnistream simulate`` with ``args``; returns the truth document, its ``expected`` what workers
        with this deployment's allowed lateness output (:func:`expected_for`)."""
        truth = self.workdir / f"truth-{uuid.uuid4().hex[:6]}.json"
        cmd = [sys.executable, "-m", "pipeline", "simulate", "--truth", str(truth), "--no-progress", *args]
        done = subprocess.run(cmd, env={**_os_env(), **self.env()}, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"simulate failed:\n{done.stdout}\n{done.stderr}"
        result: dict[str, Any] = json.loads(truth.read_text())
        result["expected"] = expected_for(result, int(self.settings().allowed_lateness_s * 1000))
        return result

    def start_worker(self, name: str = "worker", **extra: str) -> Proc:
        # Worker N serves on the configured ports + N: offset the free ports back so the ports it binds are free.
        wid = int(extra.get("OMNISTREAM_WORKER_ID", "0"))
        ports = {k: str(free_port() - wid) for k in ("OMNISTREAM_METRICS_PORT", "OMNISTREAM_WEB_PORT")}
        # Sources idle after 2 s (default 10 s): runs on a finished input release their last events sooner.
        defaults = {"OMNISTREAM_SOURCE_IDLE_S": "2"}
        return Proc(["worker", "--log-level", "INFO"], self.env(**{**defaults, **ports, **extra}),
                    self.workdir / f"{name}.log")  # fmt: skip

    def output_count(self) -> int:
        s = self.settings()
        return sum(topic_end_total(self.bootstrap, s.topic(t)) for t in ("customer-events", "failed-events"))

    def wait_for_outputs(self, want: int, timeout_s: float, worker: Proc | None = None) -> None:
        def done() -> bool:
            if worker is not None and not worker.alive():
                raise AssertionError(f"worker exited with {worker.popen.returncode}:\n{worker.log_tail()}")
            return self.output_count() >= want

        wait_until(done, timeout_s, what=f"{want} outputs")

    def summary(self) -> OutputSummary:
        s = self.settings()
        codec = AvroCodec(FileSchemaRegistry())
        return summarise(self.bootstrap, s.topic("customer-events"), s.topic("failed-events"), codec)


def expected_failed(truth: dict[str, Any]) -> int:
    return sum(int(truth["expected"]["per_outcome"].get(o, 0)) for o in FAILURE_OUTCOMES)


def _os_env() -> dict[str, str]:
    import os

    return dict(os.environ)
