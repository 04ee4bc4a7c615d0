"""The journey step alone, without Kafka: CPU per event over a simulated month (``python -m bench.journey_step``).

The events of :func:`bench.state_build.sample_events` (valid, canonical, with fitted-looking BTYD parameters so
that every customer is scored) in one-hour bundles, each moving the watermark to the hour's end, run through a
real :class:`~pipeline.steps.journey.JourneyStep` as the agent runs it (records kept between batches). Used to
measure levers of the journey hop in isolation (bench/levers.py); the pipeline rows of RESULTS.md are the ones
that count.
"""

from __future__ import annotations

import argparse
import time

from bench.state_build import hourly_batches, new_step, sample_events
from pipeline.app import session_policy
from pipeline.settings import load_settings

Batch = list[tuple[int, bytes, bytes]]


def hourly(customers: int, days: int, seed: int) -> tuple[int, list[Batch]]:
    """The number of events (all before ``END_MS``) and their hourly batches."""
    events = sample_events(customers, days, seed)
    return len(events), hourly_batches(events)


def cpu_seconds(batches: list[Batch]) -> float:
    step, records = new_step(session_policy(load_settings())), {}
    started = time.process_time()
    for batch in batches:
        out = step.process(0, batch, records.get)
        records.update({k: body for k, (body, _due) in out.states.items()})
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    events, batches = hourly(args.customers, args.days, seed=11)
    for r in range(args.rounds):
        s = cpu_seconds(batches)
        print(f"round {r + 1}: {events:,} events in {len(batches):,} hourly batches: {s:.2f} s CPU, "
              f"{s / events * 1e6:,.0f} us per event")  # fmt: skip


if __name__ == "__main__":
    main()
