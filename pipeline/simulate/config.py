"""Simulation parameters and the seed derivation every random choice goes through.

Guarantees: a :class:`SimConfig` is frozen and validated at construction, and :func:`stable_hash` gives
the same 64-bit value for the same parts in every process, run and Python version (it does not use
``hash()``, which is salted per process for strings).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

#: Bad-input kinds, each with the failure type the pipeline must report for it (see ``messages``).
BAD_KINDS: tuple[str, ...] = (
    "garbage",
    "truncated",
    "unknown_schema",
    "wrong_subject",
    "no_identifier",
    "future_timestamp",
    "negative_amount",
    "unknown_currency",
    "too_old",
    "oversized",
)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What to simulate. ``end_ms`` is explicit (no default) so the generator never reads a clock.

    Shares are fractions of *all* messages produced: with ``bad_share=0.02`` about 2% of the stream is bad
    input, ``duplicate_share`` re-sends and ``late_share`` valid events delivered hours late. ``activity``
    scales every person's session rate (1.0 gives roughly 10 events per customer per 30 days).
    """

    customers: int
    days: int
    seed: int
    end_ms: int
    bad_share: float = 0.02
    duplicate_share: float = 0.01
    late_share: float = 0.01
    web_v1_share: float = 0.2
    holdout_share: float = 0.1
    consent_denied_share: float = 0.1
    churn_share: float = 0.2
    activity: float = 1.0
    bad_kinds: tuple[str, ...] = field(default=BAD_KINDS)

    def __post_init__(self) -> None:
        if self.customers < 1 or self.days < 1:
            raise ValueError("customers and days must be >= 1")
        if self.end_ms < 10 * 365 * DAY_MS:
            raise ValueError(f"end_ms {self.end_ms} is not a plausible epoch-milliseconds timestamp")
        shares = {
            "bad_share": self.bad_share,
            "duplicate_share": self.duplicate_share,
            "late_share": self.late_share,
            "web_v1_share": self.web_v1_share,
            "holdout_share": self.holdout_share,
            "consent_denied_share": self.consent_denied_share,
            "churn_share": self.churn_share,
        }
        for name, value in shares.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        # Shares are of the whole stream: bad + duplicate + late must leave room for ordinary events.
        if self.bad_share + self.duplicate_share + self.late_share >= 0.5:
            raise ValueError("bad_share + duplicate_share + late_share must stay below 0.5")
        if self.activity <= 0:
            raise ValueError("activity must be > 0")
        unknown = set(self.bad_kinds) - set(BAD_KINDS)
        if unknown or (self.bad_share > 0 and not self.bad_kinds):
            raise ValueError(f"bad_kinds must be a non-empty subset of {BAD_KINDS}, got {self.bad_kinds}")

    @property
    def start_ms(self) -> int:
        """First instant of the simulated timeline."""
        return self.end_ms - self.days * DAY_MS


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of ``parts`` (by their ``str``) that is identical in every process and run."""
    text = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")
