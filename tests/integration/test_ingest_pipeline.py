"""Ingest through the real broker: every consumed input ends in exactly one place, typed, without raw PII."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipeline.domain.pii import normalise_phone
from pipeline.topic_reader import iter_topic
from pipeline.topics import topic_specs
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from tests.integration.pipeline_env import PipelineEnv, expected_failed

Ref = tuple[str, int, int]


@pytest.fixture(scope="module", params=["batch", "stream"])
def run(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> dict[str, Any]:
    """One simulated run with 10% bad input, processed by one worker to completion; the channel topics reach
    ingest by batch delivery (the default) or through Faust's per-event streams (the previous design, which
    make bench measures against)."""
    env = PipelineEnv.create(kafka_bootstrap, tmp_path_factory.mktemp("ingest"))
    truth = env.simulate("--customers", "300", "--days", "10", "--seed", "11", "--bad-share", "0.1")
    worker = env.start_worker(OMNISTREAM_INPUT_DELIVERY=request.param)
    try:
        want = int(truth["expected"]["unique_valid_events"]) + expected_failed(truth)
        env.wait_for_outputs(want, timeout_s=240, worker=worker)
    finally:
        code = worker.terminate()
    assert code == 0, worker.log_tail()
    return {"env": env, "truth": truth}


def _read(env: PipelineEnv, logical: str) -> list[Any]:
    return list(iter_topic(env.bootstrap, env.settings().topic(logical)))


def test_every_input_is_in_exactly_one_output(run: dict[str, Any]) -> None:
    env: PipelineEnv = run["env"]
    truth = run["truth"]
    codec = AvroCodec(FileSchemaRegistry())
    inputs: dict[Ref, bytes] = {}
    for channel in ("web", "mobile", "store", "social"):
        for m in _read(env, channel):
            inputs[(m.topic, m.partition, m.offset)] = m.value
    assert len(inputs) == truth["expected"]["messages"]

    canonical = [codec.decode(m.value).record for m in _read(env, "customer-events")]
    failed = [codec.decode(m.value).record for m in _read(env, "failed-events")]
    failed = [r for r in failed if r["processor"].startswith("ingest/")]
    canonical_refs = Counter((r["source_topic"], r["source_partition"], r["source_offset"]) for r in canonical)
    failed_refs = Counter((r["source_topic"], r["source_partition"], r["source_offset"]) for r in failed)
    assert max(canonical_refs.values()) == 1 and max(failed_refs.values()) == 1
    assert not set(canonical_refs) & set(failed_refs)
    assert set(canonical_refs) | set(failed_refs) <= set(inputs)

    # What is in neither output must be exactly the duplicates, each a re-send of a published event.
    dropped = set(inputs) - set(canonical_refs) - set(failed_refs)
    assert len(dropped) == truth["expected"]["duplicates"]
    published_ids = Counter(r["event_id"] for r in canonical)
    assert max(published_ids.values()) == 1
    assert len(published_ids) == truth["expected"]["unique_valid_events"]
    for ref in dropped:
        assert codec.decode(inputs[ref]).record["envelope"]["event_id"] in published_ids


def test_each_failure_is_typed_as_expected(run: dict[str, Any]) -> None:
    env: PipelineEnv = run["env"]
    truth = run["truth"]
    codec = AvroCodec(FileSchemaRegistry())
    got = Counter(
        (r["source_topic"], r["failure_type"])
        for r in (codec.decode(m.value).record for m in _read(env, "failed-events"))
        if r["processor"].startswith("ingest/")  # later stages report their own failures (late for a session)
    )
    want = Counter(
        {
            (topic, outcome): n
            for topic, outcomes in truth["expected"]["per_topic_outcome"].items()
            for outcome, n in outcomes.items()
            if outcome not in ("valid", "duplicate")
        }
    )
    assert got == want
    assert len(want) >= 5, "the run should exercise most failure types"


def test_no_raw_email_or_phone_downstream_of_ingest(run: dict[str, Any]) -> None:
    env: PipelineEnv = run["env"]
    needles: set[bytes] = set()
    for key in run["truth"]["identifiers"]:
        kind, _, raw = key.partition(":")
        if kind == "email":
            needles |= {raw.encode(), raw.strip().lower().encode()}
        elif kind == "phone":
            needles.add(raw.encode())
            e164 = normalise_phone(raw)
            if e164:
                needles.add(e164.encode())
    assert len(needles) > 50
    settings = env.settings()
    outputs = [spec.name for spec in topic_specs(settings) if spec.name not in settings.input_topics.values()]
    outputs.append(f"{settings.app_id}-journey-changelog")
    blobs: list[bytes] = []
    for topic in outputs:
        for m in iter_topic(env.bootstrap, topic):
            blobs += [b for b in (m.key, m.value) if b]
    assert len(blobs) > 1000, "the outputs must have been read"
    state = env.workdir / "state"  # the worker's OMNISTREAM_STATE_DIR (pipeline_env.py)
    files = [env.workdir / "worker.log", *(p for p in state.rglob("*") if p.is_file())]
    assert files[0].stat().st_size > 0  # the state directory may hold nothing: the journey store is in memory
    blobs += [f.read_bytes() for f in files]
    leaks = [n for n in needles for b in blobs if n in b]
    assert leaks == [], f"raw identifiers in {len(outputs)} output topics, the log or the state directory"


def test_worker_log_has_no_tracebacks(run: dict[str, Any]) -> None:
    env: PipelineEnv = run["env"]
    log = Path(env.workdir / "worker.log").read_text(errors="replace")
    assert "Traceback" not in log
