"""Ground truth of a simulation run, for evaluators (identity, journeys, campaigns, ingest outcomes).

Feed every produced message to :meth:`TruthRecorder.observe` in order, then :meth:`to_dict` / :meth:`write`.
The JSON document (``TRUTH_FORMAT``) has these keys:

``config``              the SimConfig, start/end of the timeline and channel -> topic names
``identifiers``         ``"<kind>:<raw value>"`` -> person_id, for every identifier in a valid message
                        (kinds are Identifiers field names; email/phone raw, as sent, so evaluators can
                        normalise and hash them with the pipeline's key); shared devices are left out
``shared_identifiers``  sorted ``"device_id:<id>"`` of kiosks and family tablets (never merge on them)
``shared_identifier_users``  shared identifier -> {"kind", "person_ids"} of people seen using it
``people``              person_id -> {churned_at_ms, consent_marketing, first_activity_ms,
                        last_activity_ms, events, purchases, purchase_rate_per_day, registered}
``holdout``             campaign_id -> sorted person_ids in that campaign's holdout (audience only)
``campaigns``           campaign_id -> {channel, name, sent_at_ms, audience, holdout, responders}
                        (responders: people with a valid event attributed to the campaign)
``journeys``            store_visit_with_open_cart scenarios: {person_id, product_ids, cart_event_id,
                        cart_event_ids, cart_time_ms, visit_event_id, visit_time_ms, purchase_event_id,
                        store_id, journey}
``expected``            {messages, per_topic, per_kind, per_outcome, per_topic_outcome,
                        per_topic_kind, unique_valid_events, duplicates}
``event_ids``           kind -> event ids, for every bad kind that has one, and for late and duplicate
``conflicts``           identifiers seen with two people (always empty unless the generator is broken)
``behind``              per valid or duplicate message that arrived after a later event of its input partition:
                        [event id, kind, ms behind that partition's largest event time so far, channel,
                        partition, offset]; with :func:`expected_for` the outcomes for a given allowed lateness

Guarantees: counts are exactly those of the observed messages; "valid" covers kinds valid and late.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kafka.partitioner.default import murmur2

from pipeline.simulate.messages import DUPLICATE, LATE, VALID, SimMessage
from pipeline.simulate.population import in_audience, in_holdout
from pipeline.simulate.simulation import Simulation

TRUTH_FORMAT = "omnistream.simulate.truth/1"
_PURCHASES = frozenset({"purchase", "pos_purchase"})


class TruthRecorder:
    """Accumulates the ground truth of the messages it is shown (see the module docstring)."""

    def __init__(
        self, sim: Simulation, topics: Mapping[str, str] | None = None, partitions: Mapping[str, int] | None = None
    ) -> None:
        self.sim = sim
        self.topics = dict(topics) if topics else {}
        self.partitions = dict(partitions) if partitions else {}
        self._marks: dict[tuple[str, int], int] = {}
        self._offsets: Counter[tuple[str, int]] = Counter()
        self.behind: list[list[Any]] = []
        self._shared = {f"device_id:{d}": kind for d, kind in sim.shared_devices.items()}
        self.per_topic: Counter[str] = Counter()
        self.per_kind: Counter[str] = Counter()
        self.per_outcome: Counter[str] = Counter()
        self.per_topic_outcome: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.per_topic_kind: Counter[tuple[str, str]] = Counter()
        self.identifiers: dict[str, str] = {}
        self.shared_users: defaultdict[str, set[str]] = defaultdict(set)
        self.conflicts: list[dict[str, Any]] = []
        self.valid_ids: set[str] = set()
        self.event_ids: defaultdict[str, list[str]] = defaultdict(list)
        self.journeys: list[dict[str, Any]] = []
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.events: Counter[str] = Counter()
        self.purchases: Counter[str] = Counter()
        self._campaign_ids = {c.campaign_id for c in sim.catalog.campaigns}
        self.responders: defaultdict[str, set[str]] = defaultdict(set)

    def observe(self, msg: SimMessage) -> None:
        """Account for one produced message."""
        topic = self.topics.get(msg.channel, msg.channel)
        partition = (murmur2(msg.key) & 0x7FFFFFFF) % self.partitions.get(topic, 1)
        offset = self._offsets[topic, partition]
        self._offsets[topic, partition] += 1
        if msg.kind in (VALID, LATE, DUPLICATE):
            self._track_order(msg, partition, offset)
        self.per_topic[topic] += 1
        self.per_kind[msg.kind] += 1
        self.per_outcome[msg.expected] += 1
        self.per_topic_outcome[topic][msg.expected] += 1
        self.per_topic_kind[topic, msg.kind] += 1
        if msg.kind not in (VALID, LATE):
            if msg.event_id is not None:
                self.event_ids[msg.kind].append(msg.event_id)
            return
        assert msg.record is not None and msg.event_id is not None and msg.person_id is not None
        if msg.kind == LATE:
            self.event_ids[LATE].append(msg.event_id)
        self.valid_ids.add(msg.event_id)
        pid, t = msg.person_id, msg.event_time_ms
        env = msg.record["envelope"]
        for name, value in env["identifiers"].items():
            if not value:
                continue
            key = f"{name}:{value}"
            if key in self._shared:
                self.shared_users[key].add(pid)
                continue
            owner = self.identifiers.setdefault(key, pid)
            if owner != pid:
                self.conflicts.append({"identifier": key, "person_ids": [owner, pid]})
        self.first[pid] = min(self.first.get(pid, t), t)
        self.last[pid] = max(self.last.get(pid, t), t)
        self.events[pid] += 1
        if msg.record["event_type"] in _PURCHASES:
            self.purchases[pid] += 1
        attribution = env["attribution"]
        if attribution and attribution["campaign_id"] in self._campaign_ids:
            self.responders[attribution["campaign_id"]].add(pid)
        if msg.note and msg.note.get("journey"):
            self.journeys.append(dict(msg.note))

    def _track_order(self, msg: SimMessage, partition: int, offset: int) -> None:
        """How far behind its input partition's progress a message arrives (Kafka's default partitioner; offsets
        count from 0 on a fresh topic)."""
        mark = self._marks.get((msg.channel, partition))
        t = msg.event_time_ms
        if mark is not None and t < mark:
            self.behind.append([msg.event_id, msg.kind, mark - t, msg.channel, partition, offset])
        self._marks[msg.channel, partition] = t if mark is None else max(mark, t)

    def to_dict(self) -> dict[str, Any]:
        """The truth document (see the module docstring for its structure)."""
        config = self.sim.config
        people = self.sim.population
        campaigns = self.sim.catalog.campaigns
        holdout: dict[str, list[str]] = {}
        campaign_info: dict[str, dict[str, Any]] = {}
        for c in campaigns:
            audience = [p for p in people if in_audience(p, c)]
            held = sorted(p.person_id for p in audience if in_holdout(c.campaign_id, p.person_id, config.holdout_share))
            holdout[c.campaign_id] = held
            campaign_info[c.campaign_id] = {
                "channel": c.channel,
                "name": c.name,
                "sent_at_ms": c.sent_ms,
                "audience": len(audience),
                "holdout": len(held),
                "responders": len(self.responders.get(c.campaign_id, ())),
            }
        config_doc = asdict(config)
        config_doc.update(start_ms=config.start_ms, topics=self.topics or None)
        return {
            "format": TRUTH_FORMAT,
            "config": config_doc,
            "identifiers": self.identifiers,
            "shared_identifiers": sorted(self._shared),
            "shared_identifier_users": {
                key: {"kind": self._shared[key], "person_ids": sorted(users)}
                for key, users in sorted(self.shared_users.items())
            },
            "people": {
                p.person_id: {
                    "registered": p.customer_id is not None,
                    "consent_marketing": p.consent_marketing,
                    "churned_at_ms": p.churn_at_ms,
                    "first_activity_ms": self.first.get(p.person_id),
                    "last_activity_ms": self.last.get(p.person_id),
                    "events": self.events.get(p.person_id, 0),
                    "purchases": self.purchases.get(p.person_id, 0),
                    "purchase_rate_per_day": round(p.purchase_rate, 6),
                }
                for p in people
            },
            "holdout": holdout,
            "campaigns": campaign_info,
            "journeys": self.journeys,
            "expected": {
                "messages": sum(self.per_kind.values()),
                "per_topic": dict(sorted(self.per_topic.items())),
                "per_kind": dict(sorted(self.per_kind.items())),
                "per_outcome": dict(sorted(self.per_outcome.items())),
                "per_topic_outcome": {t: dict(sorted(c.items())) for t, c in sorted(self.per_topic_outcome.items())},
                "per_topic_kind": {
                    t: {k: n for (tt, k), n in sorted(self.per_topic_kind.items()) if tt == t}
                    for t in sorted(self.per_topic)
                },
                "unique_valid_events": len(self.valid_ids),
                "duplicates": self.per_kind.get(DUPLICATE, 0),
            },
            "event_ids": {kind: ids for kind, ids in sorted(self.event_ids.items())},
            "conflicts": self.conflicts,
            "behind": self.behind,
        }

    def write(self, path: Path) -> None:
        """Write the truth as JSON atomically (a reader never sees a half-written file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, separators=(",", ":"))
        os.replace(tmp, path)


def expected_for(truth: Mapping[str, Any], allowed_lateness_ms: int) -> dict[str, Any]:
    """``truth["expected"]`` for a pipeline with this allowed lateness: valid messages and duplicates more than
    it behind their input partition's progress become ``late_event`` failed events (docs/time.md), listed as
    (channel, partition, offset) in ``late_beyond_lateness``."""
    expected: dict[str, Any] = json.loads(json.dumps(truth["expected"]))
    late = [(row[0], row[1]) for row in truth.get("behind", []) if row[2] > allowed_lateness_ms]
    expected["late_beyond_lateness"] = sorted(tuple(row[3:6]) for row in truth.get("behind", [])
                                              if row[2] > allowed_lateness_ms)  # fmt: skip
    if not late:
        return expected
    topics = truth.get("config", {}).get("topics") or {}
    for row in truth.get("behind", []):
        if row[2] > allowed_lateness_ms:
            was = "duplicate" if row[1] == DUPLICATE else "valid"
            for outcomes in (expected["per_outcome"], expected["per_topic_outcome"][topics.get(row[3], row[3])]):
                outcomes[was] = outcomes.get(was, 0) - 1
                outcomes["late_event"] = outcomes.get("late_event", 0) + 1
    late_ids = {eid for eid, kind in late if kind != DUPLICATE}
    duplicates = sum(1 for eid, kind in late if kind == DUPLICATE)
    expected["unique_valid_events"] -= len(late_ids)
    expected["duplicates"] -= duplicates
    return expected
