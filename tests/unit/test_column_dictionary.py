"""docs/warehouse.md's column dictionary says what the schema is: every table and view, every column, its type.

The schema is the one the sink creates (``ensure_schema`` over every registered table, in an in-memory DuckDB),
so a contract change or a new view that is not documented fails here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from schemas.registry import FileSchemaRegistry
from sinks.duckdb_schema import ensure_schema
from sinks.tables import TABLES, bind_tables

DOC = Path(__file__).resolve().parents[2] / "docs" / "warehouse.md"


@dataclass(frozen=True)
class Entry:
    column: str
    sql_type: str
    unit: str
    meaning: str


def dictionary(text: str) -> dict[tuple[str, str], list[Entry]]:
    """(relation, 'table' | 'view') -> its documented columns, from the "## Column dictionary" section."""
    section = text.split("\n## Column dictionary\n", 1)[1].split("\n## ", 1)[0]
    out: dict[tuple[str, str], list[Entry]] = {}
    current: list[Entry] | None = None
    for line in section.splitlines():
        heading = re.fullmatch(r"### `(\w+)` · (table|view)", line.strip())
        if heading:
            current = out.setdefault((heading[1], heading[2]), [])
            continue
        row = re.fullmatch(r"\| `(\w+)` \| `([^`]+)` \|(.*)\|(.*)\|", line.strip())
        if row and current is not None:
            current.append(Entry(row[1], row[2], row[3].strip(), row[4].strip()))
    return out


def schema() -> dict[tuple[str, str], list[tuple[str, str]]]:
    con = duckdb.connect()
    ensure_schema(con, bind_tables(TABLES, str, FileSchemaRegistry()))
    relations = con.execute(
        """SELECT table_name, 'table' FROM duckdb_tables() WHERE schema_name = 'main'
           UNION ALL SELECT view_name, 'view' FROM duckdb_views() WHERE schema_name = 'main' AND NOT internal"""
    ).fetchall()
    return {
        (name, kind): [
            (str(c), str(t))
            for c, t in con.execute(
                """SELECT column_name, data_type FROM duckdb_columns()
                   WHERE schema_name = 'main' AND table_name = ? ORDER BY column_index""",
                [name],
            ).fetchall()
        ]
        for name, kind in relations
    }


@pytest.fixture(scope="module")
def documented() -> dict[tuple[str, str], list[Entry]]:
    return dictionary(DOC.read_text(encoding="utf-8"))


def test_every_table_and_view_is_documented_and_nothing_else(documented: dict[tuple[str, str], list[Entry]]) -> None:
    built = schema()
    assert len(built) >= 15
    assert sorted(documented) == sorted(built)


def test_every_column_is_documented_with_its_type_in_schema_order(
    documented: dict[tuple[str, str], list[Entry]],
) -> None:
    for relation, columns in schema().items():
        assert [(e.column, e.sql_type) for e in documented[relation]] == columns, relation


def test_times_name_their_clock_and_money_its_unit(documented: dict[tuple[str, str], list[Entry]]) -> None:
    for (name, _), entries in documented.items():
        for e in entries:
            where = f"{name}.{e.column}"
            assert e.unit, where
            if e.sql_type in {"TIMESTAMP", "DATE"}:
                assert "event time" in e.unit or "processing time" in e.unit, where
            if e.column.endswith("_minor"):
                assert "minor units" in e.unit, where
                # Money is either in one row's currency or says that it adds currencies together.
                assert "currency" in e.unit or "summed over currencies" in e.unit, where


def test_the_parser_sees_a_wrong_type_and_a_missing_column() -> None:
    text = (
        "\n## Column dictionary\n\n### `t` · table\n\n| column | type | unit · time | meaning |\n|---|---|---|---|\n"
        "| `a` | `INTEGER` | count | a |\n| `b` | `DATE` | event time | b |\n\n## Next\n| `c` | `X` | y | z |\n"
    )
    doc = dictionary(text)
    assert doc == {("t", "table"): [Entry("a", "INTEGER", "count", "a"), Entry("b", "DATE", "event time", "b")]}
