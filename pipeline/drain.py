"""Has the pipeline caught up? Consumer-group lag over the topics the workers consume.

"No output for a few seconds" is not a drain criterion: a rebalance or a table recovery can pause every output
longer than any fixed quiet period. The pipeline has drained when the workers' consumer group has committed
the end offset of every partition it consumes and the outputs have stopped growing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import RetriableError

from pipeline.security import settings_client_config
from pipeline.settings import CHANNELS, Settings
from pipeline.topic_reader import topic_end_total

CONSUMED = (*CHANNELS, "identity-links", "resolved-events")
OUTPUTS = ("customer-events", "failed-events", "resolved-events", "sessions", "identity-assignments")


def group_lag(
    bootstrap: str, group_id: str, topics: Sequence[str], client_config: Mapping[str, Any] | None = None
) -> int:
    """Messages in ``topics`` not yet committed by ``group_id`` (a partition never committed counts whole)."""
    extra = dict(client_config or {})
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), **extra)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False, **extra)
    try:
        offsets = admin.list_group_offsets({group_id: None}).get(group_id, {})
        committed = {tp: meta.offset for tp, meta in offsets.items()}
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = consumer.end_offsets(tps) if tps else {}
        return int(sum(max(0, end - max(committed.get(tp, 0), 0)) for tp, end in ends.items()))
    finally:
        consumer.close()
        admin.close()


def wait_drained(
    settings: Settings,
    *,
    bootstrap: str | None = None,
    quiet_s: float = 3.0,
    timeout_s: float = 300.0,
    alive: Callable[[], bool] = lambda: True,
    on_progress: Callable[[int], None] = lambda lag: None,
) -> None:
    """Block until the worker group has no lag and the outputs have not grown for ``quiet_s``.

    Raises ``TimeoutError`` after ``timeout_s`` and ``RuntimeError`` when ``alive()`` turns false.
    """
    bootstrap = bootstrap or settings.kafka_bootstrap
    client = settings_client_config(settings)
    consumed = [settings.topic(t) for t in CONSUMED]
    outputs = [settings.topic(t) for t in OUTPUTS]
    deadline = time.monotonic() + timeout_s
    last: list[int] = []
    stable_since = time.monotonic()
    lag = -1
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("a worker exited while waiting for the pipeline to drain")
        try:
            lag = group_lag(bootstrap, settings.app_id, consumed, client)
        except RetriableError:  # a broker that just started has no group coordinator yet
            time.sleep(0.5)
            continue
        on_progress(lag)
        now = [topic_end_total(bootstrap, t, client) for t in outputs]
        if lag or now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= quiet_s:
            return
        time.sleep(0.5)
    raise TimeoutError(f"pipeline did not drain within {timeout_s:.0f}s (group lag {lag})")


def wait_group_stable(settings: Settings, members: int, *, settle_s: float = 3.0, timeout_s: float = 180.0) -> None:
    """Block until the worker group is ``Stable`` with ``members`` members for ``settle_s`` seconds.

    Start traffic after this when a run must not hand partitions over mid-stream (see README, scaling).
    """
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","), **settings_client_config(settings))
    deadline = time.monotonic() + timeout_s
    stable_since: float | None = None
    state: Any = None
    try:
        while time.monotonic() < deadline:
            try:
                state = admin.describe_groups([settings.app_id]).get(settings.app_id, {})
            except RetriableError as exc:  # a broker that just started has no group coordinator yet
                state, stable_since = {"error": repr(exc)}, None
                time.sleep(0.5)
                continue
            if state.get("group_state") == "Stable" and len(state.get("members", [])) == members:
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since >= settle_s:
                    return
            else:
                stable_since = None
            time.sleep(0.5)
    finally:
        admin.close()
    raise TimeoutError(f"group {settings.app_id} not stable with {members} members in {timeout_s:.0f}s: {state}")
