"""Erasure tokens: what the suppression list and the erasure records hold instead of identifiers.

A token is an HMAC-SHA256 (under the PII secret, with its own domain prefix) of a node (``email_hash:<digest>``,
``device_id:<id>``, ...) or of a profile id. The suppression list and the warehouse's erasure table keep
tokens only, so they hold nothing that names a person to whoever lacks the secret; a process that has the secret
checks an identifier by computing its token.

Guarantees: the same secret and text give the same 32-hex token in every process; nodes and profile ids never
share a token (different prefixes). Not guaranteed: that a token cannot be tested against a guess by someone who
holds the secret (that is what lets the pipeline recognise an erased person).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from pipeline.domain.identity_rules import nodes_of

_NODE = b"erase-node\x00"
_PROFILE = b"erase-profile\x00"


class Tokens:
    """Token functions under one secret; results are cached (the sink checks every row's customer id)."""

    __slots__ = ("node", "profile")

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("the PII secret must not be empty")

        @lru_cache(maxsize=65536)
        def node(text: str) -> str:
            return hmac.digest(secret, _NODE + text.encode(), "sha256")[:16].hex()

        @lru_cache(maxsize=65536)
        def profile(text: str) -> str:
            return hmac.digest(secret, _PROFILE + text.encode(), "sha256")[:16].hex()

        self.node = node
        self.profile = profile

    def __repr__(self) -> str:
        return "Tokens(secret=***)"

    def any_node(self, nodes: Iterable[str], erased: set[str] | frozenset[str]) -> bool:
        """Whether one of ``nodes`` has its token in ``erased``."""
        return bool(erased) and any(self.node(n) in erased for n in nodes)

    def event_erased(self, event: Mapping[str, Any], erased: set[str] | frozenset[str]) -> bool:
        """Whether a canonical event carries an erased identifier (nothing computed while the list is empty)."""
        return bool(erased) and self.any_node(nodes_of(event), erased)
