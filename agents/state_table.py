"""The journey table's records, and a Faust store that recovers them as of the committed input offsets.

Every record is ``header | body``: a format byte, the *tag* (the resolved-events offset just after the batch
that wrote it) and the customer's next due time (so a worker taking a partition over rebuilds its timer index
from headers, without decoding a million records).

Why the tag: a worker publishes the outputs of a batch and then its state records; Faust commits the input
offsets later. A crash in between leaves records of a batch whose offsets were not committed; that batch is
consumed again, and applying it to state that already contains it would emit nothing. On recovery,
:class:`RollbackStore` therefore skips every changelog record whose tag lies beyond the committed offset of its
partition (the key keeps its previous value), so the state is exactly as of the committed offset and the
replayed batch re-emits its outputs (the same records, since processing is deterministic). This is the
recovery of quix-streams (changelog records carry the source offset) on Faust's changelog. It needs the
changelog to keep a key's previous record until the batch after it is committed: the changelog topic is
created with a minimum compaction lag (:data:`CHANGELOG_CONFIGS`).

Guarantees: after recovery every record reflects only input offsets below the committed offset. Not
guaranteed: records of keys that are deleted (the journey never deletes; it writes empty records).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from faust.stores import STORES
from faust.stores.memory import Store as MemoryStore

log = logging.getLogger(__name__)

FORMAT = 2
_HEADER = struct.Struct(">Bqq")
NO_DUE = -(2**63)
#: Changelog topic settings the rollback relies on: never compact a record away within an hour of writing it.
CHANGELOG_CONFIGS = {"min.compaction.lag.ms": str(3_600_000)}


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


class RollbackStore(MemoryStore):  # type: ignore[type-arg]
    """Faust's in-memory store, recovering only records tagged at or below the committed offset.

    Keys of a partition that moves away or arrives are dropped first: Faust's memory store forgets only keys it
    recovered, not the ones this process wrote, and a partition that comes back must be rebuilt from the
    changelog (another worker may have written it meanwhile, and this process's own uncommitted writes must
    not survive)."""

    #: Set by the app: the committed resolved-events offset per partition (awaited before each recovery).
    committed_offsets: Callable[[], Awaitable[dict[int, int]]] | None = None
    #: Set by the app: the partition of a key (Kafka's default partitioner over the table's partitions), and the
    #: topic the table is co-partitioned with (its partitions move together with the changelog's).
    partition_of: Callable[[bytes], int] | None = None
    source_topic: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.committed: dict[int, int] = {}
        self.skipped = 0

    async def on_rebalance(
        self, assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0
    ) -> None:  # fmt: skip
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        ours = {self.source_topic, self.table.changelog_topic.get_topic_name()}
        moved = {tp.partition for tp in (*revoked, *newly_assigned) if tp.topic in ours}
        if moved and self.partition_of is not None:
            for key in [k for k in self.data if self.partition_of(k) in moved]:
                del self.data[key]
                self._key_partition.pop(key, None)
        if self.committed_offsets is not None:
            self.committed = await self.committed_offsets()

    def apply_changelog_batch(
        self, batch: Iterable[Any], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        kept = []
        for event in batch:
            raw = event.message.value
            limit = self.committed.get(event.message.partition, 0)
            if raw and unpack(raw)[0] > limit:
                self.skipped += 1  # written by a batch whose input was not committed: it will be replayed
                continue
            kept.append(event)
        super().apply_changelog_batch(kept, to_key, to_value)


def register_store() -> str:
    """Make ``rollback://`` name :class:`RollbackStore` in Faust's store registry; returns the URL."""
    STORES.aliases.setdefault("rollback", f"{__name__}:RollbackStore")
    return "rollback://"
