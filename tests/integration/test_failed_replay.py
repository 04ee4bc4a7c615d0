"""``omnistream failed``: a worker rejects valid events as too large; once the limit is fixed, `failed replay`
sends their originals back and they become canonical events. `list` and `replay --dry-run` agree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline.topic_reader import iter_topic
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from tests.integration.pipeline_env import PipelineEnv, expected_failed
from tests.integration.processes import wait_until


def _cli(env: PipelineEnv, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "pipeline", "failed", *args], env=env.env(), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def test_replay_after_a_fix_turns_failed_events_into_canonical_ones(kafka_bootstrap: str, tmp_path: Path) -> None:
    # Replayed events arrive after everything else on their partition: within the allowed lateness they count.
    env = PipelineEnv.create(kafka_bootstrap, tmp_path, allowed_lateness_s=30 * 86400.0)
    truth = env.simulate("--customers", "200", "--days", "5", "--seed", "23", "--bad-share", "0")
    want = int(truth["expected"]["unique_valid_events"]) + expected_failed(truth)
    strict = env.start_worker("strict", OMNISTREAM_MAX_EVENT_BYTES="180")  # a limit set too low: the cause
    try:
        env.wait_for_outputs(want, timeout_s=240, worker=strict)
    finally:
        assert strict.terminate() == 0, strict.log_tail()
    before = env.summary()
    too_large = before.failed_by_type["size_violation"]
    assert too_large > 20, "the low limit must reject a good share of the valid events"

    listed = json.loads(_cli(env, "list", "--type", "size_violation", "--format", "json").stdout)
    assert len(listed) == too_large and all(row["original"] == "sealed" for row in listed)
    dry = _cli(env, "replay", "--type", "size_violation", "--dry-run").stdout
    assert f"would replay {too_large} failed events" in dry
    shown = json.loads(_cli(env, "show", listed[0]["input"]).stdout)
    assert shown["rule"] == "too_large" and shown["original"]["envelope"]["event_id"]  # opened and decoded

    codec, settings = AvroCodec(FileSchemaRegistry()), env.settings()
    ids = {f"{m.topic}:{m.partition}:{m.offset}": codec.decode(m.value).record["envelope"]["event_id"]
           for t in settings.input_topics.values() for m in iter_topic(env.bootstrap, t)}  # fmt: skip
    fixed = env.start_worker("fixed")  # the default limit
    # The fixed worker also re-reads what the strict one consumed but had not committed: its canonical events
    # come again with the same ids, so what is waited for is the number of distinct ids. The input holds some
    # events twice (the simulator's upstream duplicates): both copies failed, one becomes canonical.
    rejected = {ids[row["input"]] for row in listed}  # rejected before decoding: the id is in the original
    assert len(rejected) <= too_large
    target = len(before.canonical_event_ids) + len(rejected)

    def all_canonical() -> bool:
        assert fixed.alive(), fixed.log_tail()
        return len(env.summary().canonical_event_ids) >= target

    try:
        assert f"replayed {too_large} failed events" in _cli(env, "replay", "--type", "size_violation").stdout
        wait_until(all_canonical, 240, 1.0, f"{target} distinct canonical events")
    finally:
        assert fixed.terminate() == 0, fixed.log_tail()
    after = env.summary()
    assert set(after.canonical_event_ids) == set(before.canonical_event_ids) | rejected, "each one became canonical"
    assert after.failed_by_type == before.failed_by_type  # nothing new failed
    print(f"failed replay: {too_large} size_violation events ({len(rejected)} distinct) replayed, now canonical")
