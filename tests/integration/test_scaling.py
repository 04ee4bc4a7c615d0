"""Scaling on one host: three ``omnistream worker`` processes (worker ids 0-2: own ports, own state dirs) share
the partitions; one is stopped, the other two take its partitions over, and every event is still processed
exactly as the simulator's truth says."""

from __future__ import annotations

import re
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.drain import wait_drained, wait_group_stable
from tests.integration.pipeline_env import FAILURE_OUTCOMES, PipelineEnv, free_port
from tests.integration.processes import Proc, wait_until

CHANNELS = ("web", "mobile", "store", "social")
IDLE_S = 2
# The second world follows the first in event time: were it older, its events would be judged against the
# partitions' progress through the first world (docs/time.md) and many would be late beyond the allowed lateness.
# The first has no bad input: its "future" timestamps, days after its end, would not be in the future any more.
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
WORLDS = [
    ("--seed", "41", "--bad-share", "0", "--end", (NOW - timedelta(days=4)).isoformat()),
    ("--seed", "42", "--bad-share", "0.05", "--end", NOW.isoformat()),
]


def owned(port: int, topics: set[str]) -> set[tuple[str, str]]:
    """(topic, partition) pairs a worker reports owning (its consumer-lag series) for ``topics``."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    pairs = re.findall(r'omnistream_consumer_lag\{partition="(\d+)",topic="([^"]+)"\}', text)
    return {(t, p) for p, t in pairs if t in topics}


def test_three_workers_share_partitions_and_survive_losing_one(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = PipelineEnv.create(kafka_bootstrap, tmp_path, partitions=4)
    s = env.settings()
    inputs = {s.topic(c) for c in CHANNELS}
    every = {(t, str(p)) for t in inputs for p in range(4)}
    base = free_port()
    procs: dict[int, Proc] = {
        i: env.start_worker(
            f"worker-{i}",
            OMNISTREAM_WORKER_ID=str(i),
            OMNISTREAM_METRICS_PORT=str(base),
            OMNISTREAM_SOURCE_IDLE_S=str(IDLE_S),
        )
        for i in range(3)
    }
    truths: list[dict[str, Any]] = []
    try:
        # Partitions that move under traffic are re-read from their last commit and the replay is published again
        # (README, guarantees): this run hands over drained partitions only, so nothing may appear twice.
        wait_group_stable(s, 3)
        truths.append(env.simulate("--customers", "120", "--days", "3", *WORLDS[0]))
        wait_drained(s, quiet_s=3 * IDLE_S + 2, timeout_s=240, alive=lambda: all(p.alive() for p in procs.values()))
        shares: dict[int, set[tuple[str, str]]] = {}

        def shared_by_all() -> bool:
            # Right after start the group may still be rebalancing: wait for the settled assignment.
            shares.update({i: owned(base + i, inputs) for i in procs})
            return all(shares.values()) and sum(map(len, shares.values())) == len(every)

        wait_until(shared_by_all, 120, what="three workers each owning a share of the input partitions")
        print("3 workers:", {i: len(v) for i, v in shares.items()}, "input partitions each")
        assert set().union(*shares.values()) == every

        stopped = procs.pop(2)
        assert stopped.terminate() == 0, stopped.log_tail()

        def taken_over() -> bool:
            mine = [owned(base + i, inputs) for i in procs]
            return sum(map(len, mine)) == len(every) and set().union(*mine) == every

        wait_until(taken_over, 120, what="the two remaining workers own every input partition")
        print("2 workers:", {i: len(owned(base + i, inputs)) for i in procs}, "input partitions each")
        truths.append(env.simulate("--customers", "120", "--days", "3", *WORLDS[1]))
        wait_drained(s, quiet_s=3 * IDLE_S + 2, timeout_s=240, alive=lambda: all(p.alive() for p in procs.values()))
    finally:
        codes = [p.terminate() for p in procs.values()]
    assert codes == [0, 0], [p.log_tail() for p in procs.values()]

    summary = env.summary()
    want_failed: Counter[str] = Counter()
    for truth in truths:
        want_failed.update({o: n for o, n in truth["expected"]["per_outcome"].items() if o in FAILURE_OUTCOMES and n})
    assert summary.canonical_total == sum(t["expected"]["unique_valid_events"] for t in truths)
    assert max(summary.canonical_event_ids.values()) == 1, "no event published twice"
    assert +summary.failed_by_type == want_failed
