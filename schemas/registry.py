"""Schema registry contract: where writer schemas come from, and how their ids are made.

Two implementations share the :class:`SchemaRegistry` protocol:

* :class:`~schemas.registry_file.FileSchemaRegistry` reads the ``.avsc`` files bundled in
  ``schemas/avro`` (no server needed). Its ids are **derived from the files**, so every process and
  every run agrees on them without coordination.
* :class:`~schemas.registry_http.HttpSchemaRegistry` talks to a Confluent-compatible Schema Registry;
  ids are whatever that server assigned. ``publish_all`` copies the file contracts into one.

Id rule (file registry)
    ``id = int.from_bytes(sha256(PCF)[:4], "big") & 0x7FFFFFFF`` where PCF is the Avro *Parsing
    Canonical Form* of the fully expanded schema (all shared named types inlined). Docs, defaults,
    aliases and logical types are not part of the PCF, so they do not change an id; any change to
    names, field order, types or enum symbols does. Id 0 and two versions with the same id are refused
    at load time.

Evolution rules (also in docs/schemas.md)
    A published version is immutable: its file never changes, because producers in the field still
    stamp its id on every message. To evolve a subject add ``v<N+1>.avsc`` and keep every older file,
    so old producers' ids still resolve and are read through the latest version (reader/writer
    resolution). Only add fields with defaults, or enum symbols when the enum has a default. If a
    shared type under ``types/`` has to change, first expand the older versions that use it into
    self-contained files (their PCF, and therefore their id, must not move), then change the type.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from fastavro import parse_schema
from fastavro.schema import to_parsing_canonical_form

if TYPE_CHECKING:
    from schemas.registry_file import FileSchemaRegistry as FileSchemaRegistry
    from schemas.registry_http import HttpSchemaRegistry as HttpSchemaRegistry
    from schemas.registry_http import publish_all as publish_all

ID_MASK = 0x7FFFFFFF


@dataclass(frozen=True)
class RegisteredSchema:
    """One version of one subject, self-contained.

    Guarantees: ``schema_json`` parses on its own (no references to other files), ``parsed`` is the
    fastavro form of exactly that JSON (logical types kept, ready for ``schemaless_writer``) and
    ``canonical_form`` is its Parsing Canonical Form. Does not guarantee that ``schema_id`` follows
    :func:`schema_id_for`: that holds for the file registry only; a remote registry picks its own ids.
    """

    subject: str
    version: int
    schema_id: int
    schema_json: str
    canonical_form: str
    parsed: Any = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        """Full name of the top-level record, e.g. ``omnistream.web.WebEvent``."""
        return str(self.parsed["name"])


class SchemaRegistry(Protocol):
    """Lookup of registered schemas by id and by subject.

    Guarantees: a schema id, once answered, always maps to the same schema (ids are immutable), so
    callers may cache ``by_id`` forever. ``latest`` may move when a new version is registered.
    Lookups of things that do not exist raise :class:`~schemas.errors.UnknownSchemaError`; a registry
    that cannot answer raises :class:`~schemas.errors.RegistryUnavailableError`.
    """

    def by_id(self, schema_id: int) -> RegisteredSchema: ...

    def latest(self, subject: str) -> RegisteredSchema: ...

    def get(self, subject: str, version: int) -> RegisteredSchema: ...

    def subjects(self) -> list[str]: ...


def schema_id_for(canonical_form: str) -> int:
    """The documented id rule: first 4 bytes of SHA-256 of the PCF, as a 31-bit non-negative int."""
    return int.from_bytes(hashlib.sha256(canonical_form.encode("utf-8")).digest()[:4], "big") & ID_MASK


def make_registered(subject: str, version: int, schema: Any, schema_id: int | None = None) -> RegisteredSchema:
    """Build a :class:`RegisteredSchema` from a self-contained schema (JSON text or decoded JSON).

    ``schema_id`` defaults to :func:`schema_id_for` of the canonical form (the file-registry rule).
    Raises fastavro's ``SchemaParseException`` if it is not valid Avro, ``ValueError`` for bad JSON or
    a top-level type other than a record.
    """
    obj = json.loads(schema) if isinstance(schema, str) else schema
    schema_json = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    # Parse a fresh copy: fastavro annotates the dict it is given, and callers may reuse theirs.
    parsed = parse_schema(json.loads(schema_json))
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        # Events are records; the codec and the failed-event path rely on decoding to a dict.
        raise ValueError(f"{subject} v{version}: the top-level schema must be a record")
    canonical = to_parsing_canonical_form(json.loads(schema_json))
    sid = schema_id_for(canonical) if schema_id is None else schema_id
    return RegisteredSchema(subject, version, sid, schema_json, canonical, parsed)


def __getattr__(name: str) -> Any:
    # The implementations import the base types above, so importing them eagerly here would be a cycle
    # whichever module is imported first; resolving on first attribute access keeps
    # ``from schemas.registry import FileSchemaRegistry`` working in every import order.
    if name == "FileSchemaRegistry":
        from schemas import registry_file

        return registry_file.FileSchemaRegistry
    if name in ("HttpSchemaRegistry", "publish_all"):
        from schemas import registry_http

        return getattr(registry_http, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
