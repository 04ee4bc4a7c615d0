"""Pseudonymisation of PII and removal of placeholder identifiers.

Why placeholders are dropped: identity resolution unions every identifier an event carries. A POS that
types "0" as loyalty number, a tag that sends "undefined" as cookie id, or a clerk entering
"noemail@store.com" would make one identifier shared by thousands of unrelated people, and the identity
graph would merge them all into one customer. Dropping such values at ingest is much cheaper than undoing
a merge later, so :func:`clean_identifier` is deliberately aggressive.

Why HMAC and not a plain hash: e-mail addresses and phone numbers are a small, guessable space; an
unkeyed SHA-256 is reversible by enumeration. A keyed HMAC-SHA256 is stable (same person, same hash,
so identity still joins) but useless without the secret, which lives only in the ingest workers.
"""

from __future__ import annotations

import hmac
from functools import lru_cache

import phonenumbers

PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "", "null", "none", "nil", "undefined", "nan", "0", "-1", "anonymous", "unknown", "guest",
        "n/a", "na", "test", "00000000-0000-0000-0000-000000000000",
    }
)  # fmt: skip

#: Local parts of e-mail addresses that staff and forms use when the customer gave none.
_PLACEHOLDER_EMAIL_LOCALS: frozenset[str] = PLACEHOLDERS | {
    "noemail", "no-email", "no_email", "noreply", "no-reply", "donotreply", "email", "nomail",
}  # fmt: skip

_E164 = phonenumbers.PhoneNumberFormat.E164


def is_placeholder(value: str) -> bool:
    """True for values that stand for "no value": see :data:`PLACEHOLDERS`, plus only zeros/dashes.

    Surrounding whitespace and case are ignored.
    """
    folded = value.strip().lower()
    # "0000", "----" and "0-0-0" are the same "nothing" in other widths, so test the shape too.
    return folded in PLACEHOLDERS or not folded.strip("0-")


def clean_identifier(value: str | None) -> str | None:
    """Strip whitespace; return None for None and placeholders, else the stripped value (case kept)."""
    if value is None:
        return None
    stripped = value.strip()
    if is_placeholder(stripped):
        return None
    return stripped


def normalise_email(raw: str | None) -> str | None:
    """Strip and lower-case an address; None when it is obviously not a real one.

    Obviously invalid: no ``@``, an empty local part or domain, whitespace inside, or a placeholder local
    part (``unknown@...``, ``noemail@...``). Provider-specific rewriting (gmail dots) is not done: it is
    only right for some domains and merging two people is worse than missing a link.
    """
    if raw is None:
        return None
    email = raw.strip().lower()
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain or " " in email or "\t" in email:
        return None
    if local in _PLACEHOLDER_EMAIL_LOCALS:
        return None
    return email


@lru_cache(maxsize=8192)
def normalise_phone(raw: str, default_region: str = "US") -> str | None:
    """E.164 form of a phone number (``+14155550100``), or None if it is not a valid number.

    Validity follows the ``phonenumbers`` metadata, which also rejects fillers like 000-000-0000 or
    123-456-7890. Parsing costs ~20 µs, so results are cached (bounded, in process memory only; the
    cache holds raw numbers exactly as long as the process holds events anyway).
    """
    if is_placeholder(raw):
        return None
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, _E164)


class Pseudonymiser:
    """Keyed, deterministic pseudonyms for e-mail and phone.

    Guarantees: the same normalised value and secret always give the same 64-char hex digest; values of
    different kinds never collide (each kind is prefixed before hashing); a different secret gives
    unrelated digests. Does not guarantee unlinkability: whoever holds the secret can test guesses.
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("the PII secret must not be empty")
        self._secret = secret

    def __repr__(self) -> str:
        return "Pseudonymiser(secret=***)"

    def _digest(self, kind: bytes, value: str) -> str:
        return hmac.digest(self._secret, kind + value.encode("utf-8"), "sha256").hex()

    def email(self, raw: str | None) -> str | None:
        """HMAC of the normalised address (see :func:`normalise_email`), or None if it is not usable."""
        email = normalise_email(raw)
        return None if email is None else self._digest(b"email:", email)

    def phone(self, raw: str | None, default_region: str = "US") -> str | None:
        """HMAC of the E.164 form (see :func:`normalise_phone`), or None if it is not a valid number."""
        if raw is None:
            return None
        phone = normalise_phone(raw, default_region)
        return None if phone is None else self._digest(b"phone:", phone)
