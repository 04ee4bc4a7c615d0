"""ProcessWriter: DuckDBSink in a child process. Round trips, errors across the pipe, and either side dying."""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import duckdb
import psutil
import pyarrow as pa
import pytest
from prometheus_client import CollectorRegistry

from pipeline.clock import ManualClock
from schemas.registry import FileSchemaRegistry
from sinks import synthetic as syn
from sinks.columnar import PreparedBatch, PreparedTable, coordinates, prepare
from sinks.contract import Batch, Reject, SinkInfraError, SinkRow
from sinks.duckdb_sink import DuckDBSink
from sinks.metrics import sink_metrics
from sinks.process_writer import ProcessWriter, RemoteTraceback, WriterProcessError, _rebuild
from sinks.tables import DEFAULT_TABLES, TABLES, BoundTable, bind_tables
from sinks.wire import decode, encode
from sinks.writer_child import describe
from tests.unit.test_sink import _hold_lock

T0 = 1_700_000_000_000
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tables() -> list[BoundTable]:
    return bind_tables(DEFAULT_TABLES, lambda name: name, FileSchemaRegistry())


@pytest.fixture
def writer(tmp_path: Path, tables: list[BoundTable]) -> Any:
    w = ProcessWriter(tmp_path / "live.duckdb", tmp_path / "snap.duckdb", tables, retry_for_s=1.0)
    yield w
    w.close()


def mixed_batches(seed: int, n: int, size: int) -> list[Batch]:
    """``n`` messages of every default table (merges and rejects included), cut into batches of ``size``."""
    rng = random.Random(seed)
    items: list[tuple[str, dict[str, Any] | None]] = []
    for i in range(n):
        c = f"p:{i % 7}" if i % 3 else f"c:{i % 11}"
        items += [
            ("sessions", syn.session(rng, f"s{i % 40}", c, T0 + i, version=1 + i % 3, bought=["a"])),
            ("journey_transitions", syn.transition(c, i, None, "engaged", T0)),
            ("signals", syn.signal(f"g{i}", c, "win_back", T0)),
            ("customers", syn.profile(c, 1 + i % 4, T0)),
            ("failed_events", syn.failed(i)),
        ]
        if i % 9 == 4:
            items.append(("identity_merges", syn.merge(f"p:{i % 7}", f"c:{i % 11}", T0)))
        if i % 13 == 0:
            items.append(("signals", None))  # becomes a reject
    rng.shuffle(items)
    offsets: dict[str, int] = {}
    out: list[Batch] = []
    for start in range(0, len(items), size):
        batch = Batch()
        for table, values in items[start : start + size]:
            topic = TABLES[table].topic
            offset = offsets[topic] = offsets.get(topic, -1) + 1
            if values is None:
                batch.rejects.append(Reject(topic, 1, offset, "null value (tombstone)", None))
                batch.add_offset(topic, 1, offset)
            else:
                batch.rows.append(SinkRow(table, topic, 0, offset, values))
                batch.add_offset(topic, 0, offset)
        out.append(batch)
    return out


def content(db: Path, tables: list[BoundTable]) -> dict[str, Any]:
    queries = {t.name: f"SELECT * FROM {t.name}" for t in tables} | {
        "_sink_offsets": 'SELECT topic, "partition", next_offset FROM _sink_offsets',
        "_identity_alias": "SELECT * FROM _identity_alias",
        "_sink_rejects": 'SELECT topic, "partition", "offset", error FROM _sink_rejects',
    }
    with duckdb.connect(str(db), read_only=True) as con:
        return {name: con.execute(f"{sql} ORDER BY ALL").fetchall() for name, sql in queries.items()}


def offsets(*batches: Batch) -> dict[tuple[str, int], int]:
    return {tp: nxt for b in batches for tp, (_, nxt) in b.offsets.items()}


def test_wire_round_trip_keeps_tables_coordinates_rejects_and_offsets(tables: list[BoundTable]) -> None:
    batch = mixed_batches(1, 400, 4000)[0]
    prepared = prepare(batch, {t.name: t for t in tables})
    head, buffers = encode(prepared)
    back = decode(head, [bytes(b) for b in buffers], {t.name: t for t in tables})
    assert 10 * len(head) < sum(b.nbytes for b in buffers)  # the columns travel out of band
    assert back.rejects == prepared.rejects and back.offsets == prepared.offsets
    assert list(back.tables) == list(prepared.tables)
    for name, table in prepared.tables.items():
        assert back.tables[name].arrow.equals(table.arrow)
        assert back.tables[name].coords.equals(table.coords)


def test_process_writer_commits_what_the_in_process_sink_commits(tmp_path: Path, tables: list[BoundTable]) -> None:
    batches = mixed_batches(2, 120, 97)
    by_name = {t.name: t for t in tables}
    local = DuckDBSink(tmp_path / "local.duckdb", tmp_path / "local.snap", tables)
    local.open()
    registry = CollectorRegistry()
    remote = ProcessWriter(
        tmp_path / "remote.duckdb", tmp_path / "remote.snap", tables, sink_metrics(registry), clock=ManualClock(T0)
    )
    try:
        assert remote.open() == {}
        results = []
        for n, batch in enumerate(batches[:-1]):
            local.write(batch)
            local.write(batch)  # a replay
            # Plain and prepared batches, one in flight, and replays (whole and partial) all cross the pipe.
            pending = remote.submit(batch if n % 2 else prepare(batch, by_name))
            results.append(pending.result())
            assert pending.result() is results[-1]
            results.append(remote.write(batch))
            assert results[-1].replayed == batch.messages and results[-1].rows_written == {}
        overlap = Batch(rows=batches[-2].rows + batches[-1].rows, rejects=batches[-2].rejects + batches[-1].rejects)
        for item in (*overlap.rows, *overlap.rejects):
            overlap.add_offset(item.topic, item.partition, item.offset)
        local.write(overlap)
        results.append(remote.write(overlap))
        assert results[-1].replayed == batches[-2].messages and results[-1].rows_written
        assert remote.open() == local.committed == offsets(*batches)
        assert remote.publish() is not None and remote.publish() is None
        assert remote.pid is not None
        local.close()
        remote.close()
        assert remote.pid is None
    finally:
        remote.close()
    assert content(tmp_path / "remote.duckdb", tables) == content(tmp_path / "local.duckdb", tables)
    # Metrics were recorded in this process from what the child reported.
    rows = sum(sum(r.rows_written.values()) for r in results)
    sample = registry.get_sample_value
    assert sum(sample("omnistream_sink_rows_total", {"table": t.name}) or 0 for t in tables) == rows > 0
    messages = sum(sum(r.messages.values()) for r in results)
    assert messages == sum(len(b.rows) for b in batches)
    assert sum(sample("omnistream_sink_messages_total", {"table": t.name}) or 0 for t in tables) == messages
    assert sample("omnistream_sink_rejects_total") == sum(len(b.rejects) for b in batches) > 0
    assert sample("omnistream_sink_replayed_messages_total") == sum(r.replayed for r in results) > 0
    assert sample("omnistream_sink_batch_commit_seconds_count") == len(results)
    assert sample("omnistream_snapshot_publish_seconds_count") == 1
    assert sample("omnistream_snapshot_age_seconds") == 0.0
    assert sample("omnistream_duckdb_file_bytes") == (tmp_path / "remote.duckdb").stat().st_size


def test_infra_error_in_the_child_is_a_sink_infra_error_here(tmp_path: Path, tables: list[BoundTable]) -> None:
    holder = _hold_lock(tmp_path / "live.duckdb", 30)
    registry = CollectorRegistry()
    w = ProcessWriter(tmp_path / "live.duckdb", tmp_path / "snap.duckdb", tables, sink_metrics(registry), retry_for_s=1)
    try:
        with pytest.raises(SinkInfraError, match="kept failing") as raised:
            w.open()
        assert isinstance(raised.value.__cause__, RemoteTraceback)
        assert "duckdb_sink.py" in str(raised.value.__cause__)
        # Retries were announced from the child while they happened, and counted here.
        assert (registry.get_sample_value("omnistream_sink_infra_retries_total", {"operation": "open"}) or 0) >= 1
    finally:
        w.close()
        holder.kill()
        holder.wait()


def test_a_bug_in_the_child_keeps_its_type_and_traceback(writer: ProcessWriter, tables: list[BoundTable]) -> None:
    by_name = {t.name: t for t in tables}
    writer.open()
    good = mixed_batches(3, 20, 1000)[0]
    rows = [r for r in good.rows if r.table == "signals"]
    broken = PreparedBatch(
        {"signals": PreparedTable(by_name["signals"], pa.table({"nope": [1] * len(rows)}), coordinates(rows))},
        offsets={("signals", 0): (0, len(rows))},
    )
    local = DuckDBSink(writer.config.db_path.with_name("other.duckdb"), writer.config.snapshot_path, tables)
    with pytest.raises(Exception) as in_process:
        local.write(broken)
    local.close()
    with pytest.raises(type(in_process.value)) as raised:
        writer.write(broken)
    assert not isinstance(raised.value, SinkInfraError)
    assert "_write_once" in str(raised.value.__cause__)  # the child's traceback comes along
    # Nothing of it was committed, and the writer keeps working.
    assert writer.write(good).replayed == 0


def test_an_exception_that_does_not_pickle_arrives_as_writer_process_error() -> None:
    class Local(Exception):  # a local class cannot be pickled
        pass

    try:
        raise Local("boom")
    except Local as error:
        payload = describe(error)
    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(Local("x"))
    rebuilt = _rebuild(pickle.loads(pickle.dumps(payload)))
    assert isinstance(rebuilt, WriterProcessError) and "Local: boom" in str(rebuilt)
    assert "raise Local" in str(rebuilt.__cause__)


def test_child_killed_makes_the_next_call_raise_sink_infra_error(writer: ProcessWriter) -> None:
    writer.open()
    first, second = mixed_batches(4, 100, 300)[:2]
    writer.write(first)
    assert writer.pid is not None
    child = psutil.Process(writer.pid)
    child.kill()
    child.wait(10)
    with pytest.raises(SinkInfraError, match="writer process died"):
        writer.write(second)
    writer.close()  # does not hang on a dead child


def test_child_killed_during_a_write_leaves_that_batch_all_or_nothing(
    writer: ProcessWriter, tables: list[BoundTable]
) -> None:
    writer.open()
    first, second = mixed_batches(4, 2000, 5000)[:2]
    writer.write(first)
    assert writer.pid is not None
    pending = writer.submit(second)
    os.kill(writer.pid, signal.SIGKILL)
    with contextlib.suppress(SinkInfraError):  # unless the answer was already on its way before the kill
        pending.result()
    with pytest.raises(SinkInfraError, match="writer process died"):
        writer.publish()
    writer.close()
    again = DuckDBSink(writer.config.db_path, writer.config.snapshot_path, tables)
    assert again.open() in (offsets(first), offsets(first, second))  # the kill may have come after the COMMIT
    again.close()


def test_ctrl_c_reaches_the_consumer_not_the_writer(writer: ProcessWriter) -> None:
    writer.open()
    assert writer.pid is not None
    os.kill(writer.pid, signal.SIGINT)
    os.kill(writer.pid, signal.SIGTERM)
    time.sleep(0.3)
    assert writer.write(mixed_batches(5, 10, 1000)[0]).rows_written


def test_parent_killed_takes_the_writer_process_with_it(tmp_path: Path) -> None:
    db = tmp_path / "live.duckdb"
    code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from schemas.registry import FileSchemaRegistry
        from sinks.process_writer import ProcessWriter
        from sinks.tables import DEFAULT_TABLES, bind_tables

        if __name__ == "__main__":
            tables = bind_tables(DEFAULT_TABLES, str, FileSchemaRegistry())
            writer = ProcessWriter(Path({str(db)!r}), Path({str(db)!r} + ".snap"), tables)
            writer.open()
            print(writer.pid, flush=True)
            time.sleep(120)
        """
    )
    script = tmp_path / "parent.py"
    script.write_text(code)
    parent = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert psutil.Process(child).ppid() == parent.pid
        parent.kill()  # SIGKILL the parent only: no atexit, no close, no chance to tell the child
        parent.wait()
        deadline = time.monotonic() + 10
        while (_running(child) or not _lock_free(db)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(child)
        # DuckDB's other threads may outlive the main thread by a moment; then the file is free for a writer.
        with duckdb.connect(str(db)) as con:
            assert con.execute("SELECT count(*) FROM _sink_offsets").fetchone() == (0,)
    finally:
        parent.kill()
        parent.wait()


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _lock_free(db: Path) -> bool:
    try:
        duckdb.connect(str(db)).close()
    except duckdb.IOException:
        return False
    return True
