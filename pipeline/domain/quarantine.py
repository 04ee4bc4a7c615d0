"""Sealing the original bytes of failed events.

A rejected input may contain raw PII (an undecodable body still holds the e-mail address as plain UTF-8), yet
it must be kept for inspection and replay. It is sealed with Fernet (AES-128-CBC + HMAC-SHA256) under a key
derived from the deployment's PII secret: downstream topics and DuckDB only ever hold the token, and only
someone with the secret can open it. Rotating the secret makes older tokens unreadable: keep the old secret
while its failed events matter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken

_CONTEXT = b"omnistream/failed-events/v1"


class Quarantine:
    """Seals and opens byte strings under a key derived from ``secret``."""

    def __init__(self, secret: bytes) -> None:
        key = hmac.new(secret, _CONTEXT, hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))
        self._fingerprint_key = hmac.new(secret, _CONTEXT + b"/fingerprint", hashlib.sha256).digest()

    def fingerprint(self, data: bytes) -> str:
        """HMAC-SHA256 (hex) of ``data``: tells whether bytes found later are the original, reveals nothing of
        them without the secret."""
        return hmac.new(self._fingerprint_key, data, hashlib.sha256).hexdigest()

    def seal(self, data: bytes) -> str:
        """An authenticated, encrypted token for ``data`` (ASCII)."""
        return self._fernet.encrypt(data).decode("ascii")

    def open(self, token: str) -> bytes:
        """The bytes sealed in ``token``; ``ValueError`` if it was sealed under another secret or altered."""
        try:
            return self._fernet.decrypt(token.encode("ascii"))
        except InvalidToken as exc:
            raise ValueError("failed-event token does not open with this secret (rotated or altered)") from exc
