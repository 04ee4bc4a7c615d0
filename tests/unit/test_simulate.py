"""The simulator: determinism, schema conformance, the ingest outcome contract, and ground truth.

No Kafka: the Kafka sink is exercised against a fake producer, everything else is pure.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import fastavro
import phonenumbers
import pytest
import typer
from fastavro.validation import validate
from typer.testing import CliRunner

from pipeline.domain.ingest import IngestPolicy, canonicalise, size_check
from pipeline.domain.pii import Pseudonymiser, normalise_email
from pipeline.domain.records import Rejection, SourceRef
from pipeline.settings import load_settings
from pipeline.simulate import (
    BAD_KINDS,
    EXPECTED_OUTCOME,
    SimConfig,
    SimMessage,
    Simulation,
    TruthRecorder,
    encode_message,
    expected_for,
    generate,
)
from pipeline.simulate.config import DAY_MS, HOUR_MS
from pipeline.simulate.faults import UNKNOWN_SCHEMA_ID_BASE
from pipeline.simulate.producer import FileSink, KafkaSink, NullSink, produce
from schemas.codec import AvroCodec
from schemas.errors import CodecError
from schemas.registry import FileSchemaRegistry

AVRO = Path(__file__).resolve().parents[2] / "schemas" / "avro"
END = 1_750_000_020_000 - 1_750_000_020_000 % 60_000  # 2025-06-15, on a minute
TOPICS = {c: c for c in ("web", "mobile", "store", "social")}
IDENTIFIER_FIELDS = ("anonymous_id", "device_id", "customer_id", "email", "phone", "loyalty_id", "social_handle")


# --- shared fixtures ------------------------------------------------------------------------------------


def _parsed_subjects() -> dict[tuple[str, int], Any]:
    """Every subject version parsed with fastavro directly (shared types first), independent of the codec."""
    named: dict[str, Any] = {}
    pending = [json.loads(p.read_text()) for p in sorted((AVRO / "types").glob("*.avsc"))]
    while pending:
        left = []
        for schema in pending:
            try:
                fastavro.parse_schema(schema, named_schemas=named)
            except fastavro.schema.UnknownType:
                left.append(schema)
        assert len(left) < len(pending)
        pending = left
    parsed = {}
    for path in sorted((AVRO / "subjects").glob("*/v*.avsc")):
        parsed[path.parent.name, int(path.stem[1:])] = fastavro.parse_schema(
            json.loads(path.read_text()), named_schemas=dict(named)
        )
    return parsed


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return Simulation(SimConfig(customers=2000, days=30, seed=11, end_ms=END))


@pytest.fixture(scope="module")
def messages(sim: Simulation) -> list[SimMessage]:
    return list(sim.messages())


@pytest.fixture(scope="module")
def truth(sim: Simulation, messages: list[SimMessage]) -> dict[str, Any]:
    recorder = TruthRecorder(sim, TOPICS)
    for msg in messages:
        recorder.observe(msg)
    return recorder.to_dict()


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return AvroCodec(FileSchemaRegistry())


def _valid(messages: list[SimMessage]) -> list[SimMessage]:
    return [m for m in messages if m.kind in ("valid", "late")]


def _ids(msg: SimMessage) -> dict[str, str | None]:
    assert msg.record is not None
    ids: dict[str, str | None] = msg.record["envelope"]["identifiers"]
    return ids


# --- determinism ----------------------------------------------------------------------------------------


def test_same_seed_same_messages_and_bytes(codec: AvroCodec) -> None:
    config = SimConfig(customers=300, days=14, seed=5, end_ms=END)
    first, second = list(generate(config)), list(generate(config))
    assert first == second
    assert [encode_message(m, codec) for m in first] == [encode_message(m, codec) for m in second]


def test_different_seed_differs() -> None:
    a = [m.event_id for m in generate(SimConfig(customers=200, days=7, seed=1, end_ms=END))]
    b = [m.event_id for m in generate(SimConfig(customers=200, days=7, seed=2, end_ms=END))]
    assert a != b
    assert not set(a) & set(b) - {None}


def test_a_person_does_not_depend_on_the_population_size() -> None:
    def events_of(customers: int, person_id: str) -> list[SimMessage]:
        sim = Simulation(SimConfig(customers=customers, days=20, seed=9, end_ms=END))
        return [m for m in sim.valid_events() if m.person_id == person_id]

    for person in ("person-000003", "person-000017", "person-000040"):
        assert events_of(50, person) == events_of(120, person)


# --- contracts ------------------------------------------------------------------------------------------


def test_every_valid_record_matches_its_subject_schema(messages: list[SimMessage]) -> None:
    schemas = _parsed_subjects()
    for msg in messages:
        if msg.record is None or msg.kind == "oversized":
            continue
        assert msg.subject is not None and msg.version is not None
        assert validate(msg.record, schemas[msg.subject, msg.version], raise_errors=True)
        if msg.subject == "web" and msg.version == 1:
            assert "referrer" not in msg.record


def test_codec_round_trip_of_valid_messages(messages: list[SimMessage], codec: AvroCodec) -> None:
    for msg in _valid(messages)[:3000]:
        decoded = codec.decode(encode_message(msg, codec), {msg.channel})
        assert decoded.record["envelope"]["event_id"] == msg.event_id
        assert decoded.record["envelope"]["event_time"] == msg.event_time_ms


def test_ingest_reports_the_expected_outcome_for_every_message(messages: list[SimMessage], codec: AvroCodec) -> None:
    """The contract other tests rely on: kind -> expected outcome, checked against ingest's real rules."""
    settings = load_settings()
    policy = IngestPolicy(
        max_future_skew_ms=5 * 60_000, late_horizon_ms=400 * DAY_MS, max_event_bytes=settings.max_event_bytes
    )
    pseudo = Pseudonymiser(b"test-secret")
    seen: set[str] = set()
    mismatches: list[tuple[str, str, str]] = []
    for offset, msg in enumerate(messages):
        value = encode_message(msg, codec)
        outcome = _ingest_outcome(msg.channel, value, offset, codec, policy, pseudo, now_ms=END + HOUR_MS, seen=seen)
        if outcome != msg.expected:
            mismatches.append((msg.kind, msg.expected, outcome))
    assert not mismatches, Counter(mismatches).most_common(5)


def _ingest_outcome(
    channel: str,
    value: bytes,
    offset: int,
    codec: AvroCodec,
    policy: IngestPolicy,
    pseudo: Pseudonymiser,
    now_ms: int,
    seen: set[str],
) -> str:
    rejection = size_check(value, policy)
    if rejection is not None:
        return str(rejection.failure_type)
    try:
        decoded = codec.decode(value, {channel})
    except CodecError as exc:
        return exc.failure_type
    result = canonicalise(
        channel, decoded.record, SourceRef(channel, 0, offset, decoded.schema_id), now_ms, policy, pseudo
    )
    if isinstance(result, Rejection):
        return str(result.failure_type)
    if result["event_id"] in seen:
        return "duplicate"
    seen.add(result["event_id"])
    return "valid"


def test_unknown_schema_ids_are_not_registered(messages: list[SimMessage]) -> None:
    registry = FileSchemaRegistry()
    known = {s.schema_id for s in registry.all_schemas()}
    assert all(UNKNOWN_SCHEMA_ID_BASE + i not in known for i in range(256))
    unknown = [m for m in messages if m.kind == "unknown_schema"]
    assert unknown and all(m.raw is not None and m.raw[0] == 0 for m in unknown)
    assert all(m.raw is not None and m.raw[0] != 0 for m in messages if m.kind == "garbage")


# --- mix and ordering -----------------------------------------------------------------------------------


def test_kind_shares_follow_the_config(messages: list[SimMessage]) -> None:
    kinds = Counter(m.kind for m in messages)
    total = len(messages)
    bad = sum(kinds[k] for k in BAD_KINDS)
    assert bad / total == pytest.approx(0.02, rel=0.2)
    assert kinds["duplicate"] / total == pytest.approx(0.01, rel=0.25)
    assert kinds["late"] / total == pytest.approx(0.01, rel=0.25)
    assert all(kinds[k] > 0 for k in BAD_KINDS)
    web = [m for m in _valid(messages) if m.channel == "web"]
    assert sum(m.version == 1 for m in web) / len(web) == pytest.approx(0.2, abs=0.03)


def test_custom_shares_and_kinds() -> None:
    config = SimConfig(customers=500, days=14, seed=3, end_ms=END, bad_share=0.1, bad_kinds=("garbage", "too_old"))
    kinds = Counter(m.kind for m in generate(config))
    total = sum(kinds.values())
    assert (kinds["garbage"] + kinds["too_old"]) / total == pytest.approx(0.1, rel=0.15)
    assert not set(kinds) & (set(BAD_KINDS) - {"garbage", "too_old"})
    none = Counter(
        m.kind
        for m in generate(
            SimConfig(customers=200, days=7, seed=3, end_ms=END, bad_share=0.0, duplicate_share=0.0, late_share=0.0)
        )
    )
    assert set(none) == {"valid"}


def test_stream_is_in_event_time_order_except_late_ones(messages: list[SimMessage]) -> None:
    valid_times = [m.event_time_ms for m in messages if m.kind == "valid"]
    assert valid_times == sorted(valid_times)
    assert all(END - 30 * DAY_MS <= t < END for t in valid_times)
    last_seen = 0
    late_lags = []
    for msg in messages:
        if msg.kind == "late":
            late_lags.append(last_seen - msg.event_time_ms)
        elif msg.kind == "valid":
            last_seen = msg.event_time_ms
    assert late_lags and sum(lag >= HOUR_MS for lag in late_lags) / len(late_lags) > 0.8


def test_duplicates_are_exact_resends_of_earlier_valid_messages(messages: list[SimMessage], codec: AvroCodec) -> None:
    sent: dict[str, bytes] = {}
    for msg in messages:
        if msg.kind == "valid":
            assert msg.event_id is not None
            sent[msg.event_id] = encode_message(msg, codec)
        elif msg.kind == "duplicate":
            assert msg.event_id in sent and encode_message(msg, codec) == sent[msg.event_id]


def test_time_relative_bad_inputs(messages: list[SimMessage]) -> None:
    for msg in messages:
        if msg.kind == "future_timestamp":
            assert msg.event_time_ms >= END + 2 * DAY_MS
        elif msg.kind == "too_old":
            assert msg.event_time_ms <= END - 700 * DAY_MS
        elif msg.kind == "oversized":
            assert msg.record is not None and len(msg.record["text"]) >= 100 * 1024
        elif msg.kind == "wrong_subject":
            assert msg.channel == "web" and msg.subject == "store"


# --- ground truth ---------------------------------------------------------------------------------------


def test_truth_counts_match_the_stream(messages: list[SimMessage], truth: dict[str, Any]) -> None:
    expected = truth["expected"]
    assert expected["messages"] == len(messages)
    assert expected["per_topic"] == dict(Counter(m.channel for m in messages))
    assert expected["per_kind"] == dict(Counter(m.kind for m in messages))
    assert expected["per_outcome"] == dict(Counter(m.expected for m in messages))
    valid_ids = [m.event_id for m in _valid(messages)]
    assert expected["unique_valid_events"] == len(valid_ids) == len(set(valid_ids))
    assert expected["duplicates"] == sum(m.kind == "duplicate" for m in messages)
    for kind in BAD_KINDS:
        ids = [m.event_id for m in messages if m.kind == kind and m.event_id]
        assert truth["event_ids"].get(kind, []) == ids
    assert set(EXPECTED_OUTCOME) >= set(expected["per_kind"])
    assert truth["conflicts"] == []


def test_truth_identifiers_are_consistent(sim: Simulation, truth: dict[str, Any]) -> None:
    people = {p.person_id: p for p in sim.population}
    for key, person_id in truth["identifiers"].items():
        kind, _, value = key.partition(":")
        p = people[person_id]
        own: dict[str, set[str | None]] = {
            "anonymous_id": set(p.cookies),
            "device_id": set(p.devices),
            "customer_id": {p.customer_id},
            "email": {p.email},
            "phone": {p.phone},
            "loyalty_id": {p.loyalty_id},
            "social_handle": {p.social_handle},
        }
        if kind == "email":
            value = normalise_email(value) or ""
        elif kind == "phone":
            value = value.replace(" ", "")
        assert value in own[kind], key
    # Normalised e-mails and phones still map to one person each.
    by_norm: dict[str, set[str]] = defaultdict(set)
    for key, person_id in truth["identifiers"].items():
        kind, _, value = key.partition(":")
        norm = normalise_email(value) if kind == "email" else value.replace(" ", "") if kind == "phone" else value
        by_norm[f"{kind}:{norm}"].add(person_id)
    assert all(len(owners) == 1 for owners in by_norm.values())
    assert not set(truth["identifiers"]) & set(truth["shared_identifiers"])
    assert {k for k in truth["identifiers"] if k.startswith("email:")}
    assert {k for k in truth["identifiers"] if k.startswith("phone:")}


def test_phone_numbers_are_valid_numbers(truth: dict[str, Any]) -> None:
    phones = [k.partition(":")[2] for k in truth["identifiers"] if k.startswith("phone:")]
    assert phones and all(phonenumbers.is_valid_number(phonenumbers.parse(p)) for p in phones)


def test_shared_kiosk_used_by_many_people_always_with_a_customer_id(
    messages: list[SimMessage], truth: dict[str, Any]
) -> None:
    users = truth["shared_identifier_users"]
    kiosks = [v["person_ids"] for v in users.values() if v["kind"] == "store_kiosk"]
    assert kiosks and max(len(people) for people in kiosks) >= 5
    kiosk_ids = {k.partition(":")[2] for k, v in users.items() if v["kind"] == "store_kiosk"}
    kiosk_events = [m for m in _valid(messages) if _ids(m)["device_id"] in kiosk_ids]
    assert kiosk_events and all(_ids(m)["customer_id"] for m in kiosk_events)
    tablets = [v["person_ids"] for v in users.values() if v["kind"] == "family_tablet"]
    assert tablets and max(len(people) for people in tablets) >= 2


def test_anonymous_cookies_later_log_in(messages: list[SimMessage]) -> None:
    anonymous_first: set[str] = set()
    linked_later = 0
    for msg in _valid(messages):
        ids = _ids(msg)
        cookie = ids["anonymous_id"]
        if msg.channel != "web" or cookie is None:
            continue
        if ids["customer_id"] is None:
            anonymous_first.add(cookie)
        elif msg.record is not None and msg.record["event_type"] == "login" and cookie in anonymous_first:
            linked_later += 1
    assert linked_later >= 50


def test_open_cart_journeys_end_in_the_store_within_48_hours(messages: list[SimMessage], truth: dict[str, Any]) -> None:
    journeys = truth["journeys"]
    assert len(journeys) >= 20
    by_id = {m.event_id: m for m in _valid(messages)}
    for j in journeys:
        cart, visit, purchase = by_id[j["cart_event_id"]], by_id[j["visit_event_id"]], by_id[j["purchase_event_id"]]
        assert cart.person_id == visit.person_id == purchase.person_id == j["person_id"]
        assert cart.record is not None and visit.record is not None and purchase.record is not None
        assert cart.record["event_type"] == "add_to_cart" and _ids(cart)["customer_id"]
        assert visit.record["event_type"] == "store_visit" and purchase.record["event_type"] == "pos_purchase"
        assert 0 < visit.event_time_ms - cart.event_time_ms <= 48 * HOUR_MS
        assert set(j["product_ids"]) <= {i["product_id"] for i in purchase.record["items"]}
        between = [
            m
            for m in _valid(messages)
            if m.person_id == j["person_id"]
            and cart.event_time_ms < m.event_time_ms < visit.event_time_ms
            and m.record is not None
            and m.record["event_type"] in ("purchase", "pos_purchase")
        ]
        assert not between


def test_holdout_people_get_no_campaign_push_and_consent_is_honoured(
    sim: Simulation, messages: list[SimMessage], truth: dict[str, Any]
) -> None:
    people = {p.person_id: p for p in sim.population}
    holdout = {c: set(ids) for c, ids in truth["holdout"].items()}
    assert holdout and all(holdout.values())
    responses = 0
    for msg in _valid(messages):
        assert msg.record is not None and msg.person_id is not None
        attribution = msg.record["envelope"]["attribution"]
        campaign = attribution and attribution["campaign_id"]
        if campaign in holdout:
            responses += 1
            assert msg.person_id not in holdout[campaign]
            assert people[msg.person_id].consent_marketing
    assert responses > 0
    for cid, info in truth["campaigns"].items():
        assert info["holdout"] / info["audience"] == pytest.approx(0.1, abs=0.05), cid


def test_consent_denied_people_exist_and_their_events_say_so(
    sim: Simulation, messages: list[SimMessage], truth: dict[str, Any]
) -> None:
    denied = {pid for pid, info in truth["people"].items() if not info["consent_marketing"]}
    assert len(denied) / len(truth["people"]) == pytest.approx(0.1, abs=0.03)
    for msg in _valid(messages):
        assert msg.record is not None
        consent = msg.record["envelope"]["consent"]
        if consent is not None:
            assert consent["marketing"] is (msg.person_id not in denied)


def test_churners_stop_all_activity(messages: list[SimMessage], truth: dict[str, Any]) -> None:
    churned = {pid: info["churned_at_ms"] for pid, info in truth["people"].items() if info["churned_at_ms"]}
    assert len(churned) / len(truth["people"]) == pytest.approx(0.2, abs=0.04)
    for msg in _valid(messages):
        assert msg.person_id is not None
        churn = churned.get(msg.person_id)
        assert churn is None or msg.event_time_ms < churn
    for pid, churn in churned.items():
        last = truth["people"][pid]["last_activity_ms"]
        assert last is None or last < churn


def test_repeat_buyers_money_and_channels(messages: list[SimMessage], truth: dict[str, Any]) -> None:
    purchases = Counter(info["purchases"] for info in truth["people"].values())
    assert sum(n for k, n in purchases.items() if k >= 3) >= 20
    currencies = Counter(
        m.record["currency"] for m in _valid(messages) if m.record is not None and m.record.get("amount_minor")
    )
    assert currencies["EUR"] > 20 * currencies["USD"] > 0
    by_type = Counter((m.channel, m.record["event_type"]) for m in _valid(messages) if m.record is not None)
    for needed in (
        ("store", "store_visit"),
        ("store", "pos_purchase"),
        ("social", "review"),
        ("social", "account_link"),
        ("mobile", "push_open"),
        ("web", "login"),
        ("mobile", "login"),
    ):
        assert by_type[needed] > 0, needed
    sentiments = [m.record["sentiment"] for m in _valid(messages) if m.channel == "social" and m.record is not None]
    assert all(s is None or -1.0 <= s <= 1.0 for s in sentiments)


def test_truth_json_round_trips(sim: Simulation, messages: list[SimMessage], tmp_path: Path) -> None:
    recorder = TruthRecorder(sim, TOPICS)
    for msg in messages[:500]:
        recorder.observe(msg)
    path = tmp_path / "out" / "truth.json"
    recorder.write(path)
    doc = json.loads(path.read_text())
    assert set(doc) >= {"config", "identifiers", "shared_identifiers", "people", "holdout", "journeys", "expected"}
    assert doc["config"]["seed"] == 11 and doc["expected"]["messages"] == 500


# --- producing ------------------------------------------------------------------------------------------


def test_produce_to_a_file_sink(codec: AvroCodec, tmp_path: Path) -> None:
    msgs = list(generate(SimConfig(customers=100, days=5, seed=4, end_ms=END)))
    out = tmp_path / "messages.jsonl"
    report = produce(msgs, FileSink(out), codec, TOPICS, total=len(msgs), show_progress=False)
    assert report.ok and report.sent == len(msgs)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["kind"] for line in lines] == [m.kind for m in msgs]
    assert base64.b64decode(lines[0]["value_b64"]) == encode_message(msgs[0], codec)


def test_rate_cap_paces_sending(codec: AvroCodec) -> None:
    msgs = list(generate(SimConfig(customers=30, days=3, seed=4, end_ms=END)))[:40]
    start = time.monotonic()
    report = produce(msgs, NullSink(), codec, TOPICS, rate=200.0, show_progress=False)
    assert report.ok and time.monotonic() - start >= (len(msgs) - 1) / 200.0 * 0.9


class _FakeFuture:
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def add_callback(self, fn: Callable[[Any], None]) -> None:
        if not self.fail:
            fn(object())

    def add_errback(self, fn: Callable[[BaseException], None]) -> None:
        if self.fail:
            fn(RuntimeError("broker said no"))


class _FakeProducer:
    fail_every = 0
    configs: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **config: Any) -> None:
        self.configs.append(config)
        self.sent = 0

    def partitions_for(self, topic: str) -> set[int] | None:
        return None if topic == "missing" else {0, 1}

    def send(self, topic: str, key: bytes, value: bytes) -> _FakeFuture:
        self.sent += 1
        return _FakeFuture(bool(self.fail_every) and self.sent % self.fail_every == 0)

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        return None


def test_kafka_sink_counts_delivery_failures(monkeypatch: pytest.MonkeyPatch, codec: AvroCodec) -> None:
    import kafka

    monkeypatch.setattr(kafka, "KafkaProducer", _FakeProducer)
    msgs = list(generate(SimConfig(customers=50, days=3, seed=4, end_ms=END)))
    monkeypatch.setattr(_FakeProducer, "fail_every", 0)
    sink = KafkaSink("localhost:1")
    sink.check_topics(["web"])
    assert produce(msgs, sink, codec, TOPICS, show_progress=False).ok
    assert _FakeProducer.configs[-1]["acks"] == "all" and _FakeProducer.configs[-1]["linger_ms"] == 20
    monkeypatch.setattr(_FakeProducer, "fail_every", 10)
    report = produce(msgs, KafkaSink("localhost:1"), codec, TOPICS, show_progress=False)
    assert not report.ok and report.failed == len(msgs) // 10 and "broker said no" in report.errors[0]
    from pipeline.simulate.producer import DeliveryError

    with pytest.raises(DeliveryError, match="missing"):
        KafkaSink("localhost:1").check_topics(["web", "missing"])


# --- CLI ------------------------------------------------------------------------------------------------


def _cli() -> typer.Typer:
    # Imported here: pipeline.cli's package __init__ wires every command, which other tests need not load.
    from pipeline.cli.simulate import simulate

    app = typer.Typer()
    app.command()(simulate)
    return app


def test_cli_dry_run_writes_truth(tmp_path: Path) -> None:
    truth_path = tmp_path / "truth.json"
    args = [
        "--customers",
        "80",
        "--days",
        "5",
        "--dry-run",
        "--no-progress",
        "--truth",
        str(truth_path),
        "--end",
        "2025-06-15T12:00:00",
    ]
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    doc = json.loads(truth_path.read_text())
    from pipeline.cli.simulate import parse_end

    assert doc["config"]["end_ms"] == parse_end("2025-06-15T12:00:00Z", 0)
    assert doc["expected"]["messages"] > 0 and "valid" in result.output


def test_cli_exits_non_zero_when_deliveries_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    import kafka

    monkeypatch.setattr(kafka, "KafkaProducer", _FakeProducer)
    monkeypatch.setattr(_FakeProducer, "fail_every", 7)
    result = CliRunner().invoke(_cli(), ["--customers", "40", "--days", "3", "--no-progress"])
    assert result.exit_code == 1
    assert "delivery failed" in result.output


def test_parse_end_and_config_validation() -> None:
    from pipeline.cli.simulate import parse_end

    now = 1_700_000_012_345
    assert parse_end(None, now) == now - now % 60_000 and parse_end(None, now) % 60_000 == 0
    with pytest.raises(typer.BadParameter):
        parse_end("yesterday", 0)
    with pytest.raises(ValueError):
        SimConfig(100, 7, 1, END, bad_share=0.3, duplicate_share=0.2)
    with pytest.raises(ValueError):
        SimConfig(100, 7, 1, END, bad_kinds=("nonsense",))


@pytest.mark.parametrize("lateness_h", [1, 6, 24])
def test_expected_for_turns_messages_beyond_the_allowed_lateness_into_late_events(
    messages: list[SimMessage], truth: dict[str, Any], lateness_h: int
) -> None:
    # Independent of the recorder: one partition per topic, progress = largest event time read so far.
    lateness_ms = lateness_h * HOUR_MS
    progress: dict[str, int] = {}
    outcome: list[tuple[str, str]] = []
    converted = 0
    for m in messages:
        result = m.expected
        if m.kind in ("valid", "late", "duplicate"):
            mark = progress.get(m.channel, m.event_time_ms)
            if mark - m.event_time_ms > lateness_ms:
                result = "late_event"
                converted += 1
            progress[m.channel] = max(mark, m.event_time_ms)
        outcome.append((m.channel, result))
    expected = expected_for(truth, lateness_ms)
    assert {k: n for k, n in expected["per_outcome"].items() if n} == dict(Counter(r for _, r in outcome))
    for topic, counts in expected["per_topic_outcome"].items():
        assert {k: n for k, n in counts.items() if n} == dict(Counter(r for c, r in outcome if c == topic))
    assert len(expected["late_beyond_lateness"]) == converted
    assert expected["messages"] == len(messages)
    if lateness_h == 1:
        assert converted > 0, "the simulator delivers some events more than an hour behind their partition"
