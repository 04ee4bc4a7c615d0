"""``omnistream kafka up|down|status``: the real local Apache Kafka broker (single-node KRaft)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.kafka_local import (
    LocalKafkaError,
    broker_status,
    parse_heap,
    start_broker,
    stop_broker,
)
from pipeline.kafka_local.config import BrokerLayout
from pipeline.settings import load_settings
from pipeline.topics import ensure_pipeline_topics, topic_specs

kafka_app = typer.Typer(
    help="Run the local Apache Kafka broker (official jars via Maven, KRaft, one node) the pipeline uses.",
    no_args_is_help=True,
)

PortOption = Annotated[int | None, typer.Option(help="Client port of the local broker (default from settings)")]
ControllerPortOption = Annotated[
    int | None, typer.Option(help="KRaft controller port of the local broker (default from settings)")
]


def _fail(console: Console, error: LocalKafkaError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {error.message}", highlight=False)
    if error.details:
        console.print(error.details, style="dim", highlight=False, markup=False)
    return typer.Exit(code=1)


def _topic_table(topics: dict[str, int]) -> Table:
    table = Table("topic", "partitions", box=None, pad_edge=False)
    for name, count in topics.items():
        table.add_row(name, str(count))
    return table


@kafka_app.command()
def up(
    partitions: Annotated[
        int | None, typer.Option(min=1, help="Partitions of the pipeline topics (default from settings)")
    ] = None,
    broker_port: PortOption = None,
    controller_port: ControllerPortOption = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait for the broker to answer metadata")] = None,
    heap: Annotated[str, typer.Option(help="Broker max heap, e.g. 512m or 1g (initial heap is half)")] = "512m",
) -> None:
    """Start the local broker if it is not running, wait until it answers, and create the pipeline topics.

    Idempotent: with the broker already up it only makes sure the topics exist. The first run fetches the
    Kafka jars with Maven into the cache dir (OMNISTREAM_KAFKA_CACHE_DIR); later runs work offline.
    """
    console = Console(soft_wrap=True)
    settings = load_settings(
        partitions=partitions,
        broker_port=broker_port,
        controller_port=controller_port,
        broker_start_timeout_s=timeout,
    )
    try:
        result = start_broker(settings, heap=parse_heap(heap), report=lambda msg: console.print(msg, style="cyan"))
        if result.external:
            console.print(f"[yellow]using the Kafka broker already serving {result.bootstrap}[/]")
        elif result.started:
            console.print(f"[green]broker ready[/] at {result.bootstrap} in {result.seconds:.1f} s (pid {result.pid})")
        else:
            console.print(f"[green]broker already running[/] at {result.bootstrap} (pid {result.pid})")
        if settings.replication_factor > 1:
            console.print(
                f"[yellow]one local broker: topics get replication factor 1, not {settings.replication_factor}[/]"
            )
        topics = ensure_pipeline_topics(settings.model_copy(update={"replication_factor": 1}), result.bootstrap)
    except LocalKafkaError as error:
        raise _fail(console, error) from error
    console.print(_topic_table(topics))
    wanted = {spec.name: spec.partitions for spec in topic_specs(settings)}
    mismatched = [name for name, count in topics.items() if count != wanted.get(name, count)]
    if mismatched:
        console.print(
            f"[yellow]existing topics keep their partition count (wanted {settings.partitions}, identity 1): "
            f"{', '.join(mismatched)}; `kafka down --purge` then `kafka up` recreates them[/]"
        )
    if settings.kafka_bootstrap != result.bootstrap:
        console.print(
            f"[yellow]note: OMNISTREAM_KAFKA_BOOTSTRAP is {settings.kafka_bootstrap}, "
            f"the local broker is {result.bootstrap}[/]"
        )


@kafka_app.command()
def down(
    purge: Annotated[bool, typer.Option(help="Also delete the broker's data dir (all topics and offsets)")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a clean shutdown before SIGKILL")] = 30.0,
    broker_port: PortOption = None,
    controller_port: ControllerPortOption = None,
) -> None:
    """Stop the local broker started from this state dir (clean shutdown, SIGKILL after --timeout).

    Harmless when nothing runs. A Kafka that was not started from this state dir is never touched.
    """
    console = Console(soft_wrap=True)
    settings = load_settings(broker_port=broker_port, controller_port=controller_port)
    try:
        pid = stop_broker(settings, timeout_s=timeout, purge=purge)
    except LocalKafkaError as error:
        raise _fail(console, error) from error
    layout = BrokerLayout.from_settings(settings)
    if pid is not None:
        console.print(f"[green]broker stopped[/] (pid {pid})")
    else:
        console.print(f"no broker running from {layout.root}")
    if purge:
        console.print(f"deleted {layout.data_dir}")


@kafka_app.command()
def status(broker_port: PortOption = None, controller_port: ControllerPortOption = None) -> None:
    """Show whether the local broker runs (pid, bootstrap, topics with partition counts).

    Exit code 0 when a broker answers metadata at the local bootstrap, 1 when not, so scripts can test it.
    """
    console = Console(soft_wrap=True)
    settings = load_settings(broker_port=broker_port, controller_port=controller_port)
    try:
        state = broker_status(settings)
    except LocalKafkaError as error:
        raise _fail(console, error) from error
    if not state.running:
        hint = f" (process {state.pid} is alive but does not answer yet)" if state.pid else ""
        console.print(f"[red]not running[/] at {state.bootstrap}{hint}")
        raise typer.Exit(code=1)
    owner = f"pid {state.pid}" if state.managed else "not started from this state dir"
    console.print(f"[green]running[/] at {state.bootstrap} ({owner}); log {state.log_file}")
    if state.topics:
        console.print(_topic_table(state.topics))
    else:
        console.print("no topics yet")
