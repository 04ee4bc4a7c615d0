"""Historical purchase files and the per-customer BTYD summary built from them.

Accepted layouts (one purchase per line), see :class:`Layout`:

* ``csv``: a header naming ``customer`` (or ``customer_id``), ``date``, ``amount`` and optionally ``items``;
* ``cdnow``: the CDNOW sample's ``customer sample_id date items amount`` (five whitespace columns);
* ``cdnow4``: the full CDNOW file's ``customer date items amount`` (four columns: the CD count, then dollars);
* ``amount-items``: ``customer date amount [items]`` (three or four columns).

With ``auto`` (the default) the layout is told from the file: the header or the column count, and for four
columns from the numbers themselves (item counts are whole numbers, amounts have cents). A four-column file
whose two last columns are both whole numbers cannot be told apart: :class:`LayoutError` asks for the layout
instead of guessing (a wrong guess reads the CD count as revenue).

Dates are ``yyyymmdd`` or ISO ``yyyy-mm-dd``. Guarantees: every line becomes a :class:`Transaction` or a
:class:`BadLine` with its line number and reason (never dropped silently). Purchases are counted per calendar
day: several purchases of one customer on one day are one purchase period with their amounts summed.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True, slots=True)
class Transaction:
    customer: str
    day: date
    amount: float
    items: int | None
    line: int


@dataclass(frozen=True, slots=True)
class BadLine:
    line: int
    reason: str
    text: str


def parse_day(text: str) -> date:
    """``yyyymmdd`` or ISO date (a time part is allowed and ignored)."""
    text = text.strip()
    if len(text) == 8 and text.isdigit():
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    return datetime.fromisoformat(text).date()


class Layout(StrEnum):
    auto = "auto"
    csv = "csv"
    cdnow = "cdnow"
    cdnow4 = "cdnow4"
    amount_items = "amount-items"


class LayoutError(ValueError):
    """The file's layout cannot be told from its content (or is not the one given)."""


#: Column positions of (date, items, amount) in the fixed whitespace layouts (the customer is column 0).
_COLUMNS = {Layout.cdnow: (2, 3, 4), Layout.cdnow4: (1, 2, 3)}
_SAMPLE_LINES = 2000


def detect_layout(lines: Iterable[str]) -> Layout:
    """The layout of a file from its first lines (see the module docstring); LayoutError when ambiguous."""
    sample = [line for _, line in zip(range(_SAMPLE_LINES), (ln for ln in lines if ln.strip()), strict=False)]
    if not sample:
        return Layout.amount_items
    if "," in sample[0] and any(c.isalpha() for c in sample[0]):
        return Layout.csv
    widths = {len(line.split()) for line in sample}
    if widths == {5}:
        return Layout.cdnow
    if 4 not in widths:
        return Layout.amount_items
    rows = [line.split() for line in sample if len(line.split()) == 4]
    third_whole = all(_whole(r[2]) for r in rows)
    fourth_whole = all(_whole(r[3]) for r in rows)
    if third_whole and not fourth_whole:
        return Layout.cdnow4
    if fourth_whole and not third_whole:
        return Layout.amount_items
    raise LayoutError(
        "cannot tell which of the last two columns is the amount: "
        + ("both are whole numbers" if third_whole else "neither is a whole number")
        + "; give the layout (cdnow4: customer date items amount, amount-items: customer date amount items)"
    )


def _whole(text: str) -> bool:
    return text.isdigit()


def read_transactions(path: Path, layout: Layout = Layout.auto) -> Iterator[Transaction | BadLine]:
    """Every line of ``path`` as a transaction or a bad line, in file order (LayoutError before the first when
    ``auto`` cannot tell the layout)."""
    if layout is Layout.auto:
        with path.open(newline="") as fh:
            layout = detect_layout(fh)
    with path.open(newline="") as fh:
        if layout is Layout.csv:
            yield from _csv(fh)
        else:
            yield from _columns(fh, layout)


def _row(customer: str, day: str, amount: str, items: str | None, n: int, text: str) -> Transaction | BadLine:
    try:
        value = float(amount)
        count = int(float(items)) if items not in (None, "") else None
        if not customer.strip():
            return BadLine(n, "empty customer", text)
        if value < 0 or not np.isfinite(value):
            return BadLine(n, f"amount {amount!r} is not a non-negative number", text)
        return Transaction(customer.strip(), parse_day(day), value, count, n)
    except ValueError as exc:
        return BadLine(n, str(exc), text)


def _csv(lines: Iterable[str]) -> Iterator[Transaction | BadLine]:
    reader = csv.DictReader(lines)
    fields = {f.strip().lower(): f for f in reader.fieldnames or []}
    cust = fields.get("customer") or fields.get("customer_id")
    if cust is None or "date" not in fields or "amount" not in fields:
        yield BadLine(1, "CSV header needs customer (or customer_id), date and amount", ",".join(fields))
        return
    for n, row in enumerate(reader, start=2):
        items = row.get(fields["items"]) if "items" in fields else None
        yield _row(row[cust] or "", row[fields["date"]] or "", row[fields["amount"]] or "", items, n, str(row))


def _columns(lines: Iterable[str], layout: Layout) -> Iterator[Transaction | BadLine]:
    fixed = _COLUMNS.get(layout)
    for n, raw in enumerate(lines, start=1):
        cols = raw.split()
        if not cols:
            continue
        if fixed is not None:
            want = fixed[2] + 1
            if len(cols) != want:
                yield BadLine(n, f"expected {want} columns ({layout}), got {len(cols)}", raw.rstrip())
                continue
            day, items, amount = (cols[i] for i in fixed)
            yield _row(cols[0], day, amount, items, n, raw.rstrip())
        elif len(cols) in (3, 4):
            yield _row(cols[0], cols[1], cols[2], cols[3] if len(cols) == 4 else None, n, raw.rstrip())
        else:
            yield BadLine(n, f"expected 3 or 4 columns ({layout}), got {len(cols)}", raw.rstrip())


@dataclass(frozen=True)
class Summary:
    """Per-customer BTYD inputs, in time units of ``unit_days`` days, as of ``end``."""

    customers: list[str]
    x: NDArray[np.float64]  # repeat purchase days
    t_x: NDArray[np.float64]  # first to last purchase day
    T: NDArray[np.float64]  # first purchase day to end
    monetary: NDArray[np.float64]  # mean spend of the repeat days (0 for one-time buyers)


def summarise(transactions: Iterable[Transaction], end: date, unit_days: float = 7.0) -> Summary:
    """Daily-period summary of purchases on or before ``end`` (customers first seen after ``end`` are left out)."""
    per_day: defaultdict[str, defaultdict[date, float]] = defaultdict(lambda: defaultdict(float))
    for tx in transactions:
        if tx.day <= end:
            per_day[tx.customer][tx.day] += tx.amount
    customers = sorted(per_day)
    x, t_x, big_t, money = [], [], [], []
    for c in customers:
        days = sorted(per_day[c])
        first, last = days[0], days[-1]
        x.append(len(days) - 1)
        t_x.append((last - first).days / unit_days)
        big_t.append((end - first).days / unit_days)
        repeat = [per_day[c][d] for d in days[1:]]
        money.append(sum(repeat) / len(repeat) if repeat else 0.0)
    arr = np.asarray
    return Summary(
        customers,
        arr(x, dtype=np.float64),
        arr(t_x, dtype=np.float64),
        arr(big_t, dtype=np.float64),
        arr(money, dtype=np.float64),
    )
