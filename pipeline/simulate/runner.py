"""One simulation run end to end: generate, encode with the project's codec, send, write the truth.

This is what ``omnistream simulate`` (and the demo) call. Guarantees: the truth file describes exactly
the messages handed to the sink, and is written even when some deliveries failed (the returned report
says how many, so the caller decides the exit code); with ``dry_run`` nothing touches Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from pipeline.simulate.producer import FileSink, KafkaSink, NullSink, ProduceReport, Sink, produce
from pipeline.simulate.simulation import Simulation
from pipeline.simulate.truth import TruthRecorder
from schemas.from_settings import registry_from

if TYPE_CHECKING:
    from pipeline.settings import Settings
    from pipeline.simulate.config import SimConfig


@dataclass(frozen=True)
class RunResult:
    """The delivery report and the truth of what was sent."""

    report: ProduceReport
    truth: TruthRecorder


def run_simulation(
    config: SimConfig,
    settings: Settings,
    *,
    truth_path: Path | None = None,
    rate: float | None = None,
    dry_run: bool = False,
    output: Path | None = None,
    show_progress: bool = True,
    console: Console | None = None,
) -> RunResult:
    """Generate ``config``'s stream and send it to ``settings``' input topics (or a file / nowhere).

    Raises :class:`~pipeline.simulate.producer.DeliveryError` when Kafka or a topic is unavailable
    before anything is sent; per-message failures are counted in the report instead.
    """
    from schemas.codec import AvroCodec

    console = console or Console(stderr=True)
    sim = Simulation(config)
    topics = settings.input_topics
    codec = AvroCodec(registry_from(settings))
    sink: Sink
    partitions = dict.fromkeys(topics.values(), settings.partitions)
    if output is not None:
        sink = FileSink(output)
    elif dry_run:
        sink = NullSink()
    else:
        from pipeline.security import settings_client_config

        kafka = KafkaSink(settings.kafka_bootstrap, client_config=settings_client_config(settings))
        partitions = kafka.check_topics(topics.values())
        sink = kafka
    # An exact total for the progress bar costs one extra generation pass (cheap next to encoding+sending).
    total = sim.count() if show_progress else None
    recorder = TruthRecorder(sim, topics, partitions)
    report = produce(
        sim.messages(),
        sink,
        codec,
        topics,
        total=total,
        rate=rate,
        observe=recorder.observe,
        console=console,
        show_progress=show_progress,
    )
    if truth_path is not None:
        recorder.write(truth_path)
    return RunResult(report, recorder)
