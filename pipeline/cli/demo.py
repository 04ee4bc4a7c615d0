"""``omnistream demo``: the main job end to end on the local broker, with a summary of what arrived."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.cli.children import start_child, stop_child
from pipeline.cli.demo_warehouse import run_warehouse
from pipeline.domain.records import FailureType
from pipeline.kafka_local import LocalKafkaError, delete_topics, list_topics, start_broker, stop_broker
from pipeline.settings import Settings, load_settings
from pipeline.simulate.truth import expected_for
from pipeline.summary import OutputSummary, summarise
from pipeline.topic_reader import topic_end_total
from pipeline.topics import ensure_pipeline_topics, topic_specs
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry

FAILURE_OUTCOMES = tuple(t.value for t in FailureType)


def demo(
    customers: Annotated[int, typer.Option(min=1, help="Simulated people")] = 500,
    days: Annotated[int, typer.Option(min=1, help="Simulated days of history")] = 14,
    seed: Annotated[int, typer.Option(help="Simulation seed")] = 7,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the worker to process everything")] = 300.0,
    keep_broker: Annotated[bool, typer.Option(help="Leave the local broker running afterwards")] = False,
    keep_topics: Annotated[bool, typer.Option(help="Leave the demo's topics on the broker afterwards")] = False,
) -> None:
    """Run the main job end to end on the local broker and check that every input is accounted for.

    Starts the local broker and a worker, simulates traffic, waits until every input is accounted for, prints
    counts per channel and per failure type, identity and sessions against truth, then runs the warehouse sink
    and prints the marketing report (HTML beside it), and stops everything cleanly. Exit 1 if anything is
    missing."""
    console = Console()
    run = time.strftime("%Y%m%d%H%M%S")
    settings = load_settings(topic_prefix="demo.", app_id=f"omnistream-demo-{run}")
    workdir = Path(settings.state_dir) / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    truth_path = workdir / "truth.json"

    console.rule("[bold]omnistream demo")
    try:
        result = start_broker(settings, report=lambda msg: console.print(f"  [dim]{msg}[/]"))
    except LocalKafkaError as exc:
        console.print(f"[red]{exc.message}[/]")
        raise typer.Exit(1) from exc
    console.print(f"broker ready at {result.bootstrap} ({result.seconds:.1f}s)")
    bootstrap = result.bootstrap
    topics = [spec.name for spec in topic_specs(settings)]
    delete_topics(bootstrap, topics)
    ensure_pipeline_topics(settings, bootstrap)
    console.print(f"fresh topics: {', '.join(topics)}")

    end_ms = int(time.time() * 1000) // 60_000 * 60_000
    model_path = workdir / "model.json"
    from pipeline.cli.demo_model import fit_demo_model  # scipy: only when the demo runs

    fit_demo_model(console, customers, days, seed, end_ms, model_path)
    env = {
        **os.environ,
        "OMNISTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "OMNISTREAM_APP_ID": settings.app_id,
        "OMNISTREAM_MODEL_PARAMS_PATH": str(model_path),
        "OMNISTREAM_DEVELOPMENT": "1",  # a local trial: the built-in PII secret is allowed unless one is set
    }
    worker_log = workdir / "worker.log"
    worker = start_child("worker", env, worker_log)
    console.print(f"worker started (pid {worker.pid}, log {worker_log})")
    exit_code = 0
    try:
        console.print("[bold]simulating traffic[/]")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline",
                "simulate",
                "--customers",
                str(customers),
                "--days",
                str(days),
                "--seed",
                str(seed),
                "--end",
                datetime.fromtimestamp(end_ms / 1000, UTC).isoformat(),
                "--truth",
                str(truth_path),
            ],
            env=env,
            check=True,
        )
        expected = expected_for(json.loads(truth_path.read_text()), int(settings.allowed_lateness_s * 1000))
        want_canonical = int(expected["unique_valid_events"])
        want_failed = sum(int(expected["per_outcome"].get(o, 0)) for o in FAILURE_OUTCOMES)
        _wait_for_outputs(console, settings, bootstrap, want_canonical + want_failed, worker, timeout)
        summary = summarise(
            bootstrap,
            settings.topic("customer-events"),
            settings.topic("failed-events"),
            AvroCodec(FileSchemaRegistry()),
        )
        exit_code = _report(console, summary, expected, want_canonical, want_failed)
        if not _wait_drained(console, settings, bootstrap, worker, timeout):
            exit_code = 1
        exit_code |= _journeys(console, settings, truth_path)
        exit_code |= run_warehouse(console, settings.model_copy(update={"kafka_bootstrap": bootstrap}), env, workdir,
                                   timeout)  # fmt: skip
    finally:
        code = stop_child(worker)
        console.print(f"worker stopped with exit code {code} (log: {worker_log})")
        if not keep_topics:
            _delete_demo_topics(console, bootstrap, topics, settings.app_id)
        if not keep_broker and result.started:
            stop_broker(settings)
            console.print("broker stopped")
    if code != 0:
        exit_code = 1
    raise typer.Exit(exit_code)


def _delete_demo_topics(console: Console, bootstrap: str, topics: list[str], app_id: str) -> None:
    """The demo's topics and the worker's internal ones (named after this run's app id): a broker used for
    several demos would otherwise keep every run's topics."""
    try:
        internal = [t for t in list_topics(bootstrap) if t.startswith(f"{app_id}-")]
        deleted = delete_topics(bootstrap, [*topics, *internal])
    except LocalKafkaError as exc:
        console.print(f"[yellow]could not delete the demo topics: {exc.message}[/]")
        return
    console.print(f"deleted {len(deleted)} demo topics (--keep-topics keeps them)")


def _wait_for_outputs(
    console: Console,
    settings: Settings,
    bootstrap: str,
    want: int,
    worker: subprocess.Popen[bytes],
    timeout: float,
) -> None:
    topics = (settings.topic("customer-events"), settings.topic("failed-events"))
    columns = (TextColumn("processing"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
    deadline = time.monotonic() + timeout
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("outputs", total=want)
        while True:
            have = sum(topic_end_total(bootstrap, t) for t in topics)
            progress.update(task, completed=have)
            if have >= want or worker.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    if worker.poll() is not None:
        console.print(f"[red]worker exited early with code {worker.returncode}[/]")


def _wait_drained(
    console: Console, settings: Settings, bootstrap: str, worker: subprocess.Popen[bytes], timeout: float
) -> bool:
    """Wait until the worker group has consumed everything and identity and sessions stopped producing."""
    from pipeline.drain import wait_drained

    with console.status("identity and sessions catching up") as status:
        try:
            wait_drained(
                settings,
                bootstrap=bootstrap,
                timeout_s=timeout,
                alive=lambda: worker.poll() is None,
                on_progress=lambda lag: status.update(f"identity and sessions catching up: {lag} messages behind"),
            )
        except (TimeoutError, RuntimeError) as exc:
            console.print(f"[red]{exc}[/]")
            return False
    return True


def _journeys(console: Console, settings: Settings, truth_path: Path) -> int:
    from pipeline.cli.evaluate import MIN_PRECISION, MIN_RECALL, _read_state, read_session_attribution
    from pipeline.domain.pii import Pseudonymiser
    from pipeline.evaluate.identity import evaluate_identity
    from pipeline.evaluate.sessions import evaluate_sessions
    from pipeline.journey_summary import summarise_journeys

    codec = AvroCodec(FileSchemaRegistry())
    js = summarise_journeys(settings, codec)
    paths = Table(title="unified sessions: top channel paths")
    paths.add_column("path")
    paths.add_column("sessions", justify="right")
    for path, n in js.top_paths:
        paths.add_row(path, str(n))
    console.print(paths)
    console.print(
        f"sessions: {js.sessions} ({js.cross_channel} cross-channel) over {js.profiles} resolved customers; "
        f"identity merges: {js.merges}"
    )
    assignments, shared, events = _read_state(settings)
    secret = settings.pii_secret.get_secret_value().encode()
    truth = json.loads(truth_path.read_text())
    ident = evaluate_identity(events, assignments, shared, truth, Pseudonymiser(secret)).scores
    policy = _session_policy(settings)
    att = read_session_attribution(settings, codec, events, policy)
    diff, n_stream, n_batch = evaluate_sessions(
        _session_records(settings, codec), events, att.final, policy, att.merges, att.apart
    )
    ok = ident.precision >= MIN_PRECISION and ident.recall >= MIN_RECALL and diff.differing == 0
    console.print(
        f"identity vs truth: precision {ident.precision:.3f}, recall {ident.recall:.3f}; "
        f"sessions vs batch recomputation: {diff.differing} of {n_stream} differ ({n_batch} recomputed)"
    )
    return 0 if ok else 1


def _session_records(settings: Settings, codec: AvroCodec) -> list[Any]:
    from pipeline.topic_reader import iter_topic

    return [codec.decode(m.value).record for m in iter_topic(settings.kafka_bootstrap, settings.topic("sessions"))]


def _report(
    console: Console, summary: OutputSummary, expected: dict[str, Any], want_canonical: int, want_failed: int
) -> int:
    by_channel = Table(title="canonical events per channel")
    by_channel.add_column("channel")
    by_channel.add_column("events", justify="right")
    for channel, n in sorted(summary.canonical_by_channel.items()):
        by_channel.add_row(channel, str(n))
    by_channel.add_row("[bold]total", f"[bold]{summary.canonical_total}")
    console.print(by_channel)

    failures = Table(title="failed events per failure type")
    failures.add_column("failure type")
    failures.add_column("got", justify="right")
    failures.add_column("expected", justify="right")
    for outcome in FAILURE_OUTCOMES:
        got, want = summary.failed_by_type.get(outcome, 0), int(expected["per_outcome"].get(outcome, 0))
        if got or want:
            style = "" if got == want else "[red]"
            failures.add_row(outcome, f"{style}{got}", str(want))
    console.print(failures)
    dups = int(expected.get("duplicates", 0))
    console.print(
        f"inputs: {expected['messages']}  canonical: {summary.canonical_total}/{want_canonical}  "
        f"failed: {summary.failed_total}/{want_failed}  duplicates dropped: {dups}  "
        f"upstream duplicates published: {summary.dedup_misses}"
    )
    again = summary.republished + summary.failed_republished
    if again:  # at-least-once: not a loss or a duplicate anywhere that counts (README, guarantees)
        console.print(f"{again} output(s) published again from the same input message after a re-read "
                      "(at-least-once delivery; the journey and the warehouse keep one copy)")  # fmt: skip
    ok = (
        summary.canonical_total - summary.republished == want_canonical
        and summary.failed_total == want_failed
        and summary.dedup_misses == 0
    )
    console.print("[green bold]every input accounted for[/]" if ok else "[red bold]outputs do not match the inputs[/]")
    return 0 if ok else 1


def _session_policy(settings: Settings) -> Any:
    from pipeline.app import session_policy  # the worker's whole app: imported only when the demo runs

    return session_policy(settings)
