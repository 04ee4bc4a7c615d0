"""Errors of the schema registry and the codec, split by who has to act on them.

* :class:`CodecError` and its subclasses are **data** errors: this one message is bad (or was written
  with a schema this consumer cannot use). Ingest turns them into a failed event; ``failure_type`` is a
  symbol of the ``omnistream.failed.FailureType`` enum and ``rule`` a machine-readable detail.
* :class:`RegistryUnavailableError` is **infrastructure**: the message may be perfectly fine, we just
  could not look its schema up. It is deliberately *not* a ``CodecError`` so that an ``except
  CodecError`` around decode can never turn a registry outage into thousands of failed events.
* :class:`SchemaLoadError` / :class:`SchemaRegistrationError` are configuration errors raised while
  loading or publishing contracts, never per message.
"""

from __future__ import annotations

from typing import ClassVar


class CodecError(Exception):
    """A message that cannot be decoded or accepted; carries what a failed event needs."""

    failure_type: ClassVar[str] = "decode_error"
    default_rule: ClassVar[str] = "decode_error"

    def __init__(self, message: str, *, rule: str | None = None, schema_id: int | None = None) -> None:
        super().__init__(message)
        self.rule = rule or self.default_rule
        self.schema_id = schema_id


class FramingError(CodecError):
    """Not Confluent framing: empty, shorter than the 5-byte header, or magic byte is not 0."""

    failure_type = "decode_error"
    default_rule = "bad_framing"


class UnknownSchemaError(CodecError):
    """The schema id (or subject/version) is not registered. Retrying will not help."""

    failure_type = "unknown_schema"
    default_rule = "unknown_schema_id"


class AvroDecodeError(CodecError):
    """The body does not decode with its writer schema (truncated, garbage, or trailing bytes)."""

    failure_type = "decode_error"
    default_rule = "corrupt_body"


class SubjectMismatchError(CodecError):
    """The writer schema belongs to a subject the caller does not accept (a store event on ``web``)."""

    failure_type = "schema_violation"
    default_rule = "unexpected_subject"


class IncompatibleSchemaError(CodecError):
    """The writer schema cannot be resolved to the reader schema of its subject (broken evolution)."""

    failure_type = "schema_violation"
    default_rule = "incompatible_writer_schema"


class EncodeError(ValueError):
    """A record does not match the schema it is encoded with; ``errors`` name the offending fields."""

    def __init__(self, subject: str, version: int, errors: list[str]) -> None:
        super().__init__(f"record does not match {subject} v{version}: " + "; ".join(errors))
        self.subject = subject
        self.version = version
        self.errors = errors


class RegistryUnavailableError(Exception):
    """The schema registry could not answer (network, timeout, 5xx, auth). Retry, then crash loudly."""


class SchemaLoadError(Exception):
    """A schema directory is malformed: bad file name, invalid Avro, broken evolution."""


class SchemaCollisionError(SchemaLoadError):
    """Two different subject versions map to the same schema id."""


class SchemaRegistrationError(Exception):
    """A registry refused to register a schema (invalid, or incompatible with the subject's history)."""
