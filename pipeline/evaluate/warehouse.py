"""The warehouse against the batch reference, row by row (``omnistream evaluate warehouse``).

Both sides go through the same conversion (the sink's Arrow types for each table), so a difference is a
difference in values, not in representation. Columns that hold processing time (docs/time.md) are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.evaluate.reference import Reference
from schemas.registry import SchemaRegistry
from sinks.tables import TABLES, bind_tables

#: Columns whose values depend on when something ran, not on the events: never compared.
PROCESSING_TIME_COLUMNS: Mapping[str, frozenset[str]] = {
    "signals": frozenset({"emitted_at"}),
    "customer_events": frozenset({"ingested_at"}),
    "failed_events": frozenset({"failed_at", "original_sealed", "source_key_sealed"}),
}
COMPARED = ("sessions", "journey_transitions", "signals", "customers", "identity_merges")


@dataclass
class TableDiff:
    """Keys found on one side only, and keys whose rows differ (with the first differing columns)."""

    rows: int = 0
    only_warehouse: list[Any] = field(default_factory=list)
    only_reference: list[Any] = field(default_factory=list)
    differing: dict[Any, list[str]] = field(default_factory=dict)

    @property
    def equal(self) -> bool:
        return not (self.only_warehouse or self.only_reference or self.differing)


def reference_rows(ref: Reference) -> dict[str, Iterable[dict[str, Any]]]:
    return {
        "sessions": ref.sessions.values(),
        "journey_transitions": ref.transitions.values(),
        "signals": ref.signals.values(),
        "customers": ref.profiles.values(),
        "identity_merges": ref.merges.values(),
    }


def compare(
    con: Any, ref: Reference, registry: SchemaRegistry, tables: Iterable[str] = COMPARED
) -> dict[str, TableDiff]:
    """Per table, how the rows in ``con`` (a DuckDB connection to a warehouse) differ from ``ref``."""
    out: dict[str, TableDiff] = {}
    wanted = reference_rows(ref)
    for bound in bind_tables(tables, lambda name: name, registry):
        spec = TABLES[bound.name]
        skip = PROCESSING_TIME_COLUMNS.get(bound.name, frozenset())
        cols = [c.name for c in bound.columns if c.name not in skip]

        def keyed(rows: Iterable[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
            return {tuple(r[k] for k in spec.key): {c: r[c] for c in cols} for r in rows}  # noqa: B023

        want = keyed(bound.arrow(list(wanted[bound.name])).to_pylist())
        quoted = ", ".join(f'"{c}"' for c in cols)
        got = keyed(_arrow(con.sql(f"SELECT {quoted} FROM {bound.name}")).to_pylist())
        diff = out[bound.name] = TableDiff(len(got))
        diff.only_warehouse = sorted(set(got) - set(want), key=repr)
        diff.only_reference = sorted(set(want) - set(got), key=repr)
        for key in set(got) & set(want):
            bad = [c for c in cols if got[key][c] != want[key][c]]
            if bad:
                diff.differing[key] = bad
    return out


def _arrow(result: Any) -> Any:
    """A DuckDB result as an Arrow table (the method's name differs between DuckDB releases)."""
    for name in ("to_arrow_table", "fetch_arrow_table", "arrow"):
        method = getattr(result, name, None)
        if method is not None:
            return method()
    raise AttributeError("this DuckDB result cannot be read as Arrow")
