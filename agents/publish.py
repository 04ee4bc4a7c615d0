"""Publishing a batch's outputs with retries, and stopping the worker when infrastructure stays down.

Order per batch (at-least-once): produce every output, wait until the broker has acknowledged each one, and
only then acknowledge the input events to Faust, which commits their offsets later. A crash anywhere before the
ack replays the batch; nothing is committed that was not published.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from prometheus_client import Counter

from agents.batching import PARTITIONER, aiokafka_producer, send_chunks
from pipeline.metrics import ChildCache

log = logging.getLogger(__name__)

#: Exit codes: supervisors restart on any non-zero; these tell operators why.
EXIT_INFRA = 75  # EX_TEMPFAIL: Kafka or registry unavailable for longer than the retry budget
EXIT_UPSTREAM_BROKEN = 65  # EX_DATAERR: invalid-input share over the guard limit


def fatal(message: str, code: int) -> NoReturn:
    """Stop the process at once, without committing anything more.

    A hard exit is deliberate: a graceful Faust shutdown would commit the offsets of events already
    acknowledged (fine) but also runs code paths we cannot vouch for while the broker is unreachable.
    Unacknowledged events are replayed by whichever worker gets the partitions next.
    """
    log.critical(message)
    for handler in logging.getLogger().handlers:
        handler.flush()
    print(f"omnistream worker: FATAL: {message}", file=sys.stderr, flush=True)
    os._exit(code)


@dataclass(frozen=True)
class RetryClock:
    """The time a retry loop reads and waits on (injected: a test's clock advances when it sleeps)."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for infrastructure errors, bounded by a total time budget; ``give_up`` runs when the
    budget is spent (by default :func:`fatal`: the process exits with the code it is given)."""

    first_delay_s: float = 0.5
    max_delay_s: float = 10.0
    budget_s: float = 300.0
    clock: RetryClock = field(default_factory=RetryClock)
    give_up: Callable[[str, int], NoReturn] = fatal


async def publish(
    topic: Any,
    items: Sequence[tuple[bytes | None, bytes | None]],
    policy: RetryPolicy,
    retries: ChildCache[Counter],
) -> None:
    """Send ``items`` to a Faust topic and wait for every broker ack, resending only what failed.

    Raises nothing: after ``policy.budget_s`` of failures the process exits with ``EXIT_INFRA``.
    """
    pending = list(items)
    delay = policy.first_delay_s
    clock = policy.clock
    deadline = clock.now() + policy.budget_s
    attempt = 0
    name = topic.get_topic_name()
    while pending:
        failed: list[tuple[bytes | None, bytes | None]] = []
        last_error: BaseException | None = None
        try:
            chunks = await send_chunks(aiokafka_producer(topic), name, pending, PARTITIONER)
        except Exception as exc:  # no metadata for the topic: nothing was queued
            last_error, failed, chunks = exc, pending, []
        results = await asyncio.gather(*(c.future for c in chunks), return_exceptions=True)
        for chunk, result in zip(chunks, results, strict=True):
            if isinstance(result, BaseException):
                failed.extend(chunk.items)
                last_error = result
        if not failed:
            return
        attempt += 1
        retries.get(f"produce:{name}").inc()
        if clock.now() + delay > deadline:
            policy.give_up(
                f"Kafka unavailable: could not publish {len(failed)} messages to {name} "
                f"for {policy.budget_s:.0f}s ({last_error!r}); exiting so the batch is replayed after restart",
                EXIT_INFRA,
            )
        log.error(
            "publish to %s failed for %d of %d messages (%r); retry %d in %.1fs",
            name,
            len(failed),
            len(pending),
            last_error,
            attempt,
            delay,
        )
        await clock.sleep(delay)
        delay = min(delay * 2, policy.max_delay_s)
        pending = failed


async def publish_all(
    outputs: Sequence[tuple[Any, Sequence[tuple[bytes | None, bytes | None]]]],
    policy: RetryPolicy,
    retries: ChildCache[Counter],
) -> None:
    """:func:`publish` to several topics at once: one wait for all their acks instead of one per topic.

    Only for outputs with no order between them; callers that need one topic before another call it twice.
    """
    await asyncio.gather(*(publish(topic, items, policy, retries) for topic, items in outputs if items))
