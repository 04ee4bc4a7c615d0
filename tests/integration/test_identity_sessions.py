"""Identity and unified sessions through the real broker: against truth, against a batch recomputation, and
the same with one worker as with two workers sharing four partitions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.app import session_policy
from pipeline.cli.evaluate import read_attribution
from pipeline.domain.pii import Pseudonymiser
from pipeline.domain.sessions_batch import comparable, latest_versions
from pipeline.drain import wait_drained, wait_group_stable
from pipeline.evaluate.identity import evaluate_identity
from pipeline.evaluate.sessions import evaluate_sessions, version_from_record
from pipeline.identity.replica import AssignmentReplica
from pipeline.topic_reader import iter_topic
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from tests.integration.pipeline_env import PipelineEnv
from tests.integration.processes import wait_until

GRACE_S = str(60 * 86400)  # the simulated history is replayed at once: any arrival order must still place
END = datetime.now(UTC).replace(second=0, microsecond=0).isoformat()
SIM = ("--customers", "600", "--days", "14", "--seed", "21", "--end", END)


def _run(bootstrap: str, workdir: Path, workers: int) -> dict[str, Any]:
    env = PipelineEnv.create(bootstrap, workdir)
    extra = {"OMNISTREAM_SESSION_GRACE_S": GRACE_S, "OMNISTREAM_SWEEP_INTERVAL_S": "5"}
    procs = [env.start_worker(f"worker-{i}", OMNISTREAM_WORKER_ID=str(i), **extra) for i in range(workers)]
    try:
        # Partitions handed over mid-stream leave committed offsets behind (README, scaling): compare steady states.
        wait_group_stable(env.settings(), workers)
        truth = env.simulate(*SIM)
        wait_until(lambda: env.output_count() >= truth["expected"]["unique_valid_events"], 300, what="ingest")
        wait_drained(env.settings(), quiet_s=5, alive=lambda: all(p.alive() for p in procs))
    finally:
        codes = [p.terminate() for p in procs]
    assert codes == [0] * workers, [p.log_tail() for p in procs]
    s = env.settings().model_copy(update={"session_grace_s": float(GRACE_S)})
    codec = AvroCodec(FileSchemaRegistry())
    replica = AssignmentReplica(bootstrap, s.topic("identity-assignments"))
    for m in iter_topic(bootstrap, s.topic("identity-assignments")):
        replica.apply(m.key or b"", m.value)
    events = [codec.decode(m.value).record for m in iter_topic(bootstrap, s.topic("customer-events"))]
    sessions = [codec.decode(m.value).record for m in iter_topic(bootstrap, s.topic("sessions"))]
    return {"settings": s, "truth": truth, "assignments": replica.assignments, "shared": replica.shared,
            "events": events, "sessions": sessions, "attribution": read_attribution(s, codec)}  # fmt: skip


@pytest.fixture(scope="module")
def one_worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run(kafka_bootstrap, tmp_path_factory.mktemp("one"), workers=1)


@pytest.fixture(scope="module")
def two_workers(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run(kafka_bootstrap, tmp_path_factory.mktemp("two"), workers=2)


def test_identity_matches_truth(one_worker: dict[str, Any]) -> None:
    r = one_worker
    secret = r["settings"].pii_secret.get_secret_value().encode()
    report = evaluate_identity(r["events"], r["assignments"], r["shared"], r["truth"], Pseudonymiser(secret))
    print(f"identity: precision {report.scores.precision:.4f} recall {report.scores.recall:.4f} "
          f"over {report.scores.nodes} identifiers")  # fmt: skip
    assert report.scores.precision >= 0.99
    assert report.scores.recall >= 0.95
    # Kiosks used by several people are detected as shared and never join them.
    kiosks = [k for k, v in r["truth"]["shared_identifier_users"].items()
              if v["kind"] == "store_kiosk" and len(v["person_ids"]) > 1]  # fmt: skip
    assert kiosks and all(k in r["shared"] or k not in r["assignments"] for k in kiosks)


@pytest.mark.parametrize("run", ["one_worker", "two_workers"])
def test_sessions_equal_batch_recomputation(run: str, request: pytest.FixtureRequest) -> None:
    r = request.getfixturevalue(run)
    policy = session_policy(r["settings"])
    diff, n_stream, n_batch = evaluate_sessions(r["sessions"], r["events"], r["attribution"], policy)
    print(f"sessions: {n_stream} streamed, {n_batch} batch, {diff.differing} differ")
    assert n_stream > 100
    assert len(r["attribution"]) == r["truth"]["expected"]["unique_valid_events"], "every event attributed"
    assert diff.differing == 0 and not diff.only_batch, f"stream: {diff.only_stream[:2]} batch: {diff.only_batch[:2]}"


def test_two_workers_give_the_same_results(one_worker: dict[str, Any], two_workers: dict[str, Any]) -> None:
    for field in ("per_kind", "per_outcome", "unique_valid_events", "duplicates"):
        assert one_worker["truth"]["expected"][field] == two_workers["truth"]["expected"][field]

    def partition(r: dict[str, Any]) -> set[frozenset[str]]:
        groups: dict[str, set[str]] = {}
        for node, profile in r["assignments"].items():
            groups.setdefault(profile, set()).add(node)
        return {frozenset(g) for g in groups.values()}

    assert partition(one_worker) == partition(two_workers)
    assert one_worker["shared"] == two_workers["shared"]

    def sessions(r: dict[str, Any]) -> list[Any]:
        return sorted(map(comparable, latest_versions(version_from_record(x) for x in r["sessions"])), key=repr)

    one, two = sessions(one_worker), sessions(two_workers)
    only_one, only_two = set(one) - set(two), set(two) - set(one)
    assert one == two, (
        f"{len(only_one)} only with one worker, e.g. {sorted(only_one, key=repr)[:2]}; "
        f"{len(only_two)} only with two, e.g. {sorted(only_two, key=repr)[:2]}"
    )
    assert len(sessions(one_worker)) > 100


def test_silent_customers_get_their_sessions_closed_by_the_sweep(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = PipelineEnv.create(kafka_bootstrap, tmp_path)
    env.simulate("--customers", "40", "--days", "1", "--seed", "8", "--bad-share", "0")
    worker = env.start_worker(OMNISTREAM_SESSION_IDLE_CLOSE_S="2", OMNISTREAM_SWEEP_INTERVAL_S="1")
    codec = AvroCodec(FileSchemaRegistry())
    s = env.settings()

    def all_closed() -> bool:
        records = [codec.decode(m.value).record for m in iter_topic(env.bootstrap, s.topic("sessions"))]
        latest = latest_versions(version_from_record(r) for r in records)
        return bool(latest) and all(v.status == "closed" for v in latest)

    try:
        # No event arrives after the simulation: only the processing-time sweep can close the last sessions.
        wait_until(all_closed, 120, what="every session closed by the sweep")
    finally:
        assert worker.terminate() == 0, worker.log_tail()
