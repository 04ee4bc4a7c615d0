"""Identity merges in the warehouse: re-point rows of absorbed profiles, inside the batch's transaction.

A merge ``old_id -> new_id`` says everything recorded under ``old_id`` now belongs to ``new_id``. Topics are
not ordered with each other, so a merge can arrive before or after the rows it concerns. Both orders end in
the same state because of two rules:

1. Applying a merge updates ``customer_column`` from ``old_id`` to the *final* surviving id in every profile
   table (rows already stored), and records ``old_id -> final`` in ``_identity_alias``.
2. Every later insert into a profile table maps its customer id through ``_identity_alias`` (rows that arrive
   after the merge, e.g. a session version the journey stage computed before it heard of the merge).

Tables keyed by the customer (``drop_absorbed``: one profile row per customer) cannot re-point, two rows
would share a key: the absorbed id's row is deleted and later rows of it are ignored; the survivor's own
profile versions carry the merged state.

Chains collapse: after ``a -> b`` and ``b -> c`` both ``a`` and ``b`` point to ``c``, in the alias table and
in the rows. So no row is left on an absorbed id (no orphans) once its merge is committed.

Not guaranteed: an id absorbed once is not moved again by a later merge of the *same* old id (the first merge
wins; the later one is still stored in ``identity_merges``), and a merge that would close a cycle
(``b -> a`` after ``a -> b``) is stored but not applied, because applying it would leave no surviving id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import duckdb
import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]

from sinks.duckdb_schema import ALIAS, quote
from sinks.tables import BoundTable


def alias_join(table: BoundTable, source: str) -> str:
    """SELECT list + FROM clause that maps ``table``'s customer column of ``source`` through the alias table."""
    col = table.spec.customer_column
    if col is None:
        return f"SELECT * FROM {source}"
    c = quote(col)
    if table.spec.drop_absorbed:
        return f"SELECT * FROM {source} AS b WHERE NOT EXISTS (SELECT 1 FROM {ALIAS} AS a WHERE a.old_id = b.{c})"
    return (
        f"SELECT b.* REPLACE (COALESCE(a.final_id, b.{c}) AS {c}) "
        f"FROM {source} AS b LEFT JOIN {ALIAS} AS a ON a.old_id = b.{c}"
    )


def apply_merges(
    con: duckdb.DuckDBPyConnection, merges: Sequence[dict[str, Any]], profile_tables: Iterable[BoundTable]
) -> tuple[int, int]:
    """Apply ``merges`` (in consumption order) on ``con``'s open transaction.

    Returns ``(applied, skipped)``; skipped merges are repeats of an absorbed id, self-merges or cycles.
    """
    ids = sorted({m["old_id"] for m in merges} | {m["new_id"] for m in merges})
    known: dict[str, str] = dict(
        con.execute(f"SELECT old_id, final_id FROM {ALIAS} WHERE list_contains(?, old_id)", [ids]).fetchall()
    )
    decided: dict[str, str] = {}

    def resolve(node: str) -> str:
        seen = {node}
        while True:
            nxt = decided.get(node) or known.get(node)
            if nxt is None or nxt in seen:
                return node
            seen.add(nxt)
            node = nxt

    skipped = 0
    for merge in merges:
        old, new = merge["old_id"], merge["new_id"]
        if old in decided or old in known:
            skipped += 1
            continue
        target = resolve(new)
        if target == old:
            skipped += 1
            continue
        decided[old] = target
    if not decided:
        return 0, skipped
    mapping = pa.table(
        {"old_id": list(decided), "final_id": [resolve(old) for old in decided]},
        schema=pa.schema([("old_id", pa.string()), ("final_id", pa.string())]),
    )
    con.register("_merge_map", mapping)
    try:
        # Ids that earlier merges sent to a now-absorbed id follow it to the new survivor.
        con.execute(f"UPDATE {ALIAS} SET final_id = m.final_id FROM _merge_map AS m WHERE {ALIAS}.final_id = m.old_id")
        con.execute(f"INSERT INTO {ALIAS} SELECT old_id, final_id FROM _merge_map ON CONFLICT DO NOTHING")
        for table in profile_tables:
            col = table.spec.customer_column
            if col is None:
                continue
            t, c = quote(table.name), quote(col)
            if table.spec.drop_absorbed:
                con.execute(f"DELETE FROM {t} WHERE {c} IN (SELECT old_id FROM _merge_map)")
            else:
                con.execute(f"UPDATE {t} SET {c} = m.final_id FROM _merge_map AS m WHERE {t}.{c} = m.old_id")
    finally:
        con.unregister("_merge_map")
    return len(decided), skipped
