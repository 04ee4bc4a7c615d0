"""The model step of ``omnistream demo``: fit churn/CLV parameters on the simulated history before streaming it.

A retailer fits on its purchase history (``omnistream backfill`` + ``omnistream model fit``); the demo's history
is the simulated world itself. Buy-'til-you-die models need repeat purchases to fit, so the history is at least
90 days and 2,000 customers of the same world (same seed), however short the streamed run is.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from pipeline.models.params import save
from pipeline.simulate.config import SimConfig

MIN_CUSTOMERS, MIN_DAYS = 2000, 90


def fit_demo_model(console: Console, customers: int, days: int, seed: int, end_ms: int, path: Path) -> None:
    """Fit the purchase and activity models on the simulation's valid events and write them to ``path``."""
    from pipeline.evaluate.journeys import fit_history, simulated_history

    started = time.monotonic()
    with console.status("fitting churn and CLV models on the simulated purchase history"):
        world = SimConfig(customers=max(customers, MIN_CUSTOMERS), days=max(days, MIN_DAYS), seed=seed, end_ms=end_ms)
        history = simulated_history(world)
        params = fit_history(history.per_person, end_ms, version=f"demo-{seed}")
    save(params, path)
    console.print(
        f"models fitted on {len(history.per_person):,} simulated customers in {time.monotonic() - started:.1f}s "
        f"-> {path}"
    )
