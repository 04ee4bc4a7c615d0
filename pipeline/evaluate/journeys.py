"""Journey signals against simulator truth: churn ranking AUC and the store-visit-with-open-cart trigger.

:func:`evaluate_journeys` runs the pure journey logic (the same :class:`JourneySignals` the worker runs) over a
simulated world. Events go through the real ingest rules (:func:`canonicalise`) and are attributed to the
simulated person (perfect identity), so this scores journeys, triggers and churn separately from identity
quality, which ``evaluate identity`` scores. Each person's events are applied in event-time order, every timer
firing at its due time up to the end of the timeline (the batch reference's definition,
pipeline/evaluate/reference.py). The BTYD parameters (purchases and active days, modified BG/NBD, days as the
time unit) are fitted on the same history, as ``omnistream model fit`` would after a backfill.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from scipy.stats import rankdata

from pipeline.domain.churn import DAY_MS
from pipeline.domain.identity_rules import DEFAULT_POLICY
from pipeline.domain.ingest import IngestPolicy, canonicalise
from pipeline.domain.pii import Pseudonymiser
from pipeline.domain.records import CustomerEventRecord, Rejection, SourceRef
from pipeline.domain.sessions_summary import SessionPolicy
from pipeline.domain.triggers import PURCHASES, TriggerPolicy
from pipeline.evaluate.reference import ReferenceConfig, replay
from pipeline.models import bgnbd
from pipeline.models.fit import fit_bgnbd, fit_model
from pipeline.models.params import ModelParams
from pipeline.models.transactions import Transaction, summarise
from pipeline.simulate.config import SimConfig
from pipeline.simulate.simulation import Simulation
from pipeline.steps.journey_customer import CustomerState
from pipeline.steps.journey_profile import event_money
from pipeline.steps.journey_signals import SignalsConfig
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class JourneyReport:
    people: int
    events: int
    churned: int
    auc: float
    churn_flagged: int
    churn_flag_precision: float
    journeys: int
    journeys_consented: int
    offers_fired: int
    offers_denied: int
    signals_denied: int
    signals_by_type: dict[str, int]
    holdout_share: float
    profile_bytes_mean: float
    profile_bytes_max: int

    @property
    def offer_rate(self) -> float:
        return self.offers_fired / self.journeys_consented if self.journeys_consented else 0.0


def auc(scores: list[float], labels: list[bool]) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    pos = np.asarray(labels, dtype=bool)
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if not n1 or not n0:
        raise ValueError("AUC needs both classes")
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _day(t_ms: int) -> datetime:
    return datetime.fromtimestamp(t_ms / 1000, UTC)


@dataclass
class SimulatedHistory:
    """A simulation's valid events after the real ingest rules, per simulated person, and its scripted journeys."""

    sim: Simulation
    codec: AvroCodec
    per_person: defaultdict[str, list[CustomerEventRecord]]
    journeys: list[dict[str, object]]


def simulated_history(config: SimConfig, progress: Callable[[int], None] | None = None) -> SimulatedHistory:
    """Simulate ``config`` and canonicalise every valid event, attributed to its true person."""
    sim = Simulation(config)
    codec = AvroCodec(FileSchemaRegistry())
    ingest, pseudo = IngestPolicy(300_000, 400 * DAY_MS, 65536), Pseudonymiser(b"evaluate")
    per_person: defaultdict[str, list[CustomerEventRecord]] = defaultdict(list)
    journeys: list[dict[str, object]] = []
    for n, msg in enumerate(sim.valid_events()):
        if msg.record is None or msg.person_id is None or msg.subject is None:
            continue
        record = codec.decode(codec.encode(msg.subject, msg.record, msg.version))
        canon = canonicalise(
            msg.channel,
            dict(record.record),
            SourceRef(msg.channel, 0, n, record.schema_id),
            config.end_ms,
            ingest,
            pseudo,
        )
        if not isinstance(canon, Rejection):
            per_person[msg.person_id].append(canon)
        if msg.note and msg.note.get("journey"):
            journeys.append(dict(msg.note))
        if progress is not None and n % 1000 == 0:
            progress(n)
    return SimulatedHistory(sim, codec, per_person, journeys)


def fit_history(
    per_person: dict[str, list[CustomerEventRecord]], end_ms: int, version: str = "evaluate"
) -> ModelParams:
    """Purchase model (modified BG/NBD + Gamma-Gamma) and activity model, days as the unit, fitted on
    ``per_person`` as ``omnistream model fit`` would after a backfill."""
    end_day = _day(end_ms).date()
    buys = [
        Transaction(p, _day(e["event_time"]).date(), event_money(e) / 100, None, 0)
        for p, evs in per_person.items()
        for e in evs
        if e["event_type"] in PURCHASES
    ]
    acts = [Transaction(p, _day(e["event_time"]).date(), 0.0, None, 0) for p, evs in per_person.items() for e in evs]
    params = fit_model(summarise(buys, end_day, 1.0), end_day, 1.0, bgnbd.MBGNBD, version)
    activity, _ = fit_bgnbd(summarise(acts, end_day, 1.0), bgnbd.MBGNBD)
    return type(params)(**{**params.__dict__, "activity": activity})


def evaluate_journeys(
    config: SimConfig, policy: TriggerPolicy | None = None, progress: Callable[[int], None] | None = None
) -> JourneyReport:
    """Simulate ``config``, run the journey logic per person, score against truth (see the module docstring)."""
    history = simulated_history(config, progress)
    sim, codec, per_person, journeys = history.sim, history.codec, history.per_person, history.journeys
    params = fit_history(per_person, config.end_ms)
    trig = policy or TriggerPolicy(holdout_share=config.holdout_share)
    ref = ReferenceConfig(SessionPolicy(), SignalsConfig(triggers=trig, params=params), DEFAULT_POLICY)
    # The timeline ends at end_ms: the watermark passes it once every source is idle.
    done = replay(per_person, ref, codec, config.end_ms + 1)
    out = done.out
    final = {person: prof for person, prof in done.profiles.items() if prof is not None}
    people = {p.person_id: p for p in sim.population}
    sizes = [len(CustomerState(profile=prof).encode()) for prof in final.values()]
    signals = [codec.decode(v).record for _, v in out.signals]
    by_type: defaultdict[str, int] = defaultdict(int)
    denied_signals = 0
    offers: defaultdict[str, list[int]] = defaultdict(list)  # person -> offer event times
    for s in signals:
        by_type[s["signal_type"]] += 1
        if not people[s["customer_id"]].consent_marketing:
            denied_signals += 1
        if s["signal_type"] == "store_visit_open_cart":
            offers[s["customer_id"]].append(s["event_time"])

    def fired(j: dict[str, object]) -> bool:
        # The store entry may be the app's geofence event a minute before the store's own visit event.
        lo, hi = int(str(j["cart_time_ms"])), int(str(j["visit_time_ms"]))
        return any(lo <= t <= hi for t in offers.get(str(j["person_id"]), ()))

    consented = [j for j in journeys if people[str(j["person_id"])].consent_marketing]
    denied = [j for j in journeys if not people[str(j["person_id"])].consent_marketing]
    scored = [(p, prof) for p, prof in final.items() if prof.score[1] is not None or prof.score[0] is not None]
    labels = [people[p].churn_at_ms is not None for p, _ in scored]
    risk = [1.0 - float(prof.score[1] if prof.score[1] is not None else prof.score[0]) for _, prof in scored]  # type: ignore[arg-type]
    flagged = [lab for (_, prof), lab in zip(scored, labels, strict=True) if prof.churn_risk]
    return JourneyReport(
        people=len(per_person),
        events=sum(len(v) for v in per_person.values()),
        churned=sum(labels),
        auc=auc(risk, labels),
        churn_flagged=len(flagged),
        churn_flag_precision=sum(flagged) / len(flagged) if flagged else 0.0,
        journeys=len(journeys),
        journeys_consented=len(consented),
        offers_fired=sum(map(fired, consented)),
        offers_denied=sum(map(fired, denied)),
        signals_denied=denied_signals,
        signals_by_type=dict(sorted(by_type.items())),
        holdout_share=sum(s["holdout"] for s in signals) / len(signals) if signals else 0.0,
        profile_bytes_mean=float(np.mean(sizes)),
        profile_bytes_max=max(sizes),
    )
