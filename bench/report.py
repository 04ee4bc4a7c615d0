"""bench/RESULTS.md: machine, versions, workload, every figure, the ratios, the targets, the profile's top entries.

Pure formatting over the collected results; the targets are evaluated here and stated as met / NOT met / not
measured, never guessed. Also writes the same data as JSON next to the run's logs.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.context import Measurement
from bench.levers import lever_lines
from bench.profile import ProfileSummary
from bench.report_state import state_section, state_targets

PACKAGES = ("faust-streaming", "aiokafka", "kafka-python", "fastavro", "duckdb", "pyarrow", "py-spy")


@dataclass(frozen=True)
class Target:
    name: str
    value: float | None
    threshold: float
    higher_is_better: bool
    shown: str

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "not measured"
        ok = self.value >= self.threshold if self.higher_is_better else self.value <= self.threshold
        return "met" if ok else "**NOT met**"


def ratio(a: Measurement | None, b: Measurement | None) -> float | None:
    """a.rate / b.rate when both were measured."""
    if a is None or b is None or not a.rate or not b.rate:
        return None
    return a.rate / b.rate


def machine() -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = psutil.virtual_memory().total / 2**30
    return [f"{cpu}, {os.cpu_count()} cores, {ram:.0f} GiB RAM, {platform.system()} {platform.release()}"]


def versions(kafka_version: str) -> str:
    parts = [f"Python {platform.python_version()}", f"Apache Kafka {kafka_version} (local KRaft broker)"]
    for name in PACKAGES:
        try:
            parts.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(parts)


def _n(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def _mb(value: int | None) -> str:
    return "-" if not value else f"{value / 2**20:,.0f} MB"


def per_cpu_second(m: Measurement | None) -> float | None:
    """Events per CPU-second of the measured processes: events / (seconds x CPU% / 100); None when not measured."""
    if m is None or not m.events or not m.seconds or not m.cpu_percent or m.status not in ("ok", "partial"):
        return None
    return m.events / (m.seconds * m.cpu_percent / 100)


def cpu_ratio(a: Measurement | None, b: Measurement | None) -> float | None:
    """a / b in events per CPU-second, when both were measured."""
    x, y = per_cpu_second(a), per_cpu_second(b)
    return x / y if x and y else None


def table(rows: list[Measurement]) -> list[str]:
    head = "| measurement | events | seconds | events/s | CPU % | events per CPU-second | broker CPU % | RSS | notes |"
    out = [head, "|---" * 9 + "|"]
    for m in rows:
        rate = _n(m.rate) if m.status in ("ok", "partial") else m.status
        out.append(
            f"| {m.title} | {_n(m.events)} | {_n(m.seconds, '{:.1f}')} | **{rate}** | {_n(m.cpu_percent)} "
            f"| {_n(per_cpu_second(m))} | {_n(m.broker_cpu_percent)} | {_mb(m.rss_bytes)} | {m.note} |"
        )
    return out


def peer_versions(rows: list[Measurement]) -> list[str]:
    """The peers' frameworks and clients, as their jobs reported them (they run in a virtualenv of their own)."""
    results = [m.extra.get("result") or {} for m in rows if m.key.startswith("peer_")]
    names = dict.fromkeys(str(p) for r in results for p in r.get("packages", ()))
    return [f"peers (bench/peers/requirements.txt, own virtualenv): {', '.join(names)}"] if names else []


def _signal_p99(latency: dict[str, Any] | None) -> float | None:
    if not latency:
        return None
    path = latency.get("signal emitted") or latency.get("stage emitted") or latency.get("session emitted")
    return float(path["p99"]) / 1000 if path else None


def targets(
    by_key: dict[str, Measurement], latency: dict[str, Any] | None, state: dict[str, Any] | None,
    idle: tuple[float, dict[str, Any]] | None = None,
) -> list[Target]:  # fmt: skip
    one, two = by_key.get("omnistream_1w"), by_key.get("omnistream_2w")
    r_ceiling = cpu_ratio(one, by_key.get("faust_ceiling"))
    r_previous = cpu_ratio(one, by_key.get("omnistream_1w-previous"))
    r_quix = cpu_ratio(one, by_key.get("peer_quix"))
    r_scale = ratio(two, one)
    sink = by_key.get("sink")
    p99 = _signal_p99(latency)
    p99_idle = _signal_p99(idle[1]) if idle else None
    idle_s = f"{idle[0]:g}" if idle else "?"
    per_customer = state["mean_bytes"] if state else None
    return [
        Target(
            "1 worker / previous design, events per CPU-second",
            r_previous,
            3.0,
            True,
            _n(r_previous, "{:.2f}x") + " (≥ 3x)",
        ),
        Target(
            "1 worker / Faust ceiling, events per CPU-second",
            r_ceiling,
            0.5,
            True,
            _n(r_ceiling, "{:.2f}x") + " (≥ 0.5x)",
        ),
        Target("1 worker / Quix Streams, events per CPU-second", r_quix, 1.0, True, _n(r_quix, "{:.2f}x") + " (≥ 1x)"),
        Target(
            "sink rows/s", sink.rate if sink else None, 200_000, True, _n(sink.rate if sink else None) + " (≥ 200,000)"
        ),
        Target("p99 event → signal at half max rate", p99, 1.0, False, _n(p99, "{:.2f} s") + " (≤ 1 s)"),
        Target(
            f"the same, OMNISTREAM_SOURCE_IDLE_S={idle_s}", p99_idle, 1.0, False, _n(p99_idle, "{:.2f} s") + " (≤ 1 s)"
        ),
        Target("state per active customer", per_customer, 2048, False, _n(per_customer, "{:,.0f} B") + " (≤ 2 KB)"),
        Target("2 workers / 1 worker", r_scale, 1.8, True, _n(r_scale, "{:.2f}x") + " (≥ 1.8x)"),
    ]


def batch_lines(m: Measurement | None, per_channel: dict[str, int]) -> list[str]:
    """Micro-batches per stage of worker 0 (its /metrics): how many, mean size, mean wall time."""
    stats = (m.extra.get("batches") or {}).get("worker0") if m else None
    if not stats or m is None:
        return []
    outputs = m.extra.get("outputs") or {}

    def total(suffix: str) -> int | None:
        return next((n for topic, n in outputs.items() if topic.endswith(suffix)), None)

    inputs: dict[str, int | None] = {f"ingest:{c}": n for c, n in per_channel.items()}
    inputs["journey"] = int(m.extra.get("journey_events_worker0") or 0) or None  # bundles hold many events
    out = ["", "Micro-batches in the 1-worker run (worker's `batch_seconds` histogram):", ""]
    out += ["| stage | batches | mean events/batch | mean ms/batch |", "|---|---|---|---|"]
    for stage, v in sorted(stats.items()):
        batches, secs = v.get("batches", 0.0), v.get("seconds", 0.0)
        size = inputs.get(stage)
        mean = _n(size / batches if size and batches else None)
        out.append(
            f"| {stage} | {batches:,.0f} | {mean} | {_n(1000 * secs / batches if batches else None, '{:.1f}')} |"
        )
    return out


def latency_rows(percentiles: dict[str, dict[str, float]]) -> list[str]:
    return [
        f"| event → {path} | {p['n']:,.0f} | {p['p50']:,.0f} | {p['p95']:,.0f} | {p['p99']:,.0f} | {p['max']:,.0f} |"
        for path, p in percentiles.items()
    ]


def profile_lines(summary: ProfileSummary | None, why_missing: str) -> list[str]:
    if summary is None:
        return [f"No profile: {why_missing}"]
    total = max(summary.samples, 1)
    out = [f"Tool: {summary.tool}; {summary.samples:,} samples of worker 0 in the 1-worker run.", ""]
    out += ["Where the time goes (self time by component):", "", "| component | share |", "|---|---|"]
    out += [f"| {name} | {100 * n / total:.1f} % |" for name, n in summary.components[:10]]
    out += ["", "Top functions by self time:", "", "| function | share |", "|---|---|"]
    out += [f"| `{name}` | {100 * n / total:.1f} % |" for name, n in summary.top_self]
    out += ["", "omnistream functions by inclusive time:", "", "| function | share |", "|---|---|"]
    out += [f"| `{name}` | {100 * n / total:.1f} % |" for name, n in summary.top_ours_inclusive]
    if summary.note:
        out += ["", summary.note]
    return out


@dataclass
class RunData:
    """Everything one bench run collected."""

    quick: bool
    workload: dict[str, Any]
    rows: list[Measurement]
    latency: dict[str, dict[str, float]] | None
    latency_rate: float | None
    latency_note: str
    profile: ProfileSummary | None
    profile_missing: str
    kafka_version: str
    wall_s: float
    started: str
    latency_low: tuple[float, dict[str, dict[str, float]]] | None = None
    latency_idle: tuple[float, dict[str, dict[str, float]]] | None = None  # (idle timeout s, percentiles)


def from_json(doc: dict[str, Any]) -> RunData:
    """Rebuild a run from its results.json (to re-render RESULTS.md after a change here)."""
    rows = [Measurement(**row) for row in doc["rows"]]
    profile = ProfileSummary(**doc["profile"]) if doc.get("profile") else None
    low, idle = doc.get("latency_low"), doc.get("latency_idle")
    return RunData(**{**doc, "rows": rows, "profile": profile, "latency_low": tuple(low) if low else None,
                      "latency_idle": tuple(idle) if idle else None})  # fmt: skip


def render(data: RunData) -> str:
    by_key = {m.key: m for m in data.rows}
    one = by_key.get("omnistream_1w")
    state = one.extra.get("state") if one else None
    w = data.workload
    lines = [
        "# omnistream benchmark results",
        "",
        f"Written by `{'python -m bench --quick' if data.quick else 'make bench'}` on {data.started} "
        f"in {data.wall_s / 60:.1f} min. Numbers are from ONE run on a shared machine: compare the ratios, "
        "which are measured within the run on the same topics, more than the absolute rates.",
        "",
        "## Machine and versions",
        "",
        *[f"- {line}" for line in machine()],
        f"- {versions(data.kafka_version)}",
        *[f"- {line}" for line in peer_versions(data.rows)],
        "",
        "## Workload",
        "",
        f"`omnistream simulate --customers {w['customers']:,} --days {w['days']} --seed {w['seed']}`: "
        f"**{w['messages']:,} messages** ({', '.join(f'{c} {n:,}' for c, n in w['per_channel'].items())}); "
        f"{sum(v for k, v in w['per_outcome'].items() if k not in ('valid', 'duplicate')):,} bad input, "
        f"{w['per_outcome'].get('duplicate', 0):,} duplicates. "
        + ("Reused from an earlier load." if w.get("reused") else f"Loaded in {w['load_seconds']:.0f} s."),
        "",
        "## Throughput (events/s of input)",
        "",
        *table([m for m in data.rows if not m.key.startswith("state")]),
        "",
        "CPU % is of one core (200 % = both cores), over the timed window; the broker runs on the same 2 cores. "
        "Events per CPU-second = events / (seconds x CPU % / 100): the work per event, whatever the waits.",
        *(
            [
                "",
                "The *peer* rows run one comparable job on the same input topics in other stream processors (bench/"
                "peers/): decode the Confluent Avro, key by the customer identifier, a 30-minute event-time session "
                "per customer in the framework's state, one JSON session update per event to an output topic, timed "
                "from the first message until every input offset taken at start is processed and the output flushed.",
            ]
            if any(m.key.startswith("peer_") for m in data.rows)
            else []
        ),
        *(
            [
                "",
                "A *capped* omnistream run did not drain within the cap; its rate counts only events the journey stage "
                "(the last hop) has applied, so work done ahead by ingest and identity is not counted: a lower bound "
                "of the drain rate.",
            ]
            if any("capped" in m.note for m in data.rows)
            else []
        ),
        "",
        "## Ratios",
        "",
        "| ratio | value |",
        "|---|---|",
    ]
    for name, b in (("previous design", "omnistream_1w-previous"), ("Faust ceiling", "faust_ceiling")):
        value = cpu_ratio(one, by_key.get(b))
        lines.append(f"| omnistream 1 worker / {name}, in events per CPU-second | {_n(value, '{:.2f}x')} |")
    for name, a, b in (
        ("omnistream 1 worker / Faust ceiling", "omnistream_1w", "faust_ceiling"),
        ("omnistream 1 worker / naive", "omnistream_1w", "naive"),
        ("omnistream 1 worker / floor", "omnistream_1w", "floor"),
        ("2 workers / 1 worker", "omnistream_2w", "omnistream_1w"),
    ):
        lines.append(f"| {name} | {_n(ratio(by_key.get(a), by_key.get(b)), '{:.2f}x')} |")
    for name, b in (("Quix Streams", "peer_quix"), ("Bytewax", "peer_bytewax"), ("aiokafka+dict", "peer_aiokafka")):
        value = cpu_ratio(one, by_key.get(b))
        lines.append(f"| omnistream 1 worker / {name}, in events per CPU-second | {_n(value, '{:.2f}x')} |")
    lines += batch_lines(one, w["per_channel"])
    lines += lever_lines()
    lines += ["", "## Latency", ""]
    if data.latency:
        lines += [
            f"One worker and the sink on fresh topics, valid events produced live at {_n(data.latency_rate)} "
            f"events/s (half the 1-worker maximum), event time = send time. {data.latency_note}",
            "",
            "| path | samples | p50 ms | p95 ms | p99 ms | max ms |",
            "|---|---|---|---|---|---|",
        ]
        lines += latency_rows(data.latency)
        if data.latency_idle:
            idle_s, fast = data.latency_idle
            lines += [
                "",
                f"The same rate with `OMNISTREAM_SOURCE_IDLE_S={idle_s:g}` (default 10): a partition silent for "
                f"{idle_s:g} s stops holding results back (docs/time.md, idle sources):",
                "",
            ]
            lines += ["| path | samples | p50 ms | p95 ms | p99 ms | max ms |", "|---|---|---|---|---|---|"]
            lines += latency_rows(fast)
        if data.latency_low:
            rate, low = data.latency_low
            lines += ["", f"The same at a low rate, {rate:,.0f} events/s (20 s), for comparison:", ""]
            lines += ["| path | samples | p50 ms | p95 ms | p99 ms | max ms |", "|---|---|---|---|---|---|"]
            lines += latency_rows(low)
    else:
        lines.append(f"Not measured: {data.latency_note}")
    lines += ["", "## Memory", ""]
    for key in ("omnistream_1w", "omnistream_2w"):
        m = by_key.get(key)
        if m and m.rss_bytes:
            lines.append(f"- {m.title}: RSS {_mb(m.rss_bytes)} at the end (peak {_mb(m.extra.get('rss_peak'))}).")
    if state:
        lines.append(
            f"- journey state (one record per customer, latest version in the changelog): {state['customers']:,} "
            f"customers, mean **{state['mean_bytes']:,.0f} B**, p50 {state['p50_bytes']:,.0f} B, "
            f"p99 {state['p99_bytes']:,.0f} B, max {state['max_bytes']:,} B per customer (key + value); "
            f"{state['changelog_messages']:,} changelog messages for {w['messages']:,} inputs."
        )
    scale, recovery = by_key.get("state"), by_key.get("state_recovery")
    lines += ["", *state_section(scale, recovery)]
    lines += ["", "## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    latency = data.latency or None
    lines += [f"| {t.name} | {t.shown} | {t.verdict} |" for t in targets(by_key, latency, state, data.latency_idle)]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in state_targets(scale, recovery)]
    lines += ["", "## Profile", "", *profile_lines(data.profile, data.profile_missing), ""]
    return "\n".join(lines)
