"""``omnistream simulate``: produce realistic, deterministic omnichannel traffic (with ground truth)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.clock import SystemClock
from pipeline.settings import load_settings
from pipeline.simulate.config import MINUTE_MS, SimConfig
from pipeline.simulate.messages import EXPECTED_OUTCOME, KINDS
from pipeline.simulate.producer import DeliveryError, ProduceReport
from pipeline.simulate.runner import run_simulation
from pipeline.simulate.truth import TruthRecorder


def parse_end(end: str | None, now_ms: int) -> int:
    """Epoch ms of ``--end`` (ISO 8601; naive means UTC), or ``now_ms`` rounded down to the minute."""
    if end is None:
        return now_ms - now_ms % MINUTE_MS
    try:
        moment = datetime.fromisoformat(end)
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO 8601 timestamp: {end!r}", param_hint="--end") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def simulate(
    customers: Annotated[int, typer.Option(min=1, help="Number of simulated people")] = 1000,
    days: Annotated[int, typer.Option(min=1, help="Length of the simulated timeline in days")] = 30,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same messages")] = 42,
    bad_share: Annotated[
        float, typer.Option(min=0.0, max=0.45, help="Share of all messages that are bad input")
    ] = 0.02,
    duplicate_share: Annotated[
        float, typer.Option(min=0.0, max=0.45, help="Share of all messages that re-send an earlier one")
    ] = 0.01,
    late_share: Annotated[
        float, typer.Option(min=0.0, max=0.45, help="Share of all messages delivered hours after their time")
    ] = 0.01,
    truth: Annotated[
        Path | None, typer.Option(help="Write the ground truth (identities, journeys, expected counts) as JSON")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(min=0.1, help="Cap on messages per second (default: as fast as possible)")
    ] = None,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers (default from settings)")] = None,
    topic_prefix: Annotated[str | None, typer.Option(help="Topic name prefix (default from settings)")] = None,
    end: Annotated[
        str | None, typer.Option(help="End of the simulated timeline, ISO 8601 (default: now, to the minute)")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Generate and encode everything, send nothing")] = False,
    output: Annotated[
        Path | None, typer.Option(help="Write the messages as JSON lines to this file instead of Kafka")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
) -> None:
    """Produce simulated web, app, store and social events to the input topics.

    People browse anonymously and log in later, use several devices, visit stores, abandon carts online
    and buy in store, post on social media, respond to campaigns (with holdouts), churn. A configurable
    share is bad input (each kind with the failure ingest must report), duplicates and late events.
    The timeline ends at --end (default now), so time-based checks in the pipeline hold. Exit code 1 when
    any message was not acknowledged by Kafka.
    """
    console = Console(stderr=True, soft_wrap=True)
    settings = load_settings(kafka_bootstrap=bootstrap or None, topic_prefix=topic_prefix)
    try:
        config = SimConfig(
            customers=customers,
            days=days,
            seed=seed,
            end_ms=parse_end(end, SystemClock().now_ms()),
            bad_share=bad_share,
            duplicate_share=duplicate_share,
            late_share=late_share,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    target = f"file {output}" if output else "nowhere (dry run)" if dry_run else settings.kafka_bootstrap
    console.print(f"simulating {customers:,} customers over {days} days (seed {seed}) -> {target}")
    try:
        result = run_simulation(
            config,
            settings,
            truth_path=truth,
            rate=rate,
            dry_run=dry_run,
            output=output,
            show_progress=progress,
            console=console,
        )
    except DeliveryError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(code=1) from exc
    Console(soft_wrap=True).print(summary_table(result.report, result.truth))
    report = result.report
    console.print(
        f"{report.sent:,} messages, {report.bytes / 1e6:,.1f} MB in {report.elapsed_s:.1f} s "
        f"({report.sent / max(report.elapsed_s, 1e-9):,.0f} msg/s)" + (f"; truth written to {truth}" if truth else "")
    )
    if not report.ok:
        console.print(
            f"[bold red]delivery failed[/] for {report.failed:,} of {report.sent:,} messages: "
            + "; ".join(report.errors[:3]),
            highlight=False,
        )
        raise typer.Exit(code=1)


def summary_table(report: ProduceReport, truth: TruthRecorder) -> Table:
    """Messages per kind (rows, with the expected outcome) and per topic (columns)."""
    topics = sorted(truth.per_topic)
    # Channel names as headers: prefixed topic names would squeeze the table in an 80-column terminal.
    channel_of = {topic: channel for channel, topic in truth.topics.items()}
    headers = [channel_of.get(t, t) for t in topics]
    prefix = topics[0].removesuffix(headers[0]) if topics else ""
    title = "messages produced per topic" + (f" ({prefix}<channel>)" if prefix else "")
    table = Table("kind", "expected", *headers, "total", title=title, box=None, pad_edge=False)
    per_kind_topic: dict[str, dict[str, int]] = {}
    for topic in topics:
        for kind in KINDS:
            per_kind_topic.setdefault(kind, {})[topic] = 0
    for (topic, kind), n in truth.per_topic_kind.items():
        per_kind_topic[kind][topic] = n
    for kind in KINDS:
        count = truth.per_kind.get(kind, 0)
        if count:
            cells = [f"{per_kind_topic[kind][t]:,}" for t in topics]
            table.add_row(kind, EXPECTED_OUTCOME[kind], *cells, f"{count:,}")
    table.add_row("[bold]all", "", *(f"[bold]{truth.per_topic[t]:,}" for t in topics), f"[bold]{report.sent:,}")
    return table
