"""``omnistream privacy erase`` through the real broker, workers and sink (docs/privacy.md).

A simulated input is processed to the end; a person with several identifiers across channels, merged from
several profiles, is erased while a worker and the sink run. Afterwards: no row of theirs in any warehouse table
or in the new snapshot, no live record for their keys in the journey state, assignments and link topics, their
later events suppressed and counted, every other customer's rows as before, and a second request a no-op.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline.evaluate.warehouse import PROCESSING_TIME_COLUMNS
from pipeline.identity.replica import AssignmentReplica
from pipeline.privacy.erase import failed_nodes
from pipeline.privacy.linklog import marker_tokens
from pipeline.simulate.config import SimConfig
from pipeline.steps.bundles import read
from pipeline.topic_reader import iter_topic, topic_end_total
from pipeline.topics import journey_state_spec
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from sinks.tables import SINK_TOPICS
from tests.integration.event_time_runs import IDLE_S, LATENESS_S, Run, SimInput, finish, make_input, send
from tests.integration.pipeline_env import PipelineEnv, free_port
from tests.integration.processes import Proc, wait_until

NOW = int(time.time() * 1000)
CONFIG = SimConfig(customers=400, days=14, seed=41, end_ms=NOW - NOW % 60_000)
CODEC = AvroCodec(FileSchemaRegistry())
TABLES = ("sessions", "journey_transitions", "signals", "customers", "order_lines", "identity_merges", "failed_events")


def latest(bootstrap: str, topic: str) -> dict[bytes, bytes | None]:
    return {m.key: m.value for m in iter_topic(bootstrap, topic) if m.key is not None}


def person_rows(snapshot: Path, profiles: set[str]) -> dict[str, int]:
    with duckdb.connect(str(snapshot), read_only=True) as con:
        ids = sorted(profiles)
        out = {t: con.execute(f"SELECT count(*) FROM {t} WHERE list_contains(?, customer_id)", [ids]).fetchone()[0]
               for t in ("sessions", "journey_transitions", "signals", "customers", "order_lines")}  # fmt: skip
        out["identity_merges"] = con.execute("SELECT count(*) FROM identity_merges WHERE list_contains(?, old_id) "
                                             "OR list_contains(?, new_id)", [ids, ids]).fetchone()[0]  # fmt: skip
        out["_identity_alias"] = con.execute("SELECT count(*) FROM _identity_alias WHERE list_contains(?, old_id) "
                                             "OR list_contains(?, final_id)", [ids, ids]).fetchone()[0]  # fmt: skip
    return out


def other_rows(snapshot: Path, profiles: set[str]) -> dict[str, Counter[str]]:
    """Every row not of the person, without processing-time columns (failed events: all of them)."""
    ids = sorted(profiles)
    out: dict[str, Counter[str]] = {}
    with duckdb.connect(str(snapshot), read_only=True) as con:
        for table in TABLES:
            skip = PROCESSING_TIME_COLUMNS.get(table, frozenset())
            cols = ", ".join(f'"{r[0]}"' for r in con.execute(f"DESCRIBE {table}").fetchall() if r[0] not in skip)
            where = {"identity_merges": "NOT (list_contains(?, old_id) OR list_contains(?, new_id))",
                     "failed_events": "true"}.get(table, "NOT list_contains(?, customer_id)")  # fmt: skip
            params = [] if table == "failed_events" else [ids] * where.count("?")
            out[table] = Counter(map(repr, con.execute(f"SELECT {cols} FROM {table} WHERE {where}", params).fetchall()))
    return out


def choose_person(env: PipelineEnv, snapshot: Path) -> tuple[str, list[str]]:
    """A merged profile with several identifiers of several kinds, rows in the warehouse and a customer id."""
    s = env.settings()
    replica = AssignmentReplica("unused:0", "unused")
    for m in iter_topic(env.bootstrap, s.topic("identity-assignments")):
        replica.apply(m.key or b"", m.value)
    nodes: dict[str, list[str]] = {}
    for node, profile in replica.assignments.items():
        nodes.setdefault(profile, []).append(node)
    with duckdb.connect(str(snapshot), read_only=True) as con:
        merged = {r[0] for r in con.execute("SELECT new_id FROM identity_merges").fetchall()}
        active = {r[0] for r in con.execute("SELECT customer_id FROM sessions").fetchall()}
    fits = [p for p, ns in sorted(nodes.items()) if p in merged and p in active and len(ns) >= 3
            and len({n.split(":")[0] for n in ns}) >= 2 and any(n.startswith("customer_id:") for n in ns)]  # fmt: skip
    assert fits, "the simulation has no merged person with several identifiers"
    profile = max(fits, key=lambda p: (len(nodes[p]), p))
    return profile, sorted(nodes[profile])


def erase(env: PipelineEnv, *args: str) -> dict[str, Any]:
    snapshot = env.workdir / "warehouse.snap"
    command = [sys.executable, "-m", "pipeline", "privacy", "erase", *args, "--format", "json", "--wait", "180",
               "--snapshot", str(snapshot)]  # fmt: skip
    done = subprocess.run(command, env={**os.environ, **env.env()}, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout))


def metric(port: int, name: str) -> float:
    """The sum of a metric's series on a worker's /metrics; -1 while the worker does not answer yet."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return -1.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


@pytest.fixture(scope="module")
def inp() -> SimInput:
    return make_input(CONFIG, 4)


def test_erasing_a_merged_person_removes_them_everywhere_and_nobody_else(
    kafka_bootstrap: str, tmp_path: Path, inp: SimInput
) -> None:
    env = PipelineEnv.create(kafka_bootstrap, tmp_path, partitions=4)
    s = env.settings()
    extra = {"OMNISTREAM_ALLOWED_LATENESS_S": str(LATENESS_S), "OMNISTREAM_SOURCE_IDLE_S": str(IDLE_S)}
    with Run(env, extra) as run:
        send(env, inp.messages)
        run.start_worker(0)
        finish(run)
    assert run.snapshot is not None
    before = run.snapshot.with_suffix(".before")
    before.write_bytes(run.snapshot.read_bytes())
    survivor, nodes = choose_person(env, before)
    login = next(n.split(":", 1)[1] for n in nodes if n.startswith("customer_id:"))

    port = free_port()
    worker = env.start_worker("worker-after", OMNISTREAM_METRICS_PORT=str(port), **extra)
    db, snapshot = env.workdir / "warehouse.duckdb", env.workdir / "warehouse.snap"
    sink = Proc(["sink", "--db", str(db), "--snapshot", str(snapshot), "--snapshot-every", "0.5",
                 "--metrics-port", "0"], env.env(), env.workdir / "sink-after.log")  # fmt: skip
    try:
        wait_until(lambda: metric(port, "omnistream_events_in_total") >= 0, 120, what="the worker's metrics")
        dry = erase(env, "--profile", survivor, "--dry-run")
        first = erase(env, "--profile", survivor)
        assert dry["identifiers"] == first["identifiers"] >= 3 and first["profiles"] >= 2
        assert first["journey_records"] >= 1 and first["link_bundles"] >= 1 and first["assignments"] >= 3
        assert not first["already_erased"] and first["warehouse_rows_deleted"]["sessions"] >= 1
        # a later event of theirs (one of their messages delivered again) is suppressed and counted
        again = next(m for m in inp.messages if m.record is not None and m.subject == m.channel
                     and m.record["envelope"]["identifiers"].get("customer_id") == login)  # fmt: skip
        send(env, [again])
        wait_until(lambda: metric(port, "omnistream_events_suppressed_total") >= 1, 120, what="a suppressed event")
        second = erase(env, "--customer-id", login)
        assert second["already_erased"]
        assert (second["link_bundles"], second["assignments"], second["journey_records"], second["failed_events"]) \
            == (0, 0, 0, 0)  # fmt: skip
        assert sum(second["warehouse_rows_deleted"].values()) == 0
        assert worker.terminate() == 0, worker.log_tail()
        want = sum(topic_end_total(env.bootstrap, s.topic(t)) for t in SINK_TOPICS)

        def stored() -> bool:
            with duckdb.connect(str(snapshot), read_only=True) as con:
                return bool(con.execute("SELECT sum(next_offset) FROM _sink_offsets").fetchone()[0] >= want)

        wait_until(stored, 120, what="the sink to store every output")
    finally:
        for proc in (worker, sink):
            if proc.alive():
                proc.terminate()
    merged = {survivor} | {r[0] for r in duckdb.connect(str(before), read_only=True).execute(
        "SELECT old_id FROM _identity_alias WHERE final_id = ?", [survivor]).fetchall()}  # fmt: skip
    assert sum(person_rows(before, merged).values()) > 0
    assert person_rows(snapshot, merged) == dict.fromkeys(person_rows(snapshot, merged), 0)
    # every other customer's rows as they were (failed events: only the person's attributable ones gone)
    was, now = other_rows(before, merged), other_rows(snapshot, merged)
    for table in TABLES[:-1]:
        assert was[table] == now[table], table
    assert now["failed_events"] <= was["failed_events"]
    assert sum((was["failed_events"] - now["failed_events"]).values()) == first["failed_events"]
    # no live record for their keys in the journey state, the assignments and the link log
    state = latest(env.bootstrap, journey_state_spec(s).name)
    assert not [p for p in merged if state.get(p.encode())]
    assignments = latest(env.bootstrap, s.topic("identity-assignments"))
    assert not [n for n in nodes if assignments.get(n.encode())]
    from pipeline.domain.identity_rules import nodes_of

    live_links = [v for k, v in latest(env.bootstrap, s.topic("identity-links")).items()
                  if v and marker_tokens(k, v) is None]  # fmt: skip
    carried = {n for v in live_links for e in read(CODEC, b"", v)[0] for n in nodes_of(CODEC.decode(e.value).record)}
    assert not carried & set(nodes)
    # failed events left on the topic carry none of their identifiers
    from pipeline.domain.pii import Pseudonymiser
    from pipeline.domain.quarantine import Quarantine

    secret = s.pii_secret.get_secret_value().encode()
    for value in latest(env.bootstrap, s.topic("failed-events")).values():
        record = CODEC.decode(value).record if value else None
        if record and record.get("original_sealed"):
            original = Quarantine(secret).open(record["original_sealed"])
            assert not set(failed_nodes(CODEC, original, Pseudonymiser(secret))) & set(nodes)
    audit = [json.loads(m.value) for m in iter_topic(env.bootstrap, s.topic("privacy-audit"))]
    assert [a["request"] for a in audit] == [first["request"], second["request"]]
    assert not any(survivor in json.dumps(a) or login in json.dumps(a) for a in audit)
