"""A batch of decoded rows turned into one Arrow table per warehouse table: the writer's input format.

Why a separate step: building Arrow arrays from Python objects is the sink's most expensive Python work (it
holds the GIL for a whole ``pa.array`` call). ``prepare`` runs in the consumer process, and the writer runs in
a process of its own (``sinks.process_writer``), so batch N+1 is converted while batch N is written and the
two never compete for one GIL. A prepared batch is what crosses the pipe, so it holds Arrow data and plain
coordinates only (Arrow IPC buffers are cheap to send; lists of dicts are not).

Guarantees: every row keeps its Kafka coordinates (``PreparedTable.coords``: topic, partition, offset,
index-aligned with the Arrow table), so the writer can still skip rows whose offsets were already committed;
row order is consumption order; a table's Arrow schema is exactly its columns. Values that do not fit
their column raise ``pyarrow`` errors: records decoded against the contract always fit, so that is a bug,
not data, and it propagates like any other bug (nothing is committed).

Not guaranteed: that a record's keys beyond its columns are kept (they are ignored, as before).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped,unused-ignore]

from sinks.contract import Batch, Reject, SinkRow, TopicPartition
from sinks.tables import BoundTable

COORDS_SCHEMA = pa.schema([("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64())])


@dataclass(frozen=True)
class PreparedTable:
    """The rows of one table in one batch: ``arrow`` (columns) and ``coords`` (a ``pyarrow.Table`` with the
    topic, partition and offset of each row, same order)."""

    table: BoundTable
    arrow: Any  # pyarrow.Table
    coords: Any  # pyarrow.Table, COORDS_SCHEMA

    def __len__(self) -> int:
        return int(self.arrow.num_rows)

    def filter(self, keep: Any) -> PreparedTable:
        """The rows where the boolean array ``keep`` is true."""
        return PreparedTable(self.table, self.arrow.filter(keep), self.coords.filter(keep))


@dataclass
class PreparedBatch:
    """A :class:`~sinks.contract.Batch` with its rows converted per table; rejects and offsets unchanged."""

    tables: dict[str, PreparedTable] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    offsets: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)
    erasures: list[Any] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return sum(len(t) for t in self.tables.values()) + len(self.rejects) + len(self.erasures)


def prepare(batch: Batch, tables: Mapping[str, BoundTable]) -> PreparedBatch:
    """Group ``batch``'s rows by table and build each table's Arrow table (see the module docstring).

    Raises ``KeyError`` for a row of a table that is not in ``tables`` (a bug of the caller).
    """
    grouped: dict[str, list[SinkRow]] = {}
    for row in batch.rows:
        grouped.setdefault(row.table, []).append(row)
    prepared = {
        name: PreparedTable(tables[name], tables[name].arrow([r.values for r in rows]), coordinates(rows))
        for name, rows in grouped.items()
    }
    return PreparedBatch(prepared, batch.rejects, batch.offsets, batch.erasures)


def coordinates(rows: Sequence[SinkRow]) -> Any:
    """The ``COORDS_SCHEMA`` table of ``rows``' Kafka coordinates."""
    return pa.table(
        [[r.topic for r in rows], [r.partition for r in rows], [r.offset for r in rows]], schema=COORDS_SCHEMA
    )


def first_per_key(arrow: Any, key: Sequence[str], version: str | None = None) -> Any:
    """``arrow`` with one row per ``key``: the highest ``version`` (the first row on a tie), or the first row
    when there is no version column; rows keep their order. Vectorised (one sort, no Python loop per row).

    This is exactly what the table's rules do across batches, so the outcome does not depend on how messages
    were cut into batches (and ``MERGE`` must not see two source rows for one stored row)."""
    n = arrow.num_rows
    if n < 2:
        return arrow
    keys = {f"k{i}": arrow[k] for i, k in enumerate(key)}
    sort_keys = [(name, "ascending") for name in keys]
    if version is not None:
        keys["version"] = arrow[version]
        sort_keys.append(("version", "descending"))
    keys["ord"] = pa.array(range(n), type=pa.int64())
    sort_keys.append(("ord", "ascending"))
    order = pc.sort_indices(pa.table(keys), sort_keys=sort_keys)
    new_key = None
    for i in range(len(key)):
        column = keys[f"k{i}"].take(order)
        differs = pc.not_equal(column.slice(1), column.slice(0, n - 1))
        new_key = differs if new_key is None else pc.or_(new_key, differs)
    first = pa.concat_arrays([pa.array([True]), pa.chunked_array(new_key).combine_chunks()])
    if pc.all(first).as_py():
        return arrow
    keep = pc.filter(order, first)
    return arrow.take(pc.take(keep, pc.sort_indices(keep)))
