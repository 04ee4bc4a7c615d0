"""``omnistream failed list|show|replay``: what failed and why, one failed event's original, and sending
originals back to their source topic once the cause is fixed (pipeline/failed.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, Any

import typer

failed_app = typer.Typer(help="Inspect and replay failed events.", no_args_is_help=True)

TypeOption = Annotated[list[str] | None, typer.Option("--type", help="failure_type (repeatable)")]
RuleOption = Annotated[list[str] | None, typer.Option("--rule", help="rule (repeatable)")]
TopicOption = Annotated[list[str] | None, typer.Option("--topic", help="source topic (repeatable)")]
SinceOption = Annotated[str | None, typer.Option(help="failed at or after this ISO time, e.g. 2026-12-01T00:00Z")]
UntilOption = Annotated[str | None, typer.Option(help="failed before this ISO time")]


def _selection(types: list[str] | None, rules: list[str] | None, topics: list[str] | None, since: str | None,
               until: str | None) -> Any:  # fmt: skip
    from pipeline.failed import Selection

    def ms(text: str | None) -> int | None:
        return None if text is None else int(datetime.fromisoformat(text).timestamp() * 1000)

    return Selection(tuple(types or ()), tuple(rules or ()), tuple(topics or ()), ms(since), ms(until))


def _failed(selection: Any) -> Iterator[dict[str, Any]]:
    """Every failed event (decoded) that ``selection`` matches, oldest first per partition."""
    from pipeline.security import settings_client_config
    from pipeline.settings import load_settings
    from pipeline.topic_reader import iter_topic
    from schemas.codec import AvroCodec
    from schemas.from_settings import registry_from

    settings = load_settings()
    codec = AvroCodec(registry_from(settings))
    messages = iter_topic(settings.kafka_bootstrap, settings.topic("failed-events"), timeout_s=120,
                          client_config=settings_client_config(settings))  # fmt: skip
    for message in messages:
        record = dict(codec.decode(message.value).record)
        if selection.matches(record):
            yield record


@failed_app.command("list")
def list_failed(
    types: TypeOption = None, rules: RuleOption = None, topics: TopicOption = None, since: SinceOption = None,
    until: UntilOption = None,
    output: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
) -> None:  # fmt: skip
    """List failed events: input coordinates, failure type, rule, reason, event id, when, how the original is
    kept. Shows no personal data."""
    from pipeline.failed import summary_row

    rows = [summary_row(r) for r in _failed(_selection(types, rules, topics, since, until))]
    if output == "json":
        typer.echo(json.dumps(rows))
    elif output == "csv":
        import csv
        import sys

        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["input"])
        writer.writeheader()
        writer.writerows(rows)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*(rows[0] if rows else ["input"]))
        for row in rows:
            table.add_row(*(str(v) for v in row.values()))
        Console(width=200).print(table)
    typer.echo(f"{len(rows)} failed events", err=True)


@failed_app.command("show")
def show_failed(
    input_ref: Annotated[str, typer.Argument(metavar="TOPIC:PARTITION:OFFSET", help="the input, as `list` shows it")],
) -> None:
    """One failed event, with its original opened with OMNISTREAM_PII_SECRET (decoded when it is Avro)."""
    topic, partition, offset = _parse_ref(input_ref)
    for record in _failed(_selection(None, None, [topic], None, None)):
        if (record["source_partition"], record["source_offset"]) == (partition, offset):
            got = _opener()(record)
            shown = {k: v for k, v in record.items() if k not in ("original_sealed", "source_key_sealed")}
            shown["original"] = got.problem or _describe(got.value)
            typer.echo(json.dumps(shown, default=str, indent=2))
            return
    typer.secho(f"no failed event for input {input_ref}", fg="red", err=True)
    raise typer.Exit(1)


@failed_app.command("replay")
def replay_failed(
    types: TypeOption = None, rules: RuleOption = None, topics: TopicOption = None, since: SinceOption = None,
    until: UntilOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count what would be sent, send nothing")] = False,
) -> None:  # fmt: skip
    """Send the originals of the selected failed events back to their source topics (after fixing the cause).
    Each is sent once per run; an original kept by reference is sent only if the input topic still has it. A
    replayed event arrives after everything else on its partition: more than OMNISTREAM_ALLOWED_LATENESS_S behind
    the partition's progress it fails again, as a late_event."""
    from kafka import KafkaProducer

    from pipeline.security import settings_client_config
    from pipeline.settings import load_settings

    settings = load_settings()
    producer = None if dry_run else KafkaProducer(bootstrap_servers=settings.kafka_bootstrap.split(","),
                                                  acks="all", **settings_client_config(settings))  # fmt: skip
    sent, missing = 0, dict[str, int]()
    opener = _opener()
    for record in _failed(_selection(types, rules, topics, since, until)):
        got = opener(record)
        if got.problem:
            missing[got.problem] = missing.get(got.problem, 0) + 1
            continue
        if producer is not None:
            producer.send(record["source_topic"], key=got.key, value=got.value)
        sent += 1
    if producer is not None:
        producer.flush()
        producer.close()
    typer.echo(f"{'would replay' if dry_run else 'replayed'} {sent} failed events")
    for problem, n in sorted(missing.items()):
        typer.echo(f"skipped {n}: {problem}")


def _opener() -> Callable[[dict[str, Any]], Any]:
    """Recovers a failed event's original (pipeline/failed.py); settings and key derived once per command."""
    from pipeline.domain.quarantine import Quarantine
    from pipeline.failed import original
    from pipeline.security import settings_client_config
    from pipeline.settings import load_settings
    from pipeline.topic_reader import read_range

    settings = load_settings()
    client = settings_client_config(settings)
    quarantine = Quarantine(settings.pii_secret.get_secret_value().encode())

    def read_input(topic: str, partition: int, offset: int) -> tuple[bytes | None, bytes | None] | None:
        try:
            found = read_range(settings.kafka_bootstrap, topic, partition, offset, offset + 1, client, timeout_s=10)
        except TimeoutError:
            return None
        return (found[0][1] or None, found[0][2]) if found and found[0][0] == offset else None

    return lambda record: original(record, quarantine, read_input)


def _describe(value: bytes | None) -> Any:
    """The original as its Avro record when it decodes, else the first bytes in hex."""
    from schemas.codec import AvroCodec
    from schemas.registry import FileSchemaRegistry

    if value is None:
        return None
    try:
        return dict(AvroCodec(FileSchemaRegistry()).decode(value).record)
    except Exception:  # not Avro, or not one of ours: that may be why it failed
        return {"bytes": len(value), "head_hex": value[:64].hex()}


def _parse_ref(text: str) -> tuple[str, int, int]:
    topic, _, rest = text.rpartition(":")
    topic, _, partition = topic.rpartition(":")
    try:
        return topic, int(partition), int(rest)
    except ValueError as exc:
        raise typer.BadParameter(f"expected TOPIC:PARTITION:OFFSET, got {text!r}") from exc
