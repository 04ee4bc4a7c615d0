"""The journey step compiled with mypyc against the same step interpreted (``python -m bench.compiled``).

Measures one lever the throughput issue asks about: the domain logic compiled to C. The tracked files of this
checkout are copied to a scratch directory, the journey's modules (``MODULES``: the step, its customer machine,
sessions, stages, triggers, churn and the BG/NBD model) are compiled there with mypyc (the project's code is
``mypy --strict`` clean, which is what mypyc needs), and :mod:`bench.journey_step` runs in turns in the
interpreted tree and the compiled one, the same simulated month each time. Reports the CPU per event of both
and their ratio. Needs the dev virtualenv (mypy ships mypyc) and a C compiler.

Does not measure the whole worker: the journey step is about 40 % of a worker's CPU (bench/RESULTS.md,
Profile), so the whole pipeline gains less than the step does.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.context import REPO_ROOT

MODULES = (
    "pipeline/domain/eventtime.py",
    "pipeline/domain/sessions.py",
    "pipeline/domain/sessions_state.py",
    "pipeline/domain/sessions_summary.py",
    "pipeline/domain/churn.py",
    "pipeline/domain/stages.py",
    "pipeline/domain/triggers.py",
    "pipeline/domain/orders.py",
    "pipeline/models/bgnbd.py",
    "pipeline/steps/due_index.py",
    "pipeline/steps/journey.py",
    "pipeline/steps/journey_customer.py",
    "pipeline/steps/journey_profile.py",
    "pipeline/steps/journey_signals.py",
)
_PER_EVENT = re.compile(r"([\d,]+) us per event")


def copy_tree(dest: Path) -> None:
    """The tracked files of the checkout, without pyproject.toml (mypyc's build would validate it with the
    virtualenv's setuptools, which may predate its license field; mypy reads it from the checkout instead)."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout
    for name in files.splitlines():
        src = REPO_ROOT / name
        if name == "pyproject.toml" or not src.is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name)


def compile_modules(tree: Path) -> None:
    mypyc = Path(sys.executable).with_name("mypyc")
    if not mypyc.is_file():
        sys.exit(f"{mypyc} not found: run `make venv` (mypy, which ships mypyc, is a dev dependency)")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        sys.exit("no C compiler on PATH: mypyc needs one (Debian: apt-get install build-essential)")
    cmd = [str(mypyc), "--config-file", str(REPO_ROOT / "pyproject.toml"), *MODULES]
    done = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"mypyc failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def per_event_us(tree: Path, customers: int) -> float:
    """CPU µs per event of one journey-step round, run with ``tree`` first on the import path."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "bench.journey_step", "--customers", str(customers), "--rounds", "1"]
    out = subprocess.run(cmd, cwd=tree, env=env, check=True, capture_output=True, text=True).stdout
    found = _PER_EVENT.search(out)
    if found is None:
        raise RuntimeError(f"unexpected output of bench.journey_step: {out!r}")
    return float(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="turns of each tree, alternating")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="omnistream-mypyc-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        print(f"compiling {len(MODULES)} modules with mypyc in {tree} ...", flush=True)
        compile_modules(tree)
        interpreted: list[float] = []
        compiled: list[float] = []
        for r in range(args.rounds):
            interpreted.append(per_event_us(REPO_ROOT, args.customers))
            compiled.append(per_event_us(tree, args.customers))
            print(f"round {r + 1}: interpreted {interpreted[-1]:,.0f} us per event, "
                  f"compiled {compiled[-1]:,.0f} us per event", flush=True)  # fmt: skip
    best_i, best_c = min(interpreted), min(compiled)
    print(f"best of {args.rounds}: interpreted {best_i:,.0f}, compiled {best_c:,.0f} us per event: "
          f"{best_i / best_c:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
