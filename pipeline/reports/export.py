"""The report's numbers for scripts: every section of a :class:`Report` as JSON, or as one long CSV."""

from __future__ import annotations

import dataclasses
from typing import Any

from pipeline.reports.model import Report
from pipeline.reports.queries import Frame

#: The CSV's columns: one line per value, so every section fits one file whatever its own columns are.
LONG_COLUMNS = ("section", "row", "column", "value")


def sections(data: Report) -> dict[str, Frame]:
    """Every table of the report by name, in the order the report shows them."""
    out: dict[str, Frame] = {}
    for f in dataclasses.fields(data):
        value = getattr(data, f.name)
        if isinstance(value, Frame):
            out[f.name] = value
    uplift_columns = tuple(f.name for f in dataclasses.fields(data.uplifts[0])) if data.uplifts else ()
    out["uplifts"] = Frame(uplift_columns, [dataclasses.astuple(u) for u in data.uplifts])
    return out


def document(data: Report) -> dict[str, Any]:
    """A JSON document: when the snapshot was published, each section as a list of row objects, and the
    caveats per section in words."""
    return {
        "published_at": data.published_at,
        "notes": data.notes,
        "sections": {name: [dict(zip(frame.columns, row, strict=True)) for row in frame.rows]
                     for name, frame in sections(data).items()},
    }  # fmt: skip


def long_rows(data: Report) -> list[tuple[Any, ...]]:
    """(section, row number, column, value) for every value of every section."""
    return [(name, i, column, value)
            for name, frame in sections(data).items()
            for i, row in enumerate(frame.rows)
            for column, value in zip(frame.columns, row, strict=True)]  # fmt: skip
