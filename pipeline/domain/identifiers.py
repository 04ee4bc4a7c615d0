"""Shape rules for identifiers: what may become an identity key at all.

Pure. An identifier that links two events must be specific to a person or a device; values such as "+", "@",
"a@", a 40-digit "phone" or a 5,000-character "e-mail" are junk that strangers would share, and the identity
graph would merge them. Placeholders ("unknown", "n/a", zeros) are not junk but *no value*: they are dropped
before these rules (pipeline.domain.pii), so an event with a placeholder keeps its other identifiers.

Rules, per field (after stripping whitespace; the lengths are characters):

* every identifier: at most :data:`MAX_LENGTH` characters and at least one letter or digit;
* ``anonymous_id`` (cookie) and ``device_id``: at least :data:`MIN_DEVICE_LENGTH` characters (real cookies and
  advertising ids are UUIDs or 16+ hex digits; shorter ones are counters or test values);
* ``email``: ``local@domain``, local part 1-64 characters without whitespace, domain of dot-separated labels
  (letters, digits, hyphens inside), at most 254 characters in all (RFC 5321);
* ``phone``: at most 15 digits (E.164) before an extension (``x``, ``ext``).

A broken rule rejects the event as ``validation_error`` with rule ``invalid_identifier`` and names the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pipeline.domain.pii import is_placeholder

MAX_LENGTH = 128
MAX_EMAIL_LENGTH = 254
MIN_DEVICE_LENGTH = 8
MAX_PHONE_DIGITS = 15
FIELDS = ("customer_id", "loyalty_id", "anonymous_id", "device_id", "social_handle", "email", "phone")

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_EMAIL = re.compile(rf"[^\s@]{{1,64}}@{_LABEL}(?:\.{_LABEL})+", re.IGNORECASE)
_ALNUM = re.compile(r"[^\W_]")
_EXTENSION = re.compile(r"[a-z]", re.IGNORECASE)


def identifier_problem(ids: Mapping[str, str | None]) -> str | None:
    """The first shape rule the identifiers of an envelope break, as a reason naming the field; None if all
    are fine (missing and placeholder values are fine: they are dropped)."""
    for name in FIELDS:
        raw = ids.get(name)
        if raw is None:
            continue
        value = raw.strip()
        if name == "social_handle":
            value = value.lstrip("@")  # written with or without it; a lone "@" is no handle at all
        if not value or is_placeholder(value):
            continue
        problem = _problem(name, value)
        if problem is not None:
            return f"{name}: {problem}"
    return None


def _problem(name: str, value: str) -> str | None:
    limit = MAX_EMAIL_LENGTH if name == "email" else MAX_LENGTH
    if len(value) > limit:
        return f"{len(value)} characters > {limit}"
    if not _ALNUM.search(value):
        return "no letter or digit"
    if name in ("anonymous_id", "device_id") and len(value) < MIN_DEVICE_LENGTH:
        return f"{len(value)} characters < {MIN_DEVICE_LENGTH}"
    if name == "email" and not _EMAIL.fullmatch(value):
        return "not an e-mail address (local@domain.tld)"
    if name == "phone":
        number = _EXTENSION.split(value, maxsplit=1)[0]
        digits = sum(c.isdigit() for c in number)
        if digits > MAX_PHONE_DIGITS:
            return f"not a phone number ({digits} digits, E.164 allows {MAX_PHONE_DIGITS})"
    return None
