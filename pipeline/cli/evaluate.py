"""``omnistream evaluate identity|sessions``: streamed results against truth and batch recomputation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from pipeline.settings import Settings, load_settings

evaluate_app = typer.Typer(help="Check streamed identities and sessions against truth / batch recomputation.")

MIN_PRECISION = 0.99
MIN_RECALL = 0.95


def _settings(bootstrap: str | None, topic_prefix: str | None) -> Settings:
    overrides: dict[str, object] = {}
    if bootstrap:
        overrides["kafka_bootstrap"] = bootstrap
    if topic_prefix is not None:
        overrides["topic_prefix"] = topic_prefix
    return load_settings(**overrides)


def _read_state(settings: Settings) -> tuple[dict[str, str], set[str], list[Any]]:
    from pipeline.identity.replica import AssignmentReplica
    from pipeline.topic_reader import iter_topic
    from schemas.codec import AvroCodec
    from schemas.registry import FileSchemaRegistry

    replica = AssignmentReplica(settings.kafka_bootstrap, settings.topic("identity-assignments"))
    for msg in iter_topic(settings.kafka_bootstrap, settings.topic("identity-assignments")):
        replica.apply(msg.key or b"", msg.value)
    codec = AvroCodec(FileSchemaRegistry())
    events = [codec.decode(m.value).record for m in iter_topic(settings.kafka_bootstrap,
                                                               settings.topic("customer-events"))]  # fmt: skip
    return replica.assignments, replica.shared, events


def read_attribution(settings: Settings, codec: Any) -> dict[str, str]:
    """event id -> final profile, from resolved-events (first key per event) and identity-merges."""
    from pipeline.evaluate.sessions import final_attribution
    from pipeline.topic_reader import iter_topic

    first: dict[str, str] = {}
    for m in iter_topic(settings.kafka_bootstrap, settings.topic("resolved-events")):
        decoded = codec.decode(m.value)
        if decoded.subject == "customer-event" and m.key:
            first.setdefault(decoded.record["event_id"], m.key.decode())
    merges = [(r["old_id"], r["new_id"]) for r in (codec.decode(m.value).record for m in
              iter_topic(settings.kafka_bootstrap, settings.topic("identity-merges")))]  # fmt: skip
    return final_attribution(first, merges)


@evaluate_app.command("identity")
def identity(
    truth: Annotated[Path, typer.Option(help="Truth JSON written by `omnistream simulate --truth`")],
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers")] = None,
    topic_prefix: Annotated[str | None, typer.Option(help="Topic prefix of the run")] = None,
) -> None:
    """Pairwise precision and recall of the resolved identities; exit 1 below 0.99 / 0.95."""
    from pipeline.domain.pii import Pseudonymiser
    from pipeline.evaluate.identity import evaluate_identity

    settings = _settings(bootstrap, topic_prefix)
    assignments, shared, events = _read_state(settings)
    pseudonymiser = Pseudonymiser(settings.pii_secret.get_secret_value().encode())
    report = evaluate_identity(events, assignments, shared, json.loads(truth.read_text()), pseudonymiser)
    s = report.scores
    Console().print(
        f"identity: precision {s.precision:.4f}  recall {s.recall:.4f}  over {s.nodes} linkable identifiers "
        f"({report.links} link events; pairs predicted {s.pairs_predicted}, true {s.pairs_true}, "
        f"correct {s.pairs_correct}); shared identifiers detected {report.shared_detected}/{report.shared_in_truth}"
    )
    if s.precision < MIN_PRECISION or s.recall < MIN_RECALL:
        raise typer.Exit(1)


@evaluate_app.command("sessions")
def sessions(
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers")] = None,
    topic_prefix: Annotated[str | None, typer.Option(help="Topic prefix of the run")] = None,
) -> None:
    """How many streamed sessions differ from a batch recomputation; exit 1 if any does."""
    from pipeline.app import session_policy
    from pipeline.evaluate.sessions import evaluate_sessions
    from pipeline.topic_reader import iter_topic
    from schemas.codec import AvroCodec
    from schemas.registry import FileSchemaRegistry

    settings = _settings(bootstrap, topic_prefix)
    _, _, events = _read_state(settings)
    codec = AvroCodec(FileSchemaRegistry())
    records = [codec.decode(m.value).record for m in iter_topic(settings.kafka_bootstrap,
                                                                settings.topic("sessions"))]  # fmt: skip
    attribution = read_attribution(settings, codec)
    diff, n_stream, n_batch = evaluate_sessions(records, events, attribution, session_policy(settings))
    Console().print(
        f"sessions: {n_stream} streamed, {n_batch} recomputed; {diff.differing} streamed sessions differ, "
        f"{len(diff.only_batch)} recomputed sessions have no streamed twin"
    )
    if diff.differing or diff.only_batch:
        raise typer.Exit(1)
