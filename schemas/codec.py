"""Confluent-framed Avro codec: ``0x00 | schema id (4 bytes, big-endian) | schemaless Avro body``.

Decoding always reads through the *latest* version of the writer's subject, so producers still on an
older version keep working (their records gain the new fields' defaults). Logical types are not
converted on decode: ``timestamp-millis`` comes back as ``int`` epoch milliseconds, which is what the
pipeline computes with and avoids building a ``datetime`` per field per event. Encoding accepts ints
(or datetimes) for those fields.
"""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.validation import ValidationError, validate

from schemas.errors import (
    AvroDecodeError,
    EncodeError,
    FramingError,
    IncompatibleSchemaError,
    SubjectMismatchError,
)
from schemas.registry import RegisteredSchema, SchemaRegistry

MAGIC = 0
HEADER = struct.Struct(">BI")
_MAX_ERROR_CHARS = 300


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoded message: who wrote it (id, subject, version) and the record in the reader's shape."""

    schema_id: int
    subject: str
    writer_version: int
    record: dict[str, Any]


class _Plan(NamedTuple):
    subject: str
    version: int
    writer: Any  # parsed, logical types stripped
    reader: Any | None  # None when the writer *is* the latest version: skips resolution (2x faster)


def frame(schema_id: int, body: bytes) -> bytes:
    """Prefix ``body`` with the Confluent header for ``schema_id``."""
    return HEADER.pack(MAGIC, schema_id) + body


def unframe(data: bytes | bytearray | memoryview) -> tuple[int, memoryview]:
    """Split a framed message into ``(schema_id, body)`` without copying the body.

    Raises :class:`FramingError` for empty input, input shorter than the header, or a magic byte != 0.
    """
    if len(data) == 0:
        raise FramingError("empty message", rule="empty")
    if len(data) < HEADER.size:
        raise FramingError(f"{len(data)} bytes is shorter than the 5-byte header", rule="too_short")
    magic, schema_id = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise FramingError(f"magic byte is {magic}, expected 0", rule="bad_magic_byte")
    return schema_id, memoryview(data)[HEADER.size :]


class AvroCodec:
    """Encode/decode events in Confluent wire format against a :class:`SchemaRegistry`.

    Guarantees: ``decode`` either returns a complete record in the shape of the latest version of the
    writer's subject, or raises a :class:`~schemas.errors.CodecError` (data error: route to failed
    events) or :class:`~schemas.errors.RegistryUnavailableError` (infrastructure: retry). A body with
    bytes left over after the record counts as corrupt. ``encode`` raises :class:`EncodeError` naming
    the field when a record does not fit.

    Does not guarantee: validation beyond Avro types (ranges, required identifiers: that is ingest),
    nor rejection of unknown keys on encode (Avro writers ignore them). The reader schema of a subject
    is pinned at first use for the life of the codec, so a running process never changes the shape of
    its records mid-stream; build a new codec to pick up a newer version from a remote registry.
    """

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry
        self._plans: dict[int, _Plan] = {}
        self._readers: dict[str, tuple[RegisteredSchema, Any]] = {}
        self._writers: dict[tuple[str, int | None], RegisteredSchema] = {}

    def encode(self, subject: str, record: Mapping[str, Any], version: int | None = None) -> bytes:
        """Encode ``record`` with ``subject``'s latest (or the given) version, framed with its id."""
        key = (subject, version)
        schema = self._writers.get(key)
        if schema is None:
            schema = self.registry.latest(subject) if version is None else self.registry.get(subject, version)
            self._writers[key] = schema
        out = io.BytesIO()
        out.write(HEADER.pack(MAGIC, schema.schema_id))
        try:
            schemaless_writer(out, schema.parsed, record)
        except Exception as exc:  # fastavro's errors are terse and of mixed types; explain on the slow path
            raise EncodeError(subject, schema.version, _explain(record, schema, exc)) from exc
        return out.getvalue()

    def subject_of(self, data: bytes | bytearray | memoryview) -> str:
        """The subject of a framed message's writer schema, without decoding the body (same errors as decode)."""
        schema_id, _ = unframe(data)
        plan = self._plans.get(schema_id)
        return (plan or self._plan(schema_id)).subject

    def decode(self, data: bytes | bytearray | memoryview, expected_subjects: Collection[str] | None = None) -> Decoded:
        """Decode one framed message; ``expected_subjects`` rejects writers of other subjects."""
        schema_id, _ = unframe(data)
        plan = self._plans.get(schema_id)
        if plan is None:
            plan = self._plan(schema_id)
        if expected_subjects is not None and plan.subject not in expected_subjects:
            raise SubjectMismatchError(
                f"schema id {schema_id} is subject {plan.subject!r}, expected one of {sorted(expected_subjects)}",
                schema_id=schema_id,
            )
        # BytesIO over bytes shares the buffer; seeking past the header avoids slicing a copy.
        body = io.BytesIO(data)
        body.seek(HEADER.size)
        try:
            record = schemaless_reader(body, plan.writer, plan.reader)
        except SchemaResolutionError as exc:
            raise IncompatibleSchemaError(
                f"{plan.subject} v{plan.version} (id {schema_id}) cannot be read as the latest version: {exc}",
                schema_id=schema_id,
            ) from exc
        except Exception as exc:  # truncation/garbage surfaces as EOFError, IndexError, UnicodeError, ...
            raise AvroDecodeError(
                f"body does not decode as {plan.subject} v{plan.version}: {type(exc).__name__}: {_plain(exc)}",
                rule="truncated" if isinstance(exc, EOFError) else "corrupt_body",
                schema_id=schema_id,
            ) from exc
        leftover = len(data) - body.tell()
        if leftover:
            raise AvroDecodeError(
                f"{leftover} trailing bytes after a {plan.subject} v{plan.version} record",
                rule="trailing_bytes",
                schema_id=schema_id,
            )
        # make_registered only admits top-level records, so the reader returns a dict.
        return Decoded(schema_id, plan.subject, plan.version, cast(dict[str, Any], record))

    def _plan(self, schema_id: int) -> _Plan:
        writer = self.registry.by_id(schema_id)
        reader = self._readers.get(writer.subject)
        if reader is None:
            latest = self.registry.latest(writer.subject)
            reader = (latest, _parse_plain(latest.schema_json))
            self._readers[writer.subject] = reader
        latest, reader_parsed = reader
        if latest.schema_id == schema_id:
            plan = _Plan(writer.subject, writer.version, reader_parsed, None)
        else:
            plan = _Plan(writer.subject, writer.version, _parse_plain(writer.schema_json), reader_parsed)
        self._plans[schema_id] = plan
        return plan


def _parse_plain(schema_json: str) -> Any:
    """Parse with every ``logicalType`` removed, so values come back as their underlying Avro type."""
    return parse_schema(_strip_logical(json.loads(schema_json)))


def _strip_logical(node: Any) -> Any:
    if isinstance(node, list):
        return [_strip_logical(n) for n in node]
    if isinstance(node, dict):
        out = {k: v for k, v in node.items() if k != "logicalType"}
        for key in ("type", "items", "values"):
            if key in out:
                out[key] = _strip_logical(out[key])
        if "fields" in out:
            out["fields"] = [_strip_logical(f) for f in out["fields"]]
        return out
    return node


def _explain(record: Mapping[str, Any], schema: RegisteredSchema, exc: Exception) -> list[str]:
    try:
        validate(record, schema.parsed, raise_errors=True)
    except ValidationError as verr:
        return [_shorten(str(e)) for e in verr.errors] or [_shorten(str(exc))]
    except Exception:  # validate itself can trip over very wrong input (e.g. not a mapping at all)
        pass
    return [_shorten(f"{type(exc).__name__}: {exc}")]


def _plain(exc: BaseException) -> str:
    """An exception's text without object addresses (``<... at 0x7f...>``), so equal input gives equal text."""
    return _ADDRESS.sub("", str(exc))


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _shorten(message: str) -> str:
    return message if len(message) <= _MAX_ERROR_CHARS else message[: _MAX_ERROR_CHARS - 3] + "..."
