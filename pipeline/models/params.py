"""The fitted parameter file workers load: versioned JSON, written atomically.

Guarantees: a file written by :func:`save` round-trips through :func:`load`; an unknown ``format`` or a missing
field raises :class:`ModelFileError` (workers refuse to score with parameters they do not understand). Not
guaranteed: that the parameters suit the traffic they score; that is the job of the fit's report.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.models.bgnbd import VARIANTS, BgParams
from pipeline.models.gammagamma import GgParams

PARAMS_FORMAT = "omnistream.btyd/1"


class ModelFileError(ValueError):
    """The parameter file is missing, unreadable or of an unknown format."""


@dataclass(frozen=True)
class ModelParams:
    """Fitted BTYD parameters. Times in the model are in units of ``unit_days`` days."""

    version: str
    variant: str
    bg: BgParams
    gg: GgParams | None
    unit_days: float
    log_likelihood: float
    customers: int
    calibration_end: str
    fitted_at: str
    #: BG/NBD of *active days* (any event), fitted when activity history is available: customers who stop
    #: buying rarely stopped buying often, so churn follows engagement better than purchases alone.
    activity: BgParams | None = None

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["bg"] = self.bg._asdict()
        doc["gg"] = self.gg._asdict() if self.gg else None
        doc["activity"] = self.activity._asdict() if self.activity else None
        return {"format": PARAMS_FORMAT, **doc}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ModelParams:
        if doc.get("format") != PARAMS_FORMAT:
            raise ModelFileError(f"unknown model parameter format {doc.get('format')!r}")
        try:
            variant = doc["variant"]
            if variant not in VARIANTS:
                raise ModelFileError(f"unknown model variant {variant!r}")
            gg, act = doc.get("gg"), doc.get("activity")
            return cls(
                version=str(doc["version"]),
                variant=variant,
                bg=BgParams(**doc["bg"]),
                gg=GgParams(**gg) if gg else None,
                unit_days=float(doc["unit_days"]),
                log_likelihood=float(doc["log_likelihood"]),
                customers=int(doc["customers"]),
                calibration_end=str(doc["calibration_end"]),
                fitted_at=str(doc["fitted_at"]),
                activity=BgParams(**act) if act else None,
            )
        except (KeyError, TypeError) as exc:
            raise ModelFileError(f"model parameter file lacks or mistypes a field: {exc}") from exc


def save(params: ModelParams, path: Path) -> None:
    """Write ``params`` to ``path`` atomically (a worker never reads half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(params.to_dict(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def load(path: Path) -> ModelParams:
    """Read a parameter file; raises :class:`ModelFileError` with the reason when it cannot be used."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"cannot read model parameters {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ModelFileError(f"model parameters {path} are not a JSON object")
    return ModelParams.from_dict(doc)
