"""``omnistream backfill TRANSACTIONS``: historical purchases onto the store topic as POS purchase events."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline.models.transactions import Layout, LayoutError


def backfill(
    transactions: Annotated[
        Path,
        typer.Argument(
            help="Purchase file: CSV (customer,date,amount[,items]) or whitespace columns, CDNOW layouts included"
        ),
    ],
    currency: Annotated[str, typer.Option(help="ISO 4217 currency of the amounts")] = "USD",
    store_id: Annotated[str, typer.Option(help="Store id the purchases are booked to")] = "backfill",
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers (default from settings)")] = None,
    topic_prefix: Annotated[str | None, typer.Option(help="Topic name prefix (default from settings)")] = None,
    rejects: Annotated[Path | None, typer.Option(help="Write unreadable lines here (line, reason, text)")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
    layout: Annotated[Layout, typer.Option(help="Column layout (auto: told from the file; see docs)")] = Layout.auto,
) -> None:
    """Send every purchase of the file as a store pos_purchase event (Avro) keyed by customer.

    Event ids are deterministic, so running the same file twice is absorbed downstream. Events older than the
    workers' OMNISTREAM_LATE_HORIZON_S are rejected by ingest as late: raise it for old history.
    Exit code 1 when a message was not acknowledged by Kafka.
    """
    from pipeline.models.transactions import BadLine, Transaction, read_transactions
    from pipeline.security import settings_client_config
    from pipeline.settings import load_settings
    from pipeline.simulate.backfill import backfill_messages
    from pipeline.simulate.producer import DeliveryError, KafkaSink, produce
    from schemas.codec import AvroCodec
    from schemas.from_settings import registry_from

    console = Console(stderr=True, soft_wrap=True)
    settings = load_settings(kafka_bootstrap=bootstrap or None, topic_prefix=topic_prefix)
    try:
        rows = list(read_transactions(transactions, layout))
    except LayoutError as exc:
        console.print(f"[bold red]error:[/] {transactions}: {exc} (--layout)", highlight=False)
        raise typer.Exit(2) from exc
    txs = [r for r in rows if isinstance(r, Transaction)]
    bad = [r for r in rows if isinstance(r, BadLine)]
    if bad:
        console.print(f"[yellow]{len(bad):,} unreadable lines[/] (first: line {bad[0].line}: {bad[0].reason})")
        if rejects is not None:
            rejects.write_text("".join(f"{b.line}\t{b.reason}\t{b.text}\n" for b in bad))
    topics = {"store": settings.topic("store")}
    try:
        sink = KafkaSink(
            settings.kafka_bootstrap, client_id="omnistream-backfill", client_config=settings_client_config(settings)
        )
        sink.check_topics(topics.values())
    except DeliveryError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    codec = AvroCodec(registry_from(settings))
    report = produce(
        backfill_messages(txs, str(transactions.name), currency=currency.upper(), store_id=store_id),
        sink,
        codec,
        topics,
        total=len(txs),
        console=console,
        show_progress=progress,
    )
    console.print(
        f"{report.delivered:,} of {report.sent:,} purchases delivered to {topics['store']} "
        f"in {report.elapsed_s:.1f} s; {len(bad):,} lines unreadable"
    )
    if not report.ok:
        console.print("[bold red]delivery failed:[/] " + "; ".join(report.errors[:3]), highlight=False)
        raise typer.Exit(1)
