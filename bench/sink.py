"""Sink throughput: runs ``python -m bench.sink_throughput`` (owned by the sink's developers) and parses its output.

That module measures rows/s into DuckDB (Arrow conversion in this process, keyed inserts/upserts, offsets and
COMMIT per batch in the writer process, one snapshot publish) on a fresh file; see its docstring for what it
leaves out. The harness only runs it in a child process and reads the figures it prints (``... <N> rows/s``
and ``... <N> messages/s``), so changes there are picked up without changes here. The figure reported is the
``sink:`` line's (the way ``omnistream sink`` writes); the ``serial`` comparison line stays in the note. A run
whose output has no rows/s figure is reported as failed, with its tail.
"""

from __future__ import annotations

import re
import subprocess
import time

from bench.context import REPO_ROOT, BenchContext, Measurement, failed

_RATE = re.compile(r"([\d,]+(?:\.\d+)?)\s*(rows|messages)/s")


def parse_rates(text: str) -> dict[str, float]:
    """The ``<number> rows/s`` and ``<number> messages/s`` figures of the ``sink:`` line of ``text``, or the
    last ones of ``text`` when no line starts with ``sink:`` (commas allowed)."""
    lines = [line for line in text.splitlines() if line.strip().startswith("sink:")]
    found: dict[str, float] = {}
    for number, unit in _RATE.findall(lines[0] if lines else text):
        found[unit] = float(number.replace(",", ""))
    return found


def summary(stdout: str) -> str:
    """The lines of the module's report that carry a rate (its other lines and stderr stay in the log)."""
    return "; ".join(line.strip() for line in stdout.splitlines() if "/s" in line)


def measure(ctx: BenchContext, rows: int, timeout_s: float = 300.0) -> Measurement:
    key, title = "sink", "sink: rows/s into DuckDB (bench/sink_throughput.py)"
    base = [ctx.python, "-m", "bench.sink_throughput"]
    started = time.monotonic()
    done = None
    for cmd in ([*base, "--rows", str(rows)], base):  # without --rows if the module no longer takes it
        try:
            done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            return failed(key, title, f"no result within {timeout_s:.0f} s", time.monotonic() - started)
        if done.returncode != 2:
            break
    wall = time.monotonic() - started
    assert done is not None
    output = done.stdout + done.stderr
    (ctx.logs / "sink_throughput.log").write_text(output)
    rates = parse_rates(output)
    if done.returncode != 0 or "rows" not in rates:
        tail = " | ".join(output.strip().splitlines()[-3:])
        return failed(key, title, f"exit {done.returncode}: {tail}", wall)
    note = summary(done.stdout)
    return Measurement(key, title, rate=rates["rows"], wall_s=wall, note=note, extra={"rates": rates})
