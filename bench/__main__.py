"""``python -m bench [--quick]`` (``make bench``): the whole benchmark in one run, results in bench/RESULTS.md.

Order: local broker up (reused when running) -> workload loaded once -> floor -> peers (Quix Streams, Bytewax,
aiokafka + dict, from a virtualenv of their own) -> Faust ceiling -> naive -> omnistream 1 worker (profiled
with py-spy) -> the same with the previous design's settings -> 2 workers -> sink throughput -> latency at half
the 1-worker rate (default settings, then a 0.5 s idle timeout), and at a low rate -> state at scale
(``--customers``, 1M: memory, timer work, recovery after kill -9; bench/state_scale.py) -> RESULTS.md.
``--only state`` updates only that section of RESULTS.md. Every measurement runs in processes of its own; one
that fails is reported as failed and the run goes on. ``--quick`` uses a 10x smaller workload (its results go
to <state_dir>/bench/RESULTS-quick.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from bench import faust_ceiling, floor, latency, naive, pipeline_run, sink, state_scale
from bench.context import RESULTS_MD, BenchContext, Measurement, write_json
from bench.peers.runner import measure_all as measure_peers
from bench.profile import ProfileSummary, py_spy, summarise
from bench.report import RunData, render
from bench.report_state import splice, state_section
from bench.workload import ensure_workload
from pipeline.kafka_local import start_broker
from pipeline.settings import load_settings

FULL = {
    "customers": 52_000,
    "days": 31,
    "naive_events": 40_000,
    "sink_rows": 1_000_000,  # enough batches that filling and draining the two-process pipeline is noise
    "latency_s": 30.0,
    "cap_s": 0.0,  # every run drains (a capped figure would only be a lower bound); --timeout still bounds it
    "state_customers": 1_000_000,
}
QUICK = {"customers": 5_000, "days": 30, "naive_events": 20_000, "sink_rows": 100_000, "latency_s": 20.0, "cap_s": 0.0,
         "state_customers": 100_000}  # fmt: skip
STATE_TIMEOUT_S = 1800.0  # a day crossing of 1M customers is run twice
MIN_FULL_EVENTS = 500_000
IDLE_S = 0.5  # the latency run's second idle timeout: a deployment that favours latency over late stragglers
STEPS = ("floor", "peers", "ceiling", "naive", "1w", "base", "2w", "sink", "latency", "state")


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def show(m: Measurement) -> Measurement:
    rate = f"{m.rate:,.0f}/s" if m.rate else m.status
    say(f"{m.title}: {rate}" + (f" ({m.note})" if m.status != "ok" or m.key == "sink" else ""))
    return m


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x smaller workload, for trying the harness")
    parser.add_argument("--no-profile", action="store_true", help="do not attach py-spy to the 1-worker run")
    parser.add_argument(
        "--only", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)} (default: all)"
    )
    parser.add_argument(
        "--cap", type=float, default=None, help="seconds after which an omnistream run stops undrained (0 = none)"
    )
    parser.add_argument("--customers", type=int, default=None,
                        help="customers of the state step (default 1,000,000; --quick 100,000)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=420.0, help="seconds per measurement at most")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    size = QUICK if args.quick else FULL
    t0 = time.monotonic()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    base = load_settings()
    broker = start_broker(base, report=say)
    ctx = BenchContext.create(args.quick, broker.pid)
    say(f"broker {broker.bootstrap} (pid {broker.pid or 'external'}); files under {ctx.out}")
    only = set(args.only.split(","))
    if only == {"state"}:  # builds its own state; no workload needed
        return _state_only(args, ctx, size, t0)
    wl = ensure_workload(ctx, customers=int(size["customers"]), days=int(size["days"]), seed=7, report=say)
    say(f"workload: {wl.messages:,} messages, {wl.customers:,} customers")
    if not args.quick and wl.messages < MIN_FULL_EVENTS:
        say(f"warning: fewer than {MIN_FULL_EVENTS:,} messages; raise FULL['days'] in bench/__main__.py")
    cap = (args.cap if args.cap is not None else float(size["cap_s"])) or None
    rows: list[Measurement] = []
    if "floor" in only:
        rows.append(show(floor.measure(ctx, wl)))
    if "peers" in only:
        rows += [show(m) for m in measure_peers(ctx, wl, args.timeout, say)]
    if "ceiling" in only:
        rows.append(show(faust_ceiling.measure(ctx, wl, args.timeout)))
    if "naive" in only:
        rows.append(show(naive.measure(ctx, wl, args.timeout, int(size["naive_events"]))))
    spy_raw = None if args.no_profile or py_spy() is None or "1w" not in only else ctx.logs / "py-spy-1w.txt"
    one = None
    if "1w" in only:
        say("omnistream, 1 worker" + (" (py-spy attached)" if spy_raw else ""))
        one = show(pipeline_run.measure(ctx, wl, 1, args.timeout, say, spy_raw, cap))
        rows.append(one)
    if "base" in only:
        say("omnistream, 1 worker, " + pipeline_run.PREVIOUS.title)
        rows.append(show(pipeline_run.measure(ctx, wl, 1, args.timeout, say, None, cap, pipeline_run.PREVIOUS)))
    if "2w" in only:
        say("omnistream, 2 workers")
        rows.append(show(pipeline_run.measure(ctx, wl, 2, args.timeout, say, None, cap)))
    if "sink" in only:
        rows.append(show(sink.measure(ctx, int(size["sink_rows"]))))
    lat, lat_rate, lat_note = None, None, "not run"
    lat_low: tuple[float, dict[str, dict[str, float]]] | None = None
    lat_idle: tuple[float, dict[str, dict[str, float]]] | None = None
    if "latency" not in only:
        pass
    elif one is not None and one.rate:
        lat_rate = one.rate / 2
        try:
            result = latency.measure(ctx, lat_rate, float(size["latency_s"]), say)
            lat = result.percentiles()
            lat_note = (
                f"{result.sent:,} events in {result.seconds:.0f} s; counted: the events of seconds "
                f"{latency.WARMUP_S:.0f}-{size['latency_s']:.0f}, with live traffic going on "
                f"{latency.COOLDOWN_S:.0f} s after them."
            )
            if not any(k.startswith("signal") for k in lat):
                lat_note += " No signal fired in the run, so the event → stage transition is the signal-path figure."
            fast = latency.measure(
                ctx, lat_rate, float(size["latency_s"]), say, {"OMNISTREAM_SOURCE_IDLE_S": str(IDLE_S)}
            )
            lat_idle = (IDLE_S, fast.percentiles())
            low_rate = min(100.0, lat_rate / 4)
            low = latency.measure(ctx, low_rate, 20.0, say).percentiles()
            lat_low = (low_rate, low)
        except Exception as exc:  # reported, not fatal: the other figures stand
            lat_note = f"failed: {exc!r}"
    else:
        lat_note = "the 1-worker run gave no rate to halve"
    say(f"latency: {lat_note} {lat}")
    if "state" in only:
        n = args.customers or int(size["state_customers"])
        for m in state_scale.measure(ctx, n, say, max(args.timeout, STATE_TIMEOUT_S)):
            rows.append(show(m))
    profile, missing = _profile(spy_raw)
    data = RunData(args.quick, wl.to_json(), rows, lat, lat_rate, lat_note, profile, missing, base.kafka_version,
                   time.monotonic() - t0, started, lat_low, lat_idle)  # fmt: skip
    target = ctx.out / "RESULTS-quick.md" if args.quick else RESULTS_MD
    target.write_text(render(data))
    write_json(ctx.logs / "results.json", _json(data))
    say(f"done in {(time.monotonic() - t0) / 60:.1f} min: {target}")
    return 0


def _state_only(args: argparse.Namespace, ctx: BenchContext, size: dict[str, float], t0: float) -> int:
    """``--only state``: the state step, spliced into the existing RESULTS.md (or written alone)."""
    n = args.customers or int(size["state_customers"])
    rows = [show(m) for m in state_scale.measure(ctx, n, say, max(args.timeout, STATE_TIMEOUT_S))]
    by_key = {m.key: m for m in rows}
    section = state_section(by_key.get("state"), by_key.get("state_recovery"))
    target = ctx.out / "RESULTS-quick.md" if args.quick else RESULTS_MD
    target.write_text(splice(target.read_text() if target.is_file() else "# omnistream benchmark results\n", section))
    write_json(ctx.logs / "results-state.json", [m.to_json() for m in rows])
    say(f"done in {(time.monotonic() - t0) / 60:.1f} min: {target}")
    return 0


def _profile(raw: Any) -> tuple[ProfileSummary | None, str]:
    if raw is None:
        return None, "py-spy not installed or --no-profile"
    if not raw.is_file() or raw.stat().st_size == 0:
        return None, f"py-spy wrote nothing (see {raw.parent})"
    return summarise(raw), ""


def _json(data: RunData) -> dict[str, Any]:
    out = dict(data.__dict__)
    out["rows"] = [m.to_json() for m in data.rows]
    out["profile"] = data.profile.__dict__ if data.profile else None
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
