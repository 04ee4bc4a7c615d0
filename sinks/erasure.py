"""Erasure in the warehouse: the sink consumes the suppression list (``privacy-suppressions``) like any other
topic and, in the same transaction as the offsets it read, deletes the rows of every erased profile and failed
event, and from then on keeps such rows out.

The warehouse learns only tokens (pipeline/privacy/tokens.py), never an identifier or a profile id: to find an
erased profile's rows it computes the token of each distinct customer id the tables hold. ``_erased`` keeps the
tokens (the sink's copy of the list), ``_erasure_log`` what each request removed per table (the warehouse's
part of the erasure audit: counts, no personal data).

Guarantees: after the batch that carries a suppression commits, no table with a customer column, no merge and
no alias names an erased profile, ``customer_events`` has no row carrying an erased identifier, and the erased
failed events are gone; a later row for any of them is dropped before it is written (counted as
``erased`` in the write result). Applying the same suppression twice deletes nothing the second time. Not
guaranteed: erasure of data the sink does not own (older copies of the file, exports: docs/privacy.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped,unused-ignore]

from pipeline.domain.identity_rules import KINDS
from pipeline.privacy.suppression import FAILED, NODE, PROFILE, Suppression
from pipeline.privacy.tokens import Tokens
from sinks.columnar import PreparedTable
from sinks.duckdb_schema import ALIAS, ERASED, ERASURE_LOG, quote
from sinks.tables import BoundTable


@dataclass(frozen=True, slots=True)
class ErasureMessage:
    """One suppression record as the sink read it, with where it came from (its offset is committed with it)."""

    token: str
    kind: str
    request: str
    topic: str
    partition: int
    offset: int

    @staticmethod
    def of(record: Suppression, topic: str, partition: int, offset: int) -> ErasureMessage:
        return ErasureMessage(record.token, record.kind, record.request, topic, partition, offset)


@dataclass
class ErasedSet:
    """What the sink keeps out: tokens of erased profiles and nodes, positions of erased failed events."""

    profiles: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.profiles or self.nodes or self.failed)

    @staticmethod
    def load(con: duckdb.DuckDBPyConnection) -> ErasedSet:
        out = ErasedSet()
        for token, kind in con.execute(f"SELECT token, kind FROM {ERASED}").fetchall():
            out.add(str(token), str(kind))
        return out

    def add(self, token: str, kind: str) -> None:
        self._of(kind).add(token)

    def knows(self, token: str, kind: str) -> bool:
        return token in self._of(kind)

    def copy(self) -> ErasedSet:
        return ErasedSet(set(self.profiles), set(self.nodes), set(self.failed))

    def _of(self, kind: str) -> set[str]:
        """The set of ``kind``; a throwaway one for a kind this version does not know."""
        return {PROFILE: self.profiles, NODE: self.nodes, FAILED: self.failed}.get(kind, set())


def apply_erasures(
    con: duckdb.DuckDBPyConnection, erasures: Sequence[ErasureMessage], tables: Iterable[BoundTable], tokens: Tokens,
    erased: ErasedSet, now: dt.datetime,
) -> dict[str, int]:  # fmt: skip
    """Record ``erasures`` and delete what they name, in ``con``'s open transaction; rows deleted per table."""
    fresh = [e for e in erasures if not erased.knows(e.token, e.kind)]
    for e in fresh:
        erased.add(e.token, e.kind)
        con.execute(
            f"INSERT INTO {ERASED} VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", [e.token, e.kind, e.request, now]
        )
    deleted: dict[str, int] = {}
    tables = list(tables)
    ids = _erased_ids(con, tables, tokens, {e.token for e in fresh if e.kind == PROFILE})
    nodes = {e.token for e in fresh if e.kind == NODE}
    failed = [e.token for e in fresh if e.kind == FAILED]
    for table in tables:
        spec, name = table.spec, quote(table.name)
        if ids and (columns := _id_columns(table)):
            where = " OR ".join(f"list_contains(?, {quote(c)})" for c in columns)
            deleted[table.name] = _delete(con, f"DELETE FROM {name} WHERE {where}", [ids] * len(columns))
        elif table.name == "customer_events" and nodes:
            deleted[table.name] = _delete_events(con, nodes, tokens)
        elif spec.name == "failed_events" and failed:
            deleted[table.name] = _delete(con, f"DELETE FROM {name} WHERE list_contains(?, source_topic || '/' || "
                                               "source_partition || '/' || source_offset)", [failed])  # fmt: skip
    if ids:
        deleted[ALIAS] = _delete(con, f"DELETE FROM {ALIAS} WHERE list_contains(?, old_id) OR "
                                      "list_contains(?, final_id)", [ids, ids])  # fmt: skip
    for request in sorted({e.request for e in erasures}):  # a row at least: the reader sees it was applied
        for table_name, rows in sorted(deleted.items()) or [("(none)", 0)]:
            con.execute(f"INSERT INTO {ERASURE_LOG} VALUES (?, ?, ?, ?)", [request, table_name, rows, now])
    return deleted


def keep_rows(prepared: PreparedTable, tokens: Tokens, erased: ErasedSet) -> PreparedTable:
    """``prepared`` without the rows of erased profiles, identifiers and failed events."""
    keep = None
    for column in _id_columns(prepared.table):
        if erased.profiles:
            keep = _and(keep, _not_in(prepared.arrow[column], lambda v: tokens.profile(v) in erased.profiles))
    if prepared.table.name == "customer_events" and erased.nodes:
        for kind in KINDS:
            if kind in prepared.arrow.column_names:
                keep = _and(keep, _not_in(prepared.arrow[kind], _node_test(tokens, kind, erased.nodes)))
    if prepared.table.name == "failed_events" and erased.failed:
        positions = pc.binary_join_element_wise(
            prepared.arrow["source_topic"], pc.cast(prepared.arrow["source_partition"], pa.string()),
            pc.cast(prepared.arrow["source_offset"], pa.string()), "/",
        )  # fmt: skip
        keep = _and(keep, pc.invert(pc.is_in(positions, pa.array(sorted(erased.failed), pa.string()))))
    return prepared if keep is None else prepared.filter(keep)


def _id_columns(table: BoundTable) -> list[str]:
    if table.spec.merges:
        return ["old_id", "new_id"]
    return [table.spec.customer_column] if table.spec.customer_column else []


def _node_test(tokens: Tokens, kind: str, nodes: set[str]) -> Callable[[Any], bool]:
    return lambda value: tokens.node(f"{kind}:{value}") in nodes


def _erased_ids(
    con: duckdb.DuckDBPyConnection, tables: list[BoundTable], tokens: Tokens, wanted: set[str]
) -> list[str]:
    """Every profile id the warehouse holds whose token is in ``wanted``."""
    if not wanted:
        return []
    parts = [f"SELECT {quote(c)} AS id FROM {quote(t.name)}" for t in tables for c in _id_columns(t)]
    parts.append(f"SELECT old_id AS id FROM {ALIAS}")
    ids = con.execute(f"SELECT DISTINCT id FROM ({' UNION ALL '.join(parts)}) WHERE id IS NOT NULL").fetchall()
    return sorted(str(i) for (i,) in ids if tokens.profile(str(i)) in wanted)


def _delete_events(con: duckdb.DuckDBPyConnection, nodes: set[str], tokens: Tokens) -> int:
    total = 0
    columns = {c for (c,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = "
                                         "'customer_events'").fetchall()}  # fmt: skip
    for kind in KINDS:
        if kind not in columns:
            continue
        values = con.execute(f"SELECT DISTINCT {quote(kind)} FROM customer_events").fetchall()
        hit = [str(v) for (v,) in values if v is not None and tokens.node(f"{kind}:{v}") in nodes]
        if hit:
            total += _delete(con, f"DELETE FROM customer_events WHERE list_contains(?, {quote(kind)})", [hit])
    return total


def _delete(con: duckdb.DuckDBPyConnection, sql: str, params: list[object]) -> int:
    row = con.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def _not_in(values: Any, erased: Callable[[Any], bool]) -> Any:
    """Boolean mask: rows whose value is not erased (``erased(value)``, computed once per distinct value)."""
    hit = [v for v in pc.unique(values).to_pylist() if v is not None and erased(v)]
    if not hit:
        return pa.array([True] * len(values))
    return pc.fill_null(pc.invert(pc.is_in(values, pa.array(hit, values.type))), True)


def _and(left: Any, right: Any) -> Any:
    return right if left is None else pc.and_(left, right)
