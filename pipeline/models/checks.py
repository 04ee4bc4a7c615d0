"""Whether a fitted parameter set is identified: warnings in words for a marketer (the report, ``model fit`` and
``model validate`` print them)."""

from __future__ import annotations

from pipeline.models.params import ModelParams

#: A parameter beyond 10^±4 means the likelihood was flat there: the data did not determine it.
EDGE = 1e4


def fit_caveats(params: ModelParams | None) -> list[str]:
    """Warnings about a fitted parameter set the scores come from; [] when it looks identified."""
    if params is None:
        return []
    notes = []
    odd = [f"{name} = {value:.3g}" for name, value in params.bg._asdict().items() if not 1 / EDGE <= value <= EDGE]
    if odd:
        notes.append(
            f"The purchase model ({params.version}, fitted on {params.customers:,} customers) is degenerate: "
            f"{', '.join(odd)} lies beyond 10^±4, so the data did not determine it. P(alive), expected purchases "
            "and CLV built on it are unreliable: refit on a longer or larger history (`omnistream model fit`)."
        )
    if params.gg is not None:
        gg_odd = [f"{n} = {v:.3g}" for n, v in params.gg._asdict().items() if not 1 / EDGE <= v <= EDGE]
        if params.gg.q <= 1:
            notes.append(f"The spend model has q = {params.gg.q:.3g} <= 1 (no finite mean spend): CLV is not computed.")
        elif gg_odd:
            notes.append(
                f"The spend model ({params.version}) is degenerate: {', '.join(gg_odd)} lies beyond 10^±4; CLV "
                "rests on it and is unreliable (check that the purchase file's amount column is money, not "
                "quantity)."
            )
    return notes
