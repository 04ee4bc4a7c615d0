"""``omnistream privacy``: erase a person everywhere the pipeline keeps them; the erasure audit log.

The flow is in pipeline/privacy/erase.py; this module parses the request, prints the plan and the outcome.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from pipeline.cli.formats import OutputFormat, console_for
from pipeline.settings import Settings, load_settings

if TYPE_CHECKING:
    from pipeline.privacy.linklog import Message

privacy_app = typer.Typer(help="Erase a person (right to erasure); the audit log of erasures.", no_args_is_help=True)
KINDS_HELP = "customer_id, loyalty_id, email_hash, phone_hash, social_handle, device_id, anonymous_id"
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69


def _target(settings: Settings, customer_id: str | None, profile: str | None, email: str | None, phone: str | None,
            identifier: str | None) -> tuple[str | None, str | None]:  # fmt: skip
    """(node, profile) named by exactly one option; ``typer.BadParameter`` otherwise."""
    from pipeline.domain.identity_rules import KINDS
    from pipeline.domain.pii import Pseudonymiser

    given = [name for name, v in (("--customer-id", customer_id), ("--profile", profile), ("--email", email),
                                  ("--phone", phone), ("--identifier", identifier)) if v]  # fmt: skip
    if len(given) != 1:
        raise typer.BadParameter("name the person by exactly one of --customer-id, --profile, --email, --phone, "
                                 f"--identifier (got {', '.join(given) or 'none'})")  # fmt: skip
    pseudonymiser = Pseudonymiser(settings.pii_secret.get_secret_value().encode())
    if profile:
        return None, profile
    if customer_id:
        return f"customer_id:{customer_id}", None
    if email:
        digest = pseudonymiser.email(email)
        if digest is None:
            raise typer.BadParameter("not a usable e-mail address", param_hint="--email")
        return f"email_hash:{digest}", None
    if phone:
        digest = pseudonymiser.phone(phone)
        if digest is None:
            raise typer.BadParameter("not a valid phone number (E.164, or national with the default region)",
                                     param_hint="--phone")  # fmt: skip
        return f"phone_hash:{digest}", None
    kind, _, value = (identifier or "").partition(":")
    if kind not in KINDS or not value:
        raise typer.BadParameter(f"TYPE:VALUE with TYPE one of {KINDS_HELP}", param_hint="--identifier")
    return f"{kind}:{value}", None


def erase(
    customer_id: Annotated[str | None, typer.Option(help="The person's login / CRM customer id")] = None,
    profile: Annotated[
        str | None, typer.Option(help="A profile id as the warehouse shows it (customer_id column)")
    ] = None,
    email: Annotated[str | None, typer.Option(help="An e-mail address of the person")] = None,
    phone: Annotated[str | None, typer.Option(help="A phone number of the person")] = None,
    identifier: Annotated[str | None, typer.Option(help=f"TYPE:VALUE, TYPE one of {KINDS_HELP}")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; change nothing")] = False,
    request_id: Annotated[str | None, typer.Option(help="Your reference for the request (default: a new UUID)")] = None,
    wait: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for the warehouse's part (0: do not wait)")
    ] = 120.0,
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json")] = OutputFormat.table,
    snapshot: Annotated[
        Path | None,
        typer.Option(
            help="The sink's snapshot, to confirm the warehouse's part "
            "(default: warehouse.snapshot.duckdb in the state dir)"
        ),
    ] = None,
) -> None:
    """Erase one person: resolve them through the identity graph (every merged profile and identifier), put them
    on the suppression list, and remove them from the identity graph and its log, the journey state, the failed
    events and (through the sink) every warehouse table and the next snapshot. Idempotent. docs/privacy.md says
    what erasure cannot reach (raw channel topics until their retention, backups, exports listed here)."""
    from pipeline.cli.sink import warehouse_snapshot_path
    from pipeline.privacy import erase as flow

    if output is OutputFormat.csv:
        raise typer.BadParameter("erase prints a table or json", param_hint="--format")
    settings = load_settings()
    node, named_profile = _target(settings, customer_id, profile, email, phone, identifier)
    request = request_id or str(uuid.uuid4())
    console = console_for()
    context = _Context(settings)
    try:
        plan = flow.plan(request, node, named_profile, context.topics, context.read, context.codec, context.tokens,
                         context.quarantine, context.pseudonymiser)  # fmt: skip
    except ValueError as error:
        console.print(f"[red]cannot erase[/]: {error}")
        raise typer.Exit(EXIT_USAGE) from error
    except (TimeoutError, OSError) as error:
        console.print(f"[red]Kafka unavailable[/]: {error}")
        raise typer.Exit(EXIT_UNAVAILABLE) from error
    exports = _exports(settings)
    result: dict[str, Any] = {"request": request, "dry_run": dry_run, "already_erased": plan.already,
                              **plan.counts(), "shared_identifiers_kept": len(plan.person.shared),
                              "failed_events_by_reference": plan.failed_by_reference,
                              "failed_events_unreadable": plan.failed_unreadable,
                              "link_bundles_not_replaceable": plan.old_links,
                              "exports_to_delete": [str(p) for p in exports]}  # fmt: skip
    if not dry_run:
        flow.execute(plan, context.topics, context.produce, context.codec, context.tokens, int(time.time() * 1000))
        context.close()
        published = snapshot or warehouse_snapshot_path(settings)
        result["warehouse_rows_deleted"] = _await_warehouse(published, request, wait, console)
    if output is OutputFormat.json:
        console.print_json(json.dumps(result))
        return
    _print(console, result)


def audit(
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json")] = OutputFormat.table,
) -> None:
    """The erasure audit log: one record per request (when, counts); no identifier or profile id."""
    if output is OutputFormat.csv:
        raise typer.BadParameter("audit prints a table or json", param_hint="--format")
    settings = load_settings()
    context = _Context(settings)
    records = [json.loads(v) for _o, _k, v, _r in context.read(context.topics.audit) if v]
    console = console_for()
    if output is OutputFormat.json:
        console.print_json(json.dumps(records))
        return
    table = Table("request", "at (UTC)", "profiles", "identifiers", "link bundles", "journey", "failed", "repeat")
    for r in records:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["at"] / 1000))
        table.add_row(r["request"], at, *(str(r.get(k, 0)) for k in ("profiles", "identifiers", "link_bundles",
                                                                      "journey_records", "failed_events")),
                      "yes" if r.get("already_erased") else "")  # fmt: skip
    console.print(table if records else "no erasure on record")


privacy_app.command()(erase)
privacy_app.command()(audit)


class _Context:
    """Kafka, codec and keys for one command."""

    def __init__(self, settings: Settings) -> None:
        from pipeline.domain.pii import Pseudonymiser
        from pipeline.domain.quarantine import Quarantine
        from pipeline.privacy.erase import Topics
        from pipeline.privacy.tokens import Tokens
        from pipeline.security import settings_client_config
        from pipeline.topics import journey_state_spec
        from schemas.codec import AvroCodec
        from schemas.from_settings import registry_from

        secret = settings.pii_secret.get_secret_value().encode()
        t = settings.topic
        self.settings = settings
        self.client = settings_client_config(settings)
        self.topics = Topics(t("privacy-suppressions"), t("identity-links"), t("identity-assignments"),
                             t("identity-merges"), journey_state_spec(settings).name, t("resolved-events"),
                             t("failed-events"), t("privacy-audit"))  # fmt: skip
        self.codec = AvroCodec(registry_from(settings))
        self.tokens = Tokens(secret)
        self.quarantine = Quarantine(secret)
        self.pseudonymiser = Pseudonymiser(secret)
        self._producer: Any = None

    def read(self, topic: str) -> Iterator[Message]:
        from pipeline.privacy.linklog import replaces
        from pipeline.topic_reader import iter_topic

        try:
            for m in iter_topic(self.settings.kafka_bootstrap, topic, timeout_s=120, client_config=self.client):
                yield m.offset, m.key, m.value, replaces(m.headers)
        except LookupError:  # a deployment that never created the topic holds nothing there
            return

    def produce(self, topic: str, messages: list[tuple[bytes, bytes | None]],
                headers: list[list[tuple[str, bytes]]] | None) -> None:  # fmt: skip
        from kafka import KafkaProducer

        if not messages:
            return
        if self._producer is None:
            self._producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap.split(","), acks="all",
                                           **self.client)  # fmt: skip
        futures = [self._producer.send(topic, key=k, value=v, headers=(headers[i] if headers else None) or None)
                   for i, (k, v) in enumerate(messages)]  # fmt: skip
        self._producer.flush()
        for f in futures:
            f.get(timeout=60)  # raises if the broker refused one: the request is then incomplete, run it again

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()


def _exports(settings: Settings) -> list[Path]:
    """Parquet exports written before now (``omnistream export parquet`` records each one): they may hold the
    person and are the operator's to delete."""
    log = Path(settings.state_dir) / "exports.jsonl"
    if not log.is_file():
        return []
    paths = [Path(json.loads(line)["path"]) for line in log.read_text().splitlines() if line.strip()]
    return sorted({p for p in paths if p.exists()})


def _await_warehouse(snapshot: Path, request: str, wait_s: float, console: Any) -> dict[str, int] | None:
    from pipeline.privacy.erase import warehouse_rows

    deadline = time.monotonic() + wait_s
    with console.status("waiting for the sink to apply the erasure and publish a snapshot"):
        while True:
            rows = warehouse_rows(snapshot, request)
            if rows is not None or time.monotonic() >= deadline:
                return rows
            time.sleep(1.0)


def _print(console: Any, result: dict[str, Any]) -> None:
    verb = "would remove" if result["dry_run"] else "removed"
    table = Table("what", verb)
    for key in ("profiles", "identifiers", "link_bundles", "assignments", "journey_records", "failed_events"):
        table.add_row(key.replace("_", " "), f"{result[key]:,}")
    console.print(f"erasure request [bold]{result['request']}[/]" + (" (already erased before)" if
                                                                       result["already_erased"] else ""))  # fmt: skip
    console.print(table)
    if result["shared_identifiers_kept"]:
        console.print(f"{result['shared_identifiers_kept']} identifier(s) shared with other customers were kept "
                      "(they name others too)")  # fmt: skip
    if result["failed_events_by_reference"]:
        console.print(f"{result['failed_events_by_reference']} failed event(s) keep their original only in the input "
                      "topic; they go with its retention")  # fmt: skip
    if result["failed_events_unreadable"]:
        console.print(
            f"[yellow]{result['failed_events_unreadable']} failed event(s) are sealed under another secret "
            "(before a rotation) and cannot be attributed; delete them with the old deployment[/]"
        )
    if result["link_bundles_not_replaceable"]:
        console.print(
            f"[yellow]{result['link_bundles_not_replaceable']} link message(s) written before links had "
            "keys of their own hold the person; they are ignored by every replay, but stay on disk[/]"
        )
    if "warehouse_rows_deleted" in result:
        rows = result["warehouse_rows_deleted"]
        if rows is None:
            console.print("[yellow]the sink has not applied the erasure yet (is it running?); it will when it "
                          "reads the suppression list. Run the same command again to check.[/]")  # fmt: skip
        else:
            console.print("warehouse rows deleted: " + ", ".join(f"{t} {n:,}" for t, n in sorted(rows.items())))
    for path in result["exports_to_delete"]:
        console.print(f"[yellow]delete or re-export[/] {path}: written before this erasure")
