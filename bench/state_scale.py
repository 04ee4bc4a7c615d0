"""State at scale: N customers in one journey partition, as a worker holds them (``--only state``).

Runs in a child process (``python -m bench.state_scale SPEC RESULT``) over the records of bench/state_build.py:

- **memory**: RSS growth while the records are held as the journey holds them (``dict`` key -> header + body,
  as :func:`agents.state_table.recover` returns them) and then the due-time index
  (:meth:`JourneyStep.restore`, :class:`~pipeline.steps.due_index.DueIndex`); the same counted object by
  object (``sys.getsizeof``); the records' encoded size (key + value).
- **minute ticks**: the watermark moves one minute of event time per batch from noon to just before midnight;
  each batch, run as the agent runs it, is timed.
- **day crossing**: the batch that moves the watermark past midnight (every scored customer re-scored). Once
  in one go (how long the loop would be held), once as the agent now runs it (``agents.journey._process``
  in passes of ``OMNISTREAM_JOURNEY_DUE_PER_PASS`` customers, each pass's records packed, published through
  ``agents.batching.send_chunks`` to a producer stand-in, stored and dropped) on an event loop with a probe
  task whose longest wait is the longest stretch the loop was held, garbage collections included. Both must
  give the same records. Also timed: Kafka's partitioner over the one-go batch's state records.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from aiokafka.producer.message_accumulator import BatchBuilder

from agents.batching import Partitioner, send_chunks
from agents.journey import _pack, _process, _update, freeze_heap_once
from agents.state_table import pack, unpack
from bench import state_recovery
from bench.child import run_child
from bench.context import BenchContext, Measurement, failed, read_json, write_json
from bench.state_build import DAY, END_MS, codec, customers, new_step, templates, tick
from pipeline.app import session_policy
from pipeline.settings import load_settings
from pipeline.steps.journey import JourneyStep

MINUTE = 60_000
SAMPLE = 3000  # simulated customers behind the templates (about 2,300 end up with a record)


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def sizes(values: list[int]) -> dict[str, float]:
    values.sort()
    return {"mean": statistics.fmean(values), "p50": values[len(values) // 2],
            "p99": values[min(len(values) - 1, len(values) * 99 // 100)], "max": values[-1]}  # fmt: skip


def held_bytes(store: dict[bytes, bytes], step: JourneyStep) -> dict[str, int]:
    """Bytes of the Python objects, counted one by one (keys are shared by the records and the index)."""
    records = sys.getsizeof(store) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in store.items())
    return {"records": records, "index": step.partitions[0].due.footprint()}


def run(n: int, sample_size: int) -> dict[str, Any]:
    settings = load_settings()
    policy, per_pass = session_policy(settings), settings.journey_due_per_pass
    started = time.perf_counter()
    sample = templates(policy, customers=sample_size)
    result: dict[str, Any] = {"customers": n, "templates": len(sample), "build_s": time.perf_counter() - started}
    base = rss()
    store = {key: pack(0, due, body) for key, body, due in customers(sample, n)}
    with_records = rss()
    step = new_step(policy)
    step.restore(0, None, [(k, unpack(v)[1]) for k, v in store.items()], ())
    freeze_heap_once()  # as the worker does after its first restore
    with_index = rss()
    result["rss_records"], result["rss_index"] = with_records - base, with_index - with_records
    result["objects"] = held_bytes(store, step)
    result["record_bytes"] = sizes([len(k) + len(v) for k, v in store.items()])
    dues = [unpack(v)[1] for v in store.values()]
    midnight = (END_MS // DAY + 1) * DAY
    result["due_at_midnight"] = sum(1 for d in dues if d == midnight)
    result["due_before_midnight"] = sum(1 for d in dues if d is not None and d < midnight)
    del dues
    c = codec()
    minutes = [tick(c, m) for m in range(END_MS + MINUTE, midnight, MINUTE)]
    result["ticks"] = asyncio.run(_ticks(step, store, minutes, per_pass))
    offset = result["ticks"]["count"]
    state = step.partitions[0].encode()
    crossing = tick(c, midnight + MINUTE)
    result["day_whole"], whole_digest = _whole(step, store, crossing, offset)
    again = new_step(policy)  # the same partition as a worker rebuilds it: the sliced run starts from there
    again.restore(0, state, [(k, unpack(v)[1]) for k, v in store.items()], ())
    result["day_sliced"], sliced_digest = asyncio.run(_sliced(again, store, crossing, offset, per_pass))
    result["same_records"] = whole_digest == sliced_digest
    result["rss_peak"] = int(psutil.Process().memory_info().rss)
    return result


def _digest(written: list[tuple[bytes, bytes]]) -> str:
    h = hashlib.sha256()
    for key, value in sorted(written):
        h.update(key + b"\0" + value)
    return h.hexdigest()


Figures = tuple[dict[str, Any], str]


def _whole(step: JourneyStep, store: dict[bytes, bytes], msg: tuple[bytes, bytes], offset: int) -> Figures:
    load = lambda key: unpack(store.get(key))[2]  # noqa: E731
    t0 = time.perf_counter()
    out = step.process(0, [(offset, *msg)], load)
    t1 = time.perf_counter()
    written = [(k, pack(offset + 1, due, body)) for k, (body, due) in out.states.items()]
    t2 = time.perf_counter()
    scratch = dict(store)  # the sliced run starts from the same records
    t3 = time.perf_counter()
    scratch.update(written)
    t4 = time.perf_counter()
    partitioner, ps = Partitioner(), time.perf_counter()
    for key, _ in written:
        partitioner.partition("state", key, 4)
    partition_s = time.perf_counter() - ps
    figures = {"process_s": t1 - t0, "pack_s": t2 - t1, "update_s": t4 - t3, "customers": len(out.states),
               "profiles": len(out.journey.profiles), "signals": len(out.journey.signals),
               "partition_s": partition_s, "blocked_s": (t2 - t0) + (t4 - t3)}  # fmt: skip
    return figures, _digest(written)


class LoopProbe:
    """Measures how long the event loop is held at a time: a task that only yields, and the gaps between its
    turns; also the pauses of Python's cyclic garbage collector (which hold the loop whatever the code does)."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self.cpu_gaps: list[float] = []  # the same in this thread's CPU time: without other processes' share
        self.gc_pauses: list[tuple[int, float]] = []  # (generation, seconds)
        self._running = False
        self._gc_started = 0.0
        self._task: asyncio.Task[None] | None = None

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pauses.append((info.get("generation", 0), time.perf_counter() - self._gc_started))

    async def _spin(self) -> None:
        last, last_cpu = time.perf_counter(), time.thread_time()
        while self._running:
            await asyncio.sleep(0)
            now, cpu = time.perf_counter(), time.thread_time()
            self.gaps.append(now - last)
            self.cpu_gaps.append(cpu - last_cpu)
            last, last_cpu = now, cpu

    async def __aenter__(self) -> LoopProbe:
        self._running = True
        gc.callbacks.append(self._gc)
        self._task = asyncio.create_task(self._spin())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *_: object) -> None:
        self._running = False
        gc.callbacks.remove(self._gc)
        if self._task is not None:
            await self._task

    def figures(self) -> dict[str, float]:
        gaps, cpu = sorted(self.gaps), sorted(self.cpu_gaps)
        return {"max_ms": gaps[-1] * 1000, "p99_ms": gaps[len(gaps) * 99 // 100] * 1000, "turns": len(gaps),
                "cpu_max_ms": cpu[-1] * 1000, "cpu_p99_ms": cpu[len(cpu) * 99 // 100] * 1000,
                "gc2": sum(1 for g, _ in self.gc_pauses if g == 2),
                "gc2_max_ms": max((t for g, t in self.gc_pauses if g == 2), default=0.0) * 1000,
                "gc_young_max_ms": max((t for g, t in self.gc_pauses if g < 2), default=0.0) * 1000}  # fmt: skip


Written = list[tuple[bytes, bytes]]


async def _batch(step: JourneyStep, store: dict[bytes, bytes], msg: tuple[bytes, bytes], offset: int,
                 per_pass: int, publish: bool = False) -> tuple[dict[bytes, bytes], int]:  # fmt: skip
    """One batch as the agent runs it now: passes of the step in slices (each bounded to ``per_pass``
    customers run for their timers alone), each pass's records packed, published when ``publish`` (to a
    producer stand-in), stored, and dropped, like the agent does, before the next pass. Returns the records
    written (key -> record) and the passes."""
    messages: list[tuple[int, bytes, bytes]] = [(offset, *msg)]
    final: dict[bytes, bytes] = {}  # bytes -> bytes: not tracked by the garbage collector
    passes = 0
    while True:
        passes += 1
        out = await _process(step, 0, messages, lambda key: unpack(store.get(key))[2], per_pass)
        written = await _pack(out.states, offset + 1)
        if publish:
            await send_chunks(_Producer(), "state", written, Partitioner())
        await _update(store, written)
        final.update(written)
        del out, written  # freed here, one pass at a time, as the agent's pass ends
        messages = []
        if not step.due_left(0):
            return final, passes


async def _ticks(
    step: JourneyStep, store: dict[bytes, bytes], messages: list[tuple[bytes, bytes]], per_pass: int
) -> dict[str, Any]:
    work: list[tuple[float, int]] = []
    async with LoopProbe() as probe:
        for offset, msg in enumerate(messages):
            t0 = time.perf_counter()
            written, _passes = await _batch(step, store, msg, offset, per_pass)
            work.append((time.perf_counter() - t0, len(written)))
            await asyncio.sleep(0)  # the agent waits for its next batch
    worst = max(work)
    return {"count": len(work), "max_ms": worst[0] * 1000, "max_customers": worst[1],
            "p99_ms": sorted(t for t, _ in work)[len(work) * 99 // 100] * 1000,
            "customers_fired": sum(n for _, n in work), "loop": probe.figures()}  # fmt: skip


async def _sliced(
    step: JourneyStep, store: dict[bytes, bytes], msg: tuple[bytes, bytes], offset: int, per_pass: int
) -> Figures:
    """The agent's passes on a loop, their records published to a producer stand-in, with a probe measuring how
    long the loop was held at a time (garbage collections and freeing each pass's outputs included)."""
    async with LoopProbe() as probe:
        t0 = time.perf_counter()
        written, passes = await _batch(step, store, msg, offset, per_pass, publish=True)
        total = time.perf_counter() - t0
    return {"total_s": total, "customers": len(written), "passes": passes, "per_pass": per_pass,
            **probe.figures()}, _digest(list(written.items()))  # fmt: skip


class _Producer:
    """What ``send_chunks`` needs of aiokafka's producer: real record batches; a batch queued behind the previous
    one of its partition waits for it to drain (one turn of the loop here), as aiokafka's accumulator does."""

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(16384, 0, is_transactional=False)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[None]:
        await asyncio.sleep(0)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def measure(ctx: BenchContext, n: int, report: Callable[[str], None], timeout_s: float) -> list[Measurement]:
    """The in-memory figures in a child process, then the recovery of a real worker (bench/state_recovery.py)."""
    report(f"state at scale: {n:,} customers in memory (child process)")
    title = f"journey state, {n:,} customers in memory"
    child = run_child(ctx, "state", "bench.state_scale", {"customers": n, "sample": SAMPLE}, timeout_s)
    if child.result is None:
        scale = failed("state", title, f"exit {child.exit_code}: {child.log_tail(5)}", child.wall_s)
    else:
        scale = Measurement("state", title, events=n, seconds=child.result["day_sliced"]["total_s"],
                            wall_s=child.wall_s, rss_bytes=child.result["rss_peak"], extra=child.result)  # fmt: skip
    report(f"state at scale: recovery of a worker holding {n:,} customers")
    try:
        sample = templates(session_policy(load_settings()), customers=SAMPLE)
        recovery = state_recovery.measure(ctx, n, sample, report, timeout_s)
    except Exception as exc:  # reported, not fatal: the in-memory figures stand
        recovery = failed("state_recovery", f"recovery of a worker holding {n:,} customers", repr(exc))
    return [scale, recovery]


def main(argv: list[str]) -> None:
    spec = read_json(Path(argv[1]))
    write_json(Path(argv[2]), run(int(spec["customers"]), int(spec.get("sample", SAMPLE))))


if __name__ == "__main__":
    main(sys.argv)
