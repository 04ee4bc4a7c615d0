"""A chaos run: the event-time input produced in acknowledged phases into a broker of its own, while worker and
sink processes are killed with SIGKILL and restarted, the broker is restarted, and a worker is added and
removed; then the warehouse is compared with a clean run's.

The verifier counts, over the compared tables: rows of the clean run missing here (*lost*), rows whose table
key appears more than once (*duplicated*), and rows that differ otherwise (*mismatched*: here but not in the
clean run). Reduced in ``make test``; ``make chaos`` (``CHAOS_SIZE=full``) runs the full size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from pipeline.cli.worker import EXIT_UNAVAILABLE
from pipeline.drain import wait_group_stable
from pipeline.kafka_local import start_broker, stop_broker
from pipeline.settings import load_settings
from sinks.tables import TABLES as SINK_TABLES
from tests.integration.event_time_runs import TABLES, Run, SimInput, differences, finish, new_run, send
from tests.integration.pipeline_env import free_port
from tests.integration.processes import STARTED, Proc, wait_until


@dataclass(frozen=True)
class ChaosPlan:
    """How much chaos: kills per process kind, and whether a worker joins and leaves."""

    worker_kills: int
    sink_kills: int
    broker_restarts: int = 1
    scale: bool = False


REDUCED = ChaosPlan(worker_kills=1, sink_kills=1)
FULL = ChaosPlan(worker_kills=3, sink_kills=3, scale=True)


@dataclass
class ChaosReport:
    events: int
    worker_kills: int = 0
    sink_kills: int = 0
    broker_restarts: int = 0
    lost: int = 0
    duplicated: int = 0
    mismatched: int = 0

    def line(self) -> str:
        return (f"chaos: {self.events:,} input messages, {self.worker_kills} worker kills, {self.sink_kills} sink "
                f"kills, {self.broker_restarts} broker restart(s): lost {self.lost}, duplicated {self.duplicated}, "
                f"mismatched vs the clean run {self.mismatched}")  # fmt: skip


def _live_sink(run: Run, name: str) -> Proc:
    db = run.env.workdir / "warehouse.duckdb"
    args = ["sink", "--db", str(db), "--snapshot", str(db.with_suffix(".snap")), "--snapshot-every", "1"]
    sink = Proc([*args, "--metrics-port", "0", "--log-level", "INFO"], run.env.env(), run.env.workdir / f"{name}.log")
    # Running (signal handlers installed, partitions assigned) before anything else happens to it.
    wait_until(lambda: "sink assigned" in sink.log_tail(), 60, 0.2, f"{name} to start")
    return sink


def _supervised(run: Run, victim: Proc, name: str) -> Proc:
    """What a supervisor (Kubernetes, systemd) does: a worker that exited 69 because the brokers did not answer
    at start-up (it was restarted during the broker restart) is started again."""
    if victim.alive():
        return victim
    code = victim.popen.wait()
    assert code == EXIT_UNAVAILABLE, f"worker exited with {code}:\n{victim.log_tail()}"
    return run.start_worker(1, name)


def chaos_run(workdir: Path, inp: SimInput, params: Path, partitions: int, plan: ChaosPlan) -> tuple[Run, ChaosReport]:
    """Run ``inp`` through ``plan``'s chaos on a broker of its own; the finished run and the event counts."""
    broker = load_settings(broker_port=free_port(), controller_port=free_port(), state_dir=workdir / "broker",
                           partitions=partitions)  # fmt: skip
    bootstrap = start_broker(broker).bootstrap
    report = ChaosReport(events=len(inp.messages))
    first = len(STARTED)
    try:
        run = new_run(bootstrap, workdir, params, partitions)
        run.extra["OMNISTREAM_SOURCE_IDLE_S"] = "30"  # traffic comes in phases: no partition is idle meanwhile
        settings = run.env.settings()
        run.start_worker(0)
        victim = run.start_worker(1)
        wait_group_stable(settings, 2)
        sink = _live_sink(run, "sink-0")
        phases = 2 + plan.broker_restarts + (1 if plan.scale else 0)
        size = -(-len(inp.messages) // phases)
        chunks = [inp.messages[i : i + size] for i in range(0, len(inp.messages), size)]
        kills = [("worker", i) for i in range(plan.worker_kills)] + [("sink", i) for i in range(plan.sink_kills)]
        kills.sort(key=lambda k: k[1])
        extra_worker: Proc | None = None
        for phase, chunk in enumerate(chunks):
            send(run.env, chunk)  # acknowledged by the broker before anything else happens
            for kind, _i in kills[phase :: len(chunks)]:
                time.sleep(2)
                if kind == "worker":
                    victim = _supervised(run, victim, f"worker-1-again-{report.worker_kills}")
                    victim.kill()
                    report.worker_kills += 1
                    victim = run.start_worker(1, f"worker-1-restart-{report.worker_kills}")
                else:
                    assert sink.alive(), sink.log_tail()
                    sink.kill()
                    report.sink_kills += 1
                    sink = _live_sink(run, f"sink-{report.sink_kills}")
            if phase < plan.broker_restarts:
                stop_broker(broker)
                time.sleep(8)
                start_broker(broker)
                report.broker_restarts += 1
                victim = _supervised(run, victim, f"worker-1-after-broker-{report.broker_restarts}")
            if plan.scale and phase == plan.broker_restarts:
                extra_worker = run.start_worker(2)
            if extra_worker is not None and phase == plan.broker_restarts + 1:
                assert extra_worker.terminate() == 0, extra_worker.log_tail()
        assert sink.terminate() == 0, sink.log_tail()  # the finishing sink resumes from what it stored
        finish(run)
        return run, report
    finally:
        for proc in STARTED[first:]:  # left running only if the run failed part-way
            if proc.alive():
                proc.kill()
        stop_broker(broker)


def verify(clean: Run, chaos: Run, report: ChaosReport) -> ChaosReport:
    """Fill ``report``'s lost / duplicated / mismatched counts (see the module docstring)."""
    diff = differences(clean.rows, chaos.rows)
    report.lost = sum(only_clean for only_clean, _ in diff.values())
    report.mismatched = sum(only_chaos for _, only_chaos in diff.values())
    assert chaos.snapshot is not None
    report.duplicated = duplicated_keys(chaos.snapshot)
    return report


def duplicated_keys(snapshot: Path) -> int:
    """Rows beyond the first per table key, over the compared tables."""
    total = 0
    with duckdb.connect(str(snapshot), read_only=True) as con:
        for table in TABLES:
            key = ", ".join(f'"{c}"' for c in SINK_TABLES[table].key)
            row: Any = con.execute(f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) n FROM {table} "
                                   f"GROUP BY {key})").fetchone()  # fmt: skip
            total += int(row[0])
    return total
