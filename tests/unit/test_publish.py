"""publish / publish_all: every item acknowledged before returning, failures resent, topics overlapped."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from agents.publish import RetryPolicy, publish, publish_all
from pipeline.metrics import ChildCache


class Topic:
    """A Faust-like topic whose acks the test releases; the first ``fail`` sends fail."""

    def __init__(self, name: str, log: list[str], fail: int = 0) -> None:
        self.name, self.log, self.fail = name, log, fail
        self.acked: list[bytes] = []
        self.release = asyncio.Event()

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, key: bytes | None, value: bytes, force: bool) -> asyncio.Future[Any]:
        self.log.append(f"send {self.name}")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failing = self.fail > 0
        self.fail -= int(failing)

        async def settle() -> None:
            await self.release.wait()
            if failing:
                future.set_exception(ConnectionError("broker gone"))
            else:
                self.acked.append(value)
                future.set_result(None)

        asyncio.get_running_loop().create_task(settle())
        return future


def _retries() -> ChildCache[Counter]:
    return ChildCache(Counter("retries", "r", ["what"], registry=CollectorRegistry()))


def test_publish_all_sends_to_every_topic_before_waiting_for_acks() -> None:
    async def run() -> list[str]:
        log: list[str] = []
        a, b = Topic("a", log), Topic("b", log)
        task = asyncio.create_task(
            publish_all([(a, [(None, b"1")]), (b, [(None, b"2")]), (a, [])], RetryPolicy(), _retries())
        )
        await asyncio.sleep(0.01)
        assert log == ["send a", "send b"] and not task.done()  # both in flight, nothing acked yet
        a.release.set()
        b.release.set()
        await task
        assert (a.acked, b.acked) == ([b"1"], [b"2"])
        return log

    assert asyncio.run(run()) == ["send a", "send b"]


def test_publish_resends_only_what_failed() -> None:
    async def run() -> Topic:
        topic = Topic("t", [], fail=1)
        topic.release.set()
        await publish(topic, [(None, b"x"), (None, b"y")], RetryPolicy(first_delay_s=0.01), _retries())
        return topic

    topic = asyncio.run(run())
    assert sorted(topic.acked) == [b"x", b"y"] and len(topic.log) == 3
