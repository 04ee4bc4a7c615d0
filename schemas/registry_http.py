"""Client for a Confluent-compatible Schema Registry (REST, synchronous, httpx).

Used when ``OMNISTREAM_SCHEMA_REGISTRY_URL`` is set instead of the bundled files. Endpoints used::

    GET  /schemas/ids/{id}                      -> {"schema": "<json>"}
    GET  /schemas/ids/{id}/versions             -> [{"subject": ..., "version": ...}]  (registry >= 5.5)
    GET  /subjects/{subject}/versions/latest    -> {"subject", "version", "id", "schema"}
    GET  /subjects/{subject}/versions/{n}       -> same
    POST /subjects/{subject}/versions           -> {"id": n}
    GET  /subjects                              -> ["web-value", ...]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from schemas.errors import RegistryUnavailableError, SchemaRegistrationError, UnknownSchemaError
from schemas.registry import RegisteredSchema, make_registered
from schemas.registry_file import FileSchemaRegistry

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# Confluent error codes that mean "does not exist" (subject, version, schema); everything else that
# fails is the registry's problem, not the message's.
_NOT_FOUND_CODES = {40401: "unknown_subject", 40402: "unknown_version", 40403: "unknown_schema_id"}


def value_subject(subject: str) -> str:
    """Confluent's TopicNameStrategy for values: ``web`` -> ``web-value``."""
    return f"{subject}-value"


class HttpSchemaRegistry:
    """:class:`~schemas.registry.SchemaRegistry` over a Confluent-compatible REST API.

    Guarantees: schemas by id (and by subject+version) are cached forever, because the registry never
    changes them; ``latest`` always asks the server. "Does not exist" answers (404 with error code
    40401/40402/40403) raise :class:`UnknownSchemaError`; network errors, timeouts, other statuses
    and unparseable answers raise :class:`RegistryUnavailableError` so callers retry instead of
    discarding data. ``subject`` in results is the logical name (``web``), mapped back from the
    registry's (``web-value``) through ``subject_for``.

    Does not: resolve schema references (publish self-contained schemas, as ``publish_all`` does),
    support non-Avro schema types, or retry by itself. ``version`` numbers are the registry's, which
    match the file versions only if the subject was published from v1 in order.
    """

    def __init__(
        self,
        url: str,
        subject_for: Callable[[str], str] = value_subject,
        timeout_s: float = 10,
        auth: tuple[str, str] | None = None,
        subject_from: Callable[[str], str | None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.subject_for = subject_for
        self.subject_from = subject_from or _inverse_of(subject_for)
        self._client = httpx.Client(
            base_url=self.url,
            timeout=timeout_s,
            auth=auth,
            headers={"Accept": CONTENT_TYPE},
            transport=transport,
        )
        self._by_id: dict[int, RegisteredSchema] = {}
        self._by_version: dict[tuple[str, int], RegisteredSchema] = {}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpSchemaRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def by_id(self, schema_id: int) -> RegisteredSchema:
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        answer = self._call("GET", f"/schemas/ids/{schema_id}", schema_id=schema_id)
        _require_plain_avro(answer, f"schema id {schema_id}", schema_id)
        # The id alone does not say which subject it belongs to; the codec needs that to pick the reader.
        usages = self._call("GET", f"/schemas/ids/{schema_id}/versions", schema_id=schema_id)
        if not usages:
            raise UnknownSchemaError(f"schema id {schema_id} is not registered under any subject")
        # Prefer a subject that maps back to a logical name; sort so the choice is deterministic.
        first = min(usages, key=lambda u: (self.subject_from(u["subject"]) is None, u["subject"], u["version"]))
        subject = self.subject_from(first["subject"]) or first["subject"]
        version = int(first["version"])
        registered = self._make(subject, version, answer["schema"], schema_id)
        self._by_id[schema_id] = registered
        return registered

    def latest(self, subject: str) -> RegisteredSchema:
        return self._fetch_version(subject, "latest")

    def get(self, subject: str, version: int) -> RegisteredSchema:
        cached = self._by_version.get((subject, version))
        return cached if cached is not None else self._fetch_version(subject, str(version))

    def subjects(self) -> list[str]:
        names = self._call("GET", "/subjects")
        return sorted(logical for name in names if (logical := self.subject_from(name)) is not None)

    def register(self, subject: str, schema_json: str) -> int:
        """Register ``schema_json`` under ``subject`` (idempotent on the server); returns its id."""
        path = f"/subjects/{quote(self.subject_for(subject), safe='')}/versions"
        answer = self._call("POST", path, body={"schema": schema_json})
        return int(answer["id"])

    def _fetch_version(self, subject: str, version: str) -> RegisteredSchema:
        path = f"/subjects/{quote(self.subject_for(subject), safe='')}/versions/{version}"
        answer = self._call("GET", path)
        schema_id = int(answer["id"])
        _require_plain_avro(answer, f"{subject} version {version}", schema_id)
        registered = self._by_version.get((subject, int(answer["version"])))
        if registered is None:
            registered = self._make(subject, int(answer["version"]), answer["schema"], schema_id)
            self._by_version[(subject, registered.version)] = registered
        self._by_id.setdefault(schema_id, registered)
        return registered

    def _make(self, subject: str, version: int, schema: str, schema_id: int) -> RegisteredSchema:
        try:
            return make_registered(subject, version, schema, schema_id=schema_id)
        except Exception as exc:  # the server handed us something that is not a usable Avro record
            raise UnknownSchemaError(
                f"schema id {schema_id} ({subject} v{version}) is not a usable Avro record: {exc}",
                schema_id=schema_id,
            ) from exc

    def _call(self, method: str, path: str, body: Any = None, schema_id: int | None = None) -> Any:
        try:
            if body is None:
                response = self._client.request(method, path)
            else:
                response = self._client.request(method, path, json=body, headers={"Content-Type": CONTENT_TYPE})
        except httpx.HTTPError as exc:
            raise RegistryUnavailableError(f"{method} {self.url}{path}: {exc!r}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.is_success and payload is not None:
            return payload
        code = payload.get("error_code") if isinstance(payload, dict) else None
        message = payload.get("message") if isinstance(payload, dict) else response.text[:200]
        where = f"{method} {self.url}{path}: HTTP {response.status_code} {code or ''} {message}"
        if response.status_code == 404 and code in _NOT_FOUND_CODES:
            raise UnknownSchemaError(where, rule=_NOT_FOUND_CODES[code], schema_id=schema_id)
        if method == "POST" and response.status_code in (409, 422):
            raise SchemaRegistrationError(where)
        raise RegistryUnavailableError(where)


def publish_all(file_registry: FileSchemaRegistry, http_registry: HttpSchemaRegistry) -> dict[tuple[str, int], int]:
    """Register every file contract in the HTTP registry, oldest version first; returns the new ids.

    Oldest first so the registry's compatibility check sees the same history as the files, and its
    version numbers line up with ours when the subject starts empty. Safe to re-run: registering an
    existing schema returns its existing id.
    """
    return {
        (schema.subject, schema.version): http_registry.register(schema.subject, schema.schema_json)
        for schema in file_registry.all_schemas()
    }


def _require_plain_avro(answer: dict[str, Any], what: str, schema_id: int) -> None:
    schema_type = answer.get("schemaType", "AVRO")
    if schema_type != "AVRO":
        raise UnknownSchemaError(f"{what} is a {schema_type} schema, not Avro", schema_id=schema_id)
    if answer.get("references"):
        raise UnknownSchemaError(f"{what} uses schema references, which are not resolved", schema_id=schema_id)


def _inverse_of(subject_for: Callable[[str], str]) -> Callable[[str], str | None]:
    """Invert a prefix/suffix mapping (``f"{env}.{s}-value"``) by probing it with a marker."""
    marker = "\x00"
    probe = subject_for(marker)
    if probe.count(marker) != 1:
        raise ValueError("subject_for is not a plain prefix/suffix mapping; pass subject_from as well")
    prefix, suffix = probe.split(marker)

    def subject_from(name: str) -> str | None:
        if len(name) > len(prefix) + len(suffix) and name.startswith(prefix) and name.endswith(suffix):
            return name[len(prefix) : len(name) - len(suffix)]
        return None

    return subject_from
