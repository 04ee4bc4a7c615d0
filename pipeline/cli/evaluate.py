"""``omnistream evaluate identity|sessions``: streamed results against truth and batch recomputation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline.settings import Settings, load_settings

if TYPE_CHECKING:
    from pipeline.evaluate.sessions import Attribution

evaluate_app = typer.Typer(help="Check streamed identities and sessions against truth / batch recomputation.")

MIN_PRECISION = 0.99
MIN_RECALL = 0.95


def _settings(bootstrap: str | None, topic_prefix: str | None) -> Settings:
    return load_settings(kafka_bootstrap=bootstrap or None, topic_prefix=topic_prefix)


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


def read_merge_records(settings: Settings, codec: Any) -> list[dict[str, Any]]:
    """The identity-merges records of a run."""
    from pipeline.topic_reader import iter_topic

    return [dict(codec.decode(m.value).record) for m in iter_topic(settings.kafka_bootstrap,
                                                                    settings.topic("identity-merges"))]  # fmt: skip


def read_merges(settings: Settings, codec: Any) -> dict[str, str]:
    """old profile id -> the profile it was merged into, from identity-merges (the first merge of an id wins)."""
    out: dict[str, str] = {}
    for record in read_merge_records(settings, codec):
        out.setdefault(record["old_id"], record["new_id"])
    return out


def read_first_keys(settings: Settings, codec: Any) -> dict[str, str]:
    """event id -> the profile it was first resolved to, from resolved-events (first key per event)."""
    from pipeline.steps.bundles import read
    from pipeline.topic_reader import iter_topic

    first: dict[str, str] = {}
    for m in iter_topic(settings.kafka_bootstrap, settings.topic("resolved-events")):
        for entry in read(codec, m.key or b"", m.value)[0]:
            decoded = codec.decode(entry.value)
            if decoded.subject == "customer-event" and entry.key:
                first.setdefault(decoded.record["event_id"], entry.key.decode())
    return first


def read_attribution(settings: Settings, codec: Any) -> dict[str, str]:
    """event id -> final profile, from resolved-events (first key per event) and identity-merges."""
    from pipeline.evaluate.sessions import final_attribution

    return final_attribution(read_first_keys(settings, codec), read_merges(settings, codec).items())


def read_session_attribution(settings: Settings, codec: Any, events: list[Any], policy: Any) -> Attribution:
    """The attribution ``evaluate sessions`` recomputes with: final profiles, merges and the sessions that merges
    did not hand over (:func:`pipeline.evaluate.sessions.attribute`)."""
    from pipeline.evaluate.sessions import attribute

    return attribute(read_first_keys(settings, codec), read_merge_records(settings, codec), events, policy)


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
    policy = session_policy(settings)
    att = read_session_attribution(settings, codec, events, policy)
    diff, n_stream, n_batch = evaluate_sessions(records, events, att.final, policy, att.merges, att.apart)
    Console().print(
        f"sessions: {n_stream} streamed, {n_batch} recomputed; {diff.differing} streamed sessions differ, "
        f"{len(diff.only_batch)} recomputed sessions have no streamed twin"
    )
    if diff.differing or diff.only_batch:
        raise typer.Exit(1)


MIN_AUC = 0.80
MIN_OFFER_RATE = 0.95


@evaluate_app.command("journeys")
def journeys(
    customers: Annotated[int, typer.Option(min=50, help="Simulated people")] = 2000,
    days: Annotated[int, typer.Option(min=14, help="Length of the simulated timeline in days")] = 90,
    seed: Annotated[int, typer.Option(help="Simulation seed")] = 42,
) -> None:
    """Churn-risk AUC and the store-visit-with-open-cart trigger on simulator truth; exit 1 below 0.80 / 95%
    or when any consent-denied customer got a signal. Runs the journey logic offline (no broker needed)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from pipeline.clock import SystemClock
    from pipeline.evaluate.journeys import evaluate_journeys
    from pipeline.simulate.config import SimConfig

    now = SystemClock().now_ms()
    config = SimConfig(customers=customers, days=days, seed=seed, end_ms=now - now % 60_000, bad_share=0.0,
                       duplicate_share=0.0, late_share=0.0)  # fmt: skip
    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True) as bar:
        task = bar.add_task("simulating and scoring", total=None)
        report = evaluate_journeys(config, progress=lambda n: bar.update(task, description=f"{n:,} events"))
    out = Console()
    out.print(f"journeys: {report.people:,} people, {report.events:,} events over {days} days (seed {seed})")
    out.print(f"churn: ROC AUC {report.auc:.3f} over {report.churned} people who really stopped; churn-risk flag on "
              f"{report.churn_flagged} (precision {report.churn_flag_precision:.2f})")  # fmt: skip
    out.print(f"store visit with open cart: fired for {report.offers_fired}/{report.journeys_consented} consenting "
              f"journeys ({report.offer_rate:.1%}); consent-denied journeys fired {report.offers_denied}, "
              f"signals to consent-denied people {report.signals_denied}")  # fmt: skip
    out.print("signals by type: " + ", ".join(f"{k} {v}" for k, v in report.signals_by_type.items())
              + f"; holdout share {report.holdout_share:.3f}")  # fmt: skip
    out.print(f"journey profile state: mean {report.profile_bytes_mean:.0f} B, max {report.profile_bytes_max} B "
              "per customer (without the open sessions)")  # fmt: skip
    if report.auc < MIN_AUC or report.offer_rate < MIN_OFFER_RATE or report.offers_denied or report.signals_denied:
        raise typer.Exit(1)


@evaluate_app.command("warehouse")
def warehouse(
    snapshot: Annotated[Path | None, typer.Option(help="Warehouse snapshot to check (default from settings)")] = None,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers")] = None,
    topic_prefix: Annotated[str | None, typer.Option(help="Topic prefix of the run")] = None,
) -> None:
    """Compare the warehouse with the batch reference computed from every canonical event of the run (sessions,
    transitions, signals, customer profiles, identity merges), row by row; print what differs, exit 1 if anything
    does. Processing-time columns (docs/time.md) are not compared. Run it once the pipeline has drained."""
    import duckdb

    from pipeline.evaluate.reference import reference
    from pipeline.evaluate.warehouse import compare
    from pipeline.topic_reader import iter_topic
    from schemas.codec import AvroCodec
    from schemas.from_settings import registry_from

    settings = _settings(bootstrap, topic_prefix)
    registry = registry_from(settings)
    codec = AvroCodec(registry)
    console = Console()
    path = snapshot or settings.snapshot_path or settings.state_dir / "warehouse.snapshot.duckdb"
    if not Path(path).exists():
        console.print(f"[red]no warehouse snapshot at {path}[/]")
        raise typer.Exit(2)
    with console.status("reading canonical events"):
        messages = iter_topic(settings.kafka_bootstrap, settings.topic("customer-events"))
        events: list[Any] = [codec.decode(m.value).record for m in messages]
    with console.status(f"computing the batch reference over {len(events):,} events"):
        ref = reference(events, reference_config(settings), codec)
    con = duckdb.connect(str(path), read_only=True)
    try:
        diffs = compare(con, ref, registry)
    finally:
        con.close()
    table = Table("table", "rows", "only in warehouse", "only in reference", "differing rows", "columns")
    for name, d in diffs.items():
        columns = sorted({c for cols in d.differing.values() for c in cols})
        table.add_row(name, f"{d.rows:,}", str(len(d.only_warehouse)), str(len(d.only_reference)),
                      str(len(d.differing)), ", ".join(columns))  # fmt: skip
    console.print(table)
    bad = {name: d for name, d in diffs.items() if not d.equal}
    for name, d in bad.items():
        for label, keys in (("only in warehouse", d.only_warehouse), ("only in reference", d.only_reference),
                            ("differing", list(d.differing))):  # fmt: skip
            if keys:
                console.print(f"{name} {label}: {', '.join(map(str, keys[:5]))}{' ...' if len(keys) > 5 else ''}")
    console.print("[green]the warehouse equals the batch reference[/]" if not bad
                  else f"[red]{len(bad)} tables differ from the batch reference[/]")  # fmt: skip
    if bad:
        raise typer.Exit(1)


def reference_config(settings: Settings) -> Any:
    """The batch reference's configuration from the settings the workers run with."""
    from pipeline.app import session_policy, signals_config
    from pipeline.domain.identity_rules import KINDS, IdentityPolicy
    from pipeline.evaluate.reference import ReferenceConfig

    limit = settings.identity_max_customers_per_identifier
    identity = IdentityPolicy({kind: limit for kind in KINDS if kind != "customer_id"})
    return ReferenceConfig(session_policy(settings), signals_config(settings), identity)
