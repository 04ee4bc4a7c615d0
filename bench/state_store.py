"""The journey's records from a local RocksDB file instead of the state topic: how long the load takes.

What a persistent store would change in recovery: a worker restarting on the same disk reads its records from a
local RocksDB (``rocksdict``, the binding Faust's RocksDB store uses too) up to the state-topic offset the file
is complete to, then only the topic's tail. This measures the first half on the same records a partition holds:
written once (key -> header + body, as the journey keeps them, plus the offset), then opened afresh and read
into a ``dict``. ``rocksdict`` is optional (``pip install rocksdict``); without it the figure is "not measured".
See docs/operations.md ("State at scale") for what a full store needs.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

OFFSET_KEY = b"\x00offset"  # the state-topic offset the file holds everything below


def rocksdb_load(path: Path, records: Iterable[tuple[int, bytes | None, bytes | None]]) -> dict[str, Any]:
    """Write ``records`` (offset, key, value: a state-topic partition in log order) to a fresh RocksDB at
    ``path``, reopen it and load every record into a dict; seconds and rates."""
    try:
        from rocksdict import Rdict, WriteBatch
    except ImportError:
        return {"status": "rocksdict not installed"}
    shutil.rmtree(path, ignore_errors=True)
    started = time.perf_counter()
    db = Rdict(str(path))
    batch, last, count = WriteBatch(raw_mode=False), -1, 0
    for offset, key, value in records:
        if key is None:
            continue
        if value:
            batch.put(key, value)
        else:
            batch.delete(key)
        last, count = offset, count + 1
        if count % 10_000 == 0:
            db.write(batch)
            batch = WriteBatch(raw_mode=False)
    batch.put(OFFSET_KEY, (last + 1).to_bytes(8, "big"))
    db.write(batch)
    db.flush()
    db.close()
    written = time.perf_counter() - started
    started = time.perf_counter()
    db = Rdict(str(path))
    store = {k: v for k, v in db.items() if k != OFFSET_KEY}
    offset = int.from_bytes(db[OFFSET_KEY], "big")
    db.close()
    seconds = time.perf_counter() - started
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    shutil.rmtree(path, ignore_errors=True)
    return {"status": "ok", "records": len(store), "offset": offset, "write_s": written, "seconds": seconds,
            "rate": len(store) / seconds if seconds else None, "disk_bytes": size}  # fmt: skip
