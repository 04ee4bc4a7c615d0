"""The due-time index of a journey partition: each customer's next due time, and the customers due before an
instant, taken a bounded number at a time.

Why not a heap of ``(due, key)`` tuples: a worker holds one entry per customer (a million and more), and a list
of that size is walked by every full collection of Python's garbage collector (about 40 ms per million entries,
with the event loop held), whatever the entries are. Here the entries live in dicts of bytes -> int, which the
collector does not track at all: per bucket of ``bucket_ms`` of due time, one dict, and a small heap of the
bucket numbers. Taking the customers of a bucket that is only partly due scans that bucket (one minute's
customers by default).
"""

from __future__ import annotations

import heapq
import sys
from itertools import islice

BUCKET_MS = 60_000


class DueIndex:
    """customer key -> next due time (epoch ms); :meth:`take` removes customers from the buckets only: a taken
    customer keeps its due time until :meth:`set` gives it another one (or None)."""

    __slots__ = ("_buckets", "_due", "_heap", "_ms")

    def __init__(self, bucket_ms: int = BUCKET_MS) -> None:
        self._ms = bucket_ms
        self._due: dict[bytes, int] = {}
        self._buckets: dict[int, dict[bytes, int]] = {}  # bucket number -> {key: due}; empty ones linger
        self._heap: list[int] = []  # the bucket numbers in ``_buckets``, each once

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def get(self, key: bytes) -> int | None:
        return self._due.get(key)

    def set(self, key: bytes, due: int | None) -> None:
        """Give ``key`` a new due time (None: none). The same due time again changes nothing (a customer taken
        and left unchanged is not due again until it gets another one)."""
        old = self._due.get(key)
        if old == due:
            return
        if old is not None:
            bucket = self._buckets.get(old // self._ms)
            if bucket is not None:
                bucket.pop(key, None)
        if due is None:
            del self._due[key]
            return
        self._due[key] = due
        number = due // self._ms
        bucket = self._buckets.get(number)
        if bucket is None:
            bucket = self._buckets[number] = {}
            heapq.heappush(self._heap, number)
        bucket[key] = due

    def take(self, before: int, limit: int) -> list[bytes]:
        """Up to ``limit`` customers due before ``before``, removed from the buckets (earliest buckets first;
        within a bucket, in no particular order)."""
        taken: list[bytes] = []
        while len(taken) < limit and (number := self._first()) is not None and number * self._ms < before:
            bucket = self._buckets[number]
            whole = (number + 1) * self._ms <= before
            keys = islice(bucket if whole else (k for k, d in bucket.items() if d < before), limit - len(taken))
            ready = list(keys)
            for key in ready:
                del bucket[key]
            taken.extend(ready)
            if bucket and not whole:
                break  # the rest of this bucket is due later
        return taken

    def any_before(self, before: int) -> bool:
        """Whether :meth:`take` would return anything."""
        number = self._first()
        if number is None or number * self._ms >= before:
            return False
        # Later buckets start after this one ends: only a partly due one needs a look inside.
        return (number + 1) * self._ms <= before or any(d < before for d in self._buckets[number].values())

    def _first(self) -> int | None:
        """The earliest non-empty bucket's number (empty ones are dropped on the way), or None."""
        while self._heap and not self._buckets[self._heap[0]]:
            del self._buckets[heapq.heappop(self._heap)]
        return self._heap[0] if self._heap else None

    def footprint(self) -> int:
        """Bytes of the index's Python objects (keys and ints are counted once, by the dict that holds them)."""
        size = sys.getsizeof(self._due) + sum(sys.getsizeof(d) for d in self._due.values())
        size += sys.getsizeof(self._buckets) + sum(sys.getsizeof(b) for b in self._buckets.values())
        return size + sys.getsizeof(self._heap)
