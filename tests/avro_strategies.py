"""Hypothesis strategies for records of an Avro schema, biased towards what breaks ingest: boundary numbers,
placeholder and junk identifiers, huge and empty strings, event times around the ingest clock."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
_JUNK_TEXT = ["", " ", "null", "unknown", "n/a", "0", "-1", "+", "@", "a@", "@b", "x" * 700, "1" * 40, "\u0000",
              "é" * 3, "jane.doe@example.com", "+1 415 555 0100", "3f1c2a9e-0b7d-4c1e-9a55-0c1d2e3f4a5b"]  # fmt: skip
_CURRENCIES = ["EUR", "USD", "eur", "XXX", "ZZZ", "", "GBP"]
_ID = st.integers(0, 10**6)
_REAL: dict[str, st.SearchStrategy[str]] = {
    "event_id": st.uuids().map(str),
    "anonymous_id": st.uuids().map(str),
    "device_id": st.integers(0, 2**64 - 1).map(lambda n: f"{n:016x}"),
    "customer_id": _ID.map(lambda n: f"person-{n:06d}"),
    "loyalty_id": _ID.map(lambda n: f"L{n}"),
    "social_handle": _ID.map(lambda n: f"@fan{n}"),
    "email": _ID.map(lambda n: f"jane{n}@example.com"),
    "phone": st.integers(10**7, 10**8 - 1).map(lambda n: f"+49151{n}"),
    "product_id": _ID.map(lambda n: f"P-{n}"),
    "store_id": _ID.map(lambda n: f"store-{n % 100:03d}"),
    "order_id": _ID.map(lambda n: f"o-{n}"),
}


def _boundary(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = [lo, lo + 1, -1, 0, 1, 2, 5, 6, 10_000, 10_001, 10**11, 10**11 + 1, hi - 1, hi]
    return st.one_of(st.sampled_from([e for e in edges if lo <= e <= hi]), st.integers(lo, hi))


def _weighted(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], odds: int) -> st.SearchStrategy[Any]:
    """``common`` ``odds`` times as often as ``rare`` (one_of would flatten repeated branches)."""
    return st.integers(0, odds).flatmap(lambda i: rare if i == 0 else common)


def strategy(schema: Any, now_ms: int) -> st.SearchStrategy[Any]:
    """Records of ``schema`` (a parsed-JSON Avro schema, named types defined before use)."""
    return _of(schema, {}, now_ms, "")


def _of(t: Any, named: dict[str, Any], now_ms: int, field: str) -> st.SearchStrategy[Any]:
    if isinstance(t, list):
        return st.one_of(*[_of(branch, named, now_ms, field) for branch in t])
    if isinstance(t, str):
        if t in named:
            return named[t]
        return _primitive(t, now_ms, field)
    kind = t["type"]
    if kind == "record":
        fields = {f["name"]: _of(f["type"], named, now_ms, f["name"]) for f in t["fields"]}
        out = st.fixed_dictionaries(fields)
        named[t["name"]] = named[f"{t.get('namespace', '')}.{t['name']}".lstrip(".")] = out
        return out
    if kind == "enum":
        out = st.sampled_from(t["symbols"])
        named[t["name"]] = named[f"{t.get('namespace', '')}.{t['name']}".lstrip(".")] = out
        return out
    if kind == "array":
        return st.lists(_of(t["items"], named, now_ms, field), max_size=4)
    if kind == "map":
        return st.dictionaries(st.text(max_size=8), _of(t["values"], named, now_ms, field), max_size=3)
    if kind == "fixed":
        return st.binary(min_size=t["size"], max_size=t["size"])
    return _of(kind, named, now_ms, field)


def _primitive(t: str, now_ms: int, field: str) -> st.SearchStrategy[Any]:
    if t == "null":
        return st.none()
    if t == "boolean":
        return st.booleans()
    if t == "int":
        return _boundary(*INT32)
    if t == "long":
        if field == "event_time":
            day = 86_400_000
            odd = st.one_of(_boundary(*INT64), st.just(now_ms + day))
            return _weighted(st.integers(now_ms - 30 * day, now_ms), odd, 4)
        return _boundary(*INT64)
    if t in ("float", "double"):
        return st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32 if t == "float" else 64),
                         st.sampled_from([-1.0, 0.0, 1.0, 1.5]))  # fmt: skip
    if t == "string":
        junk = st.one_of(st.sampled_from(_JUNK_TEXT), st.text(max_size=40))
        real = _REAL.get(field)
        if field == "currency":
            return st.one_of(st.sampled_from(["EUR", "USD"]), st.sampled_from(_CURRENCIES), st.text(max_size=5))
        # Mostly well-formed where a field has a shape, so that fuzzing reaches the rules behind the first ones.
        return junk if real is None else _weighted(real, junk, 12)
    if t == "bytes":
        return st.binary(max_size=40)
    raise ValueError(f"no strategy for Avro type {t!r}")
