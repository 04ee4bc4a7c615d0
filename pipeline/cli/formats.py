"""Output formats of the commands that print tables (``sql``, ``report``): a rich table for people, CSV or JSON
for pipes and scripts. A table printed to a pipe or file is laid out wide rather than cut at 80 columns."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import sys
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from rich.console import Console

#: A table printed to a pipe or a file is laid out for this many columns (a TTY uses its own width).
PIPE_WIDTH = 400


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def console_for() -> Console:
    """A console for tables: on a TTY its width; otherwise wide enough not to cut values."""
    probe = Console()
    return probe if probe.is_terminal else Console(width=PIPE_WIDTH)


def plain(value: Any) -> Any:
    """A JSON value for a warehouse value (dates as ISO 8601, decimals as strings)."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def write_json(document: Any) -> None:
    json.dump(document, sys.stdout, default=plain, ensure_ascii=False)
    sys.stdout.write("\n")


def write_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    writer = csv.writer(sys.stdout)
    writer.writerow(columns)
    writer.writerows([[plain(v) for v in row] for row in rows])


def records(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[Mapping[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in rows]
