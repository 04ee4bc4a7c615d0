"""The journey's state records, and their recovery from the state topic as of the offset a worker resumes at.

Every record is ``header | body``: a format byte, the *tag* (the resolved-events offset just after the batch
that wrote it) and the customer's next due time (so a worker taking a partition over rebuilds its timer index
from headers, without decoding a million records).

Why the tag: a worker publishes the outputs of a batch and then its state records; Faust commits the input
offsets later. A crash in between leaves records of a batch whose offsets were not committed; that batch is
consumed again, and applying it to state that already contains it would emit nothing. :func:`recover`
therefore skips every record whose tag lies beyond the offset the partition resumes at (the key keeps its
previous value), so the state is exactly as of that offset and the replayed batch re-emits its outputs (the same
records, since processing is deterministic); :func:`catch_up_from` covers the other direction. This is the
recovery of quix-streams (changelog records carry the source offset). It needs the state topic to keep a key's
previous record until the batch after it is committed: the topic is compacted with a minimum compaction lag
(``pipeline.topics.JOURNEY_STATE_CONFIGS``).

The state topic is read with a plain consumer by the journey itself when it takes a partition, not by Faust's
table recovery: that runs on the worker's shared consumer and was seen waiting forever for changelog messages
that consumer never delivered after a partition moved away and back (faust-streaming#74, #21; robinhood/faust
#542), with every stream of the worker paused meanwhile.

Guarantees: a recovered partition reflects exactly the input offsets below the one it resumes at. Not
guaranteed: bounded recovery time (it reads the partition's whole compacted topic).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

FORMAT = 2
_HEADER = struct.Struct(">Bqq")
NO_DUE = -(2**63)


def pack(tag: int, due: int | None, body: bytes) -> bytes:
    return _HEADER.pack(FORMAT, tag, NO_DUE if due is None else due) + body


def unpack(raw: bytes | None) -> tuple[int, int | None, bytes | None]:
    """(tag, due, body); (-1, None, None) for no record."""
    if not raw:
        return -1, None, None
    fmt, tag, due = _HEADER.unpack_from(raw)
    if fmt != FORMAT:
        raise ValueError(f"unknown journey record format {fmt}")
    return tag, None if due == NO_DUE else due, raw[_HEADER.size :]


def catch_up_from(tag: int, upto: int, earliest: int) -> int | None:
    """Where a partition whose state record is tagged ``tag`` (-1: none) must be replayed from before the batch at
    ``upto``, the offset it resumes at; None when the state is not behind. The state is behind when the group
    committed past what was recovered (records recovered as of an older committed offset, or none at all while
    the log starts at ``earliest`` < ``upto``): the messages in between are applied again."""
    start = tag if tag >= 0 else earliest
    return start if start < upto else None


def recover(records: Iterable[tuple[int, bytes | None, bytes | None]], upto: int) -> dict[bytes, bytes]:
    """The records of one partition as of input offset ``upto``, from its changelog in log order: per key the last
    record whose tag is at most ``upto`` (a later one was written by a batch that is consumed again); a tombstone
    removes the key."""
    out: dict[bytes, bytes] = {}
    for _offset, key, value in records:
        if key is None:
            continue
        if not value:
            out.pop(key, None)
        elif unpack(value)[0] <= upto:
            out[key] = value
    return out
