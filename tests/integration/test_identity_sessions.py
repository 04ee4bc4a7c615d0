"""Identity and unified sessions through the real broker: against truth, against a batch recomputation, and
the same with one worker as with two workers sharing four partitions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.app import session_policy
from pipeline.cli.evaluate import read_attribution, read_merges
from pipeline.domain.pii import Pseudonymiser
from pipeline.domain.sessions_batch import comparable, latest_versions
from pipeline.drain import wait_drained
from pipeline.evaluate.identity import evaluate_identity
from pipeline.evaluate.sessions import evaluate_sessions, version_from_record
from pipeline.identity.replica import AssignmentReplica
from pipeline.simulate import records as rec
from pipeline.simulate.messages import VALID, SimMessage
from pipeline.topic_reader import iter_topic
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from tests.integration.event_time_runs import IDLE_S, send
from tests.integration.pipeline_env import PipelineEnv
from tests.integration.processes import wait_until

END = datetime.now(UTC).replace(second=0, microsecond=0).isoformat()
SIM = ("--customers", "600", "--days", "14", "--seed", "21", "--end", END)
LATENESS_S = 30 * 86400


def _run(bootstrap: str, workdir: Path, workers: int) -> dict[str, Any]:
    # An allowed lateness beyond the simulated history: no session becomes final during the run, so identity merges
    # decided days after a session still join it, and the batch over the final attribution is exact (docs/time.md).
    env = PipelineEnv.create(bootstrap, workdir, allowed_lateness_s=LATENESS_S)
    extra = {"OMNISTREAM_SOURCE_IDLE_S": str(IDLE_S)}
    # The whole history is in Kafka before the workers start: with a 2 s idle timeout a live producer's pauses
    # would make partitions idle mid-stream, and what arrives after is the documented straggler case.
    truth = env.simulate(*SIM)
    procs = [env.start_worker(f"worker-{i}", OMNISTREAM_WORKER_ID=str(i), **extra) for i in range(workers)]
    try:
        wait_until(lambda: env.output_count() >= truth["expected"]["unique_valid_events"], 300, what="ingest")
        # Quiet for longer than the idle timeout: the last watermark moves once every partition is idle.
        wait_drained(env.settings(), quiet_s=3 * IDLE_S + 2, alive=lambda: all(p.alive() for p in procs))
    finally:
        codes = [p.terminate() for p in procs]
    assert codes == [0] * workers, [p.log_tail() for p in procs]
    s = env.settings()
    codec = AvroCodec(FileSchemaRegistry())
    replica = AssignmentReplica(bootstrap, s.topic("identity-assignments"))
    for m in iter_topic(bootstrap, s.topic("identity-assignments")):
        replica.apply(m.key or b"", m.value)
    events = [codec.decode(m.value).record for m in iter_topic(bootstrap, s.topic("customer-events"))]
    sessions = [codec.decode(m.value).record for m in iter_topic(bootstrap, s.topic("sessions"))]
    return {"settings": s, "truth": truth, "assignments": replica.assignments, "shared": replica.shared,
            "events": events, "sessions": sessions, "attribution": read_attribution(s, codec),
            "merges": read_merges(s, codec)}  # fmt: skip


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
    diff, n_stream, n_batch = evaluate_sessions(r["sessions"], r["events"], r["attribution"], policy, r["merges"])
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


def test_silent_customers_get_their_sessions_closed_by_the_watermark(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = PipelineEnv.create(kafka_bootstrap, tmp_path)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    end = (now - timedelta(hours=6)).isoformat()
    env.simulate("--customers", "150", "--days", "2", "--seed", "8", "--bad-share", "0", "--late-share", "0",
                 "--end", end)  # fmt: skip
    worker = env.start_worker(OMNISTREAM_SOURCE_IDLE_S=str(IDLE_S))
    codec = AvroCodec(FileSchemaRegistry())
    s = env.settings()

    def latest() -> list[Any]:
        records = [codec.decode(m.value).record for m in iter_topic(env.bootstrap, s.topic("sessions"))]
        return latest_versions(version_from_record(r) for r in records)

    try:
        wait_until(lambda: len(latest()) >= 5, 120, what="the simulated sessions")
        # The simulated customers are silent from here on; another customer's visit hours later moves the watermark
        # past every one of their sessions, so each is closed in event time.
        ids = rec.identifiers(anonymous_id="someone-else")
        later = rec.web(2, rec.envelope(str(uuid.uuid4()), int(now.timestamp() * 1000), ids, None), "page_view")
        t, event_id = later["envelope"]["event_time"], later["envelope"]["event_id"]
        send(env, [SimMessage("web", b"someone-else", VALID, "valid", t, event_id, "p-x", subject="web", version=2,
                              record=later)])  # fmt: skip

        def closed() -> bool:
            silent = [v for v in latest() if v.start_ms < t - 3 * 3600_000]
            return len(silent) >= 5 and all(v.status == "closed" for v in silent)

        wait_until(closed, 120, what="every silent customer's session closed")
    finally:
        assert worker.terminate() == 0, worker.log_tail()
