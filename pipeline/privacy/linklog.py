"""The link log in its erasable form: every message of ``identity-links`` has a key of its own, and the topic is
compacted, so a message can be replaced by a copy without the erased person's link events; erasure markers in
the log tell every replay which identifiers are gone.

* :func:`link_keys`: the keys ingest gives its link bundles (``links/<random>``). A key is never reused, so
  compaction removes a message only when erasure wrote a replacement under its key.
* :func:`without_nodes`: the replacement of a bundle: its entries minus every link event that carries one of the
  erased identifiers (a tombstone when none is left).
* :func:`marker`: ``erase/<request>`` with the erased identifiers' tokens (no identifier). The writer that meets
  it rebuilds its graph from the log, and from then on ignores link events that carry those identifiers.
* :func:`for_replay`: what a replay applies: each message once, at the position of the original and with its
  latest value, markers and tombstones left out, and the tokens of every marker up to there. A replacement
  names the original's offset in a header (:data:`REPLACES`), so it takes the original's place in the order
  even after compaction removed the original (links apply in the order they first arrived).

Guarantees: a replay of the log gives the graph of its link events minus those carrying an erased identifier,
whether or not compaction has run yet. Not guaranteed: that the replaced copies are gone from the broker's disk
before compaction runs (``min.cleanable.dirty.ratio``, ``segment.ms``; docs/privacy.md).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence

from pipeline.domain.identity_rules import nodes_of
from pipeline.steps.bundles import BUNDLE_SUBJECT, encode_bundle, read
from schemas.codec import AvroCodec

LINK_PREFIX = b"links/"
MARKER_PREFIX = b"erase/"
REPLACES = "omnistream-replaces"
#: (offset, key, value, offset of the message it replaces or None)
Message = tuple[int, bytes | None, bytes | None, int | None]


def replaces(headers: Iterable[tuple[str, bytes]]) -> int | None:
    """The offset a replacement names in its :data:`REPLACES` header; None for an original."""
    for name, value in headers:
        if name == REPLACES:
            return int(value)
    return None


def replacement_headers(original_offset: int) -> list[tuple[str, bytes]]:
    return [(REPLACES, str(original_offset).encode())]


def link_keys(messages: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``messages`` (link bundles) under fresh keys of their own."""
    return [(LINK_PREFIX + uuid.uuid4().hex.encode(), value) for _key, value in messages]


def marker(request: str, tokens: Collection[str]) -> tuple[bytes, bytes]:
    """The log record that erases the identifiers whose tokens are ``tokens``."""
    doc = {"request": request, "tokens": sorted(tokens)}
    return MARKER_PREFIX + request.encode(), json.dumps(doc, separators=(",", ":")).encode()


def marker_tokens(key: bytes | None, value: bytes | None) -> list[str] | None:
    """The tokens of a marker record; None for any other record."""
    if key is None or not key.startswith(MARKER_PREFIX) or not value:
        return None
    return [str(t) for t in json.loads(value)["tokens"]]


def for_replay(messages: Iterable[Message]) -> tuple[list[tuple[int, bytes, bytes]], set[str]]:
    """(messages to apply in order, erased tokens) for ``messages`` in log order (see the module docstring).

    Keys without the ``links/`` prefix (a log written before keys were unique) are never merged."""
    first: dict[bytes, int] = {}
    latest: dict[int, tuple[bytes, bytes | None]] = {}
    erased: set[str] = set()
    for offset, key, value, original in messages:
        key = key or b""
        tokens = marker_tokens(key, value)
        if tokens is not None:
            erased.update(tokens)
            continue
        if key.startswith(LINK_PREFIX):
            at = first.setdefault(key, offset if original is None else original)
            latest[at] = (key, value)
        else:
            latest[offset] = (key, value)
    kept = [(offset, key, value) for offset, (key, value) in sorted(latest.items()) if value]
    return kept, erased


def without_nodes(codec: AvroCodec, value: bytes, erased: Callable[[list[str]], bool]) -> tuple[bool, bytes | None]:
    """(whether to replace, replacement) for the bundle ``value``: its link events for which
    ``erased(nodes_of(event))`` holds are dropped; a bundle left with no link event is deleted (None).

    The replacement carries no progress marks: a writer reads it long after the marks it had, and an old mark
    read again could declare a busy source idle. A replay puts it at the original's place, where leaving its
    marks out only delays that replay's watermark until the next message (the order links apply in is theirs).
    """
    if codec.subject_of(value) != BUNDLE_SUBJECT:
        return False, None
    entries, _marks = read(codec, b"", value)
    kept = [e for e in entries if not erased(nodes_of(codec.decode(e.value).record))]
    if len(kept) == len(entries):
        return False, None
    return True, encode_bundle(codec, kept, ()) if kept else None
