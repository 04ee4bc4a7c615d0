"""What each throughput lever gave when it was tried, for the "Levers" section of bench/RESULTS.md.

Only the input delivery is measured again by every full run (the "previous design" row); the others were
measured once, as stated, and are kept (or not) in the code as listed. Update this table when a lever is tried.
"""

from __future__ import annotations

#: (lever, how it was measured, what it gave, kept)
LEVERS: tuple[tuple[str, str, str, str], ...] = (
    (
        "Batch delivery of the channel topics (agents/delivery.py): Faust's consumer hands messages to a list per "
        "topic, no per-message event, channel queue or stream iteration",
        "every run: the 1-worker row against the previous-design row (OMNISTREAM_INPUT_DELIVERY=stream); "
        "`--quick` A/B, two runs each: 3,216 / 3,319 against 2,801 / 2,823 events per CPU-second",
        "see the ratio above (1.12x in the run that introduced it); 1.15-1.18x on the quick workload",
        "yes (default)",
    ),
    (
        "The last version of a session per customer and batch published, not every instant's",
        "in-memory pipeline model (tests/unit/pipeline_model.py, 1,500 customers, 5,619 events): session "
        "encodes counted; `--quick` A/B, two runs each",
        "7,558 session encodes -> 2,271; 3,192 / 3,202 against 3,094 / 2,927 events per CPU-second (about 5 %)",
        "yes",
    ),
    (
        "uvloop as the worker's event loop",
        "one run each, before and after (an earlier RESULTS.md)",
        "the same throughput at about 15 % less CPU",
        "yes (OMNISTREAM_EVENT_LOOP)",
    ),
    (
        "Event bundles on resolved-events: one Kafka message per partition per ingest batch",
        "make bench before and after (an earlier RESULTS.md)",
        "the journey hop pays Faust's per-message cost once per bundle (a few hundred events)",
        "yes",
    ),
    (
        "fastavro's `disable_tuple_notation=True` on encode (unions matched on the value alone)",
        "same-process A/B on 200 canonical events, 3 rounds",
        "15.7-16.3 µs against 15.8-16.4 µs per encode: no difference",
        "no",
    ),
    (
        "orjson instead of the stdlib's json for the journey's customer records (decoded and encoded once per "
        "customer run)",
        "`python -m bench.journey_step` (the journey step alone, 30,875 simulated events in hourly bundles), "
        "two rounds each, same machine, one after the other",
        "318 / 332 -> 258 / 265 µs of CPU per event in the journey step (about 18 % less)",
        "yes",
    ),
    (
        "Journey timers in bounded passes (OMNISTREAM_JOURNEY_DUE_PER_PASS) and a due-time index the garbage "
        "collector does not track; gc.freeze() once after the first restore",
        "every run: the state-at-scale step (1,000,000 customers, the day crossing as the agent runs it)",
        "longest hold of the loop at the day crossing 323 ms -> see State at scale (full collections no longer "
        "walk the due-time index or a whole midnight's outputs)",
        "yes",
    ),
    (
        "The journey's domain modules compiled to C with mypyc (the step, customer machine, sessions, stages, "
        "triggers, churn, BG/NBD model: 14 modules, unchanged source)",
        "`python -m bench.compiled --rounds 3`: the journey step alone, interpreted and compiled in turns, same "
        "simulated month (20,756 events)",
        "249 / 251 / 249 -> 216 / 224 / 216 µs of CPU per event: 1.15x on the step, about 5 % of a worker (the "
        "step is ~40 % of its CPU); the rest is dict work and calls into fastavro and orjson, which compiling "
        "does not make cheaper",
        "no: a C toolchain and a build step on every install for ~5 %",
    ),
)


def lever_lines() -> list[str]:
    """The markdown section."""
    out = ["", "## Levers", "", "| lever | measured how | gave | kept |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in LEVERS]
    return out
