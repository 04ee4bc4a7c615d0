"""Schema registries: the file registry's id rule and load-time guards, and the HTTP client against a
small Confluent-compatible server running in a thread."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastavro.schema import to_parsing_canonical_form

import schemas.registry
from schemas.codec import AvroCodec
from schemas.errors import (
    RegistryUnavailableError,
    SchemaCollisionError,
    SchemaLoadError,
    UnknownSchemaError,
)
from schemas.registry import (
    FileSchemaRegistry,
    HttpSchemaRegistry,
    RegisteredSchema,
    publish_all,
    schema_id_for,
)
from schemas.registry_http import CONTENT_TYPE
from tests.unit.test_codec import sample_records

BUNDLED = Path(schemas.registry.__file__).parent / "avro"

# Published ids are part of the wire contract: every message a producer ever wrote carries one. If this
# test fails, a published .avsc (or a shared type it uses) changed -- revert it and add v<N+1> instead.
# Adding a new version means adding a line here.
PUBLISHED_IDS = {
    ("customer-event", 1): 2010989040,
    ("customer-profile", 1): 546445731,
    ("customer-profile", 2): 1204790839,
    ("event-bundle", 1): 1779466933,
    ("event-bundle", 2): 1550964493,
    ("failed-event", 1): 276303330,
    ("failed-event", 2): 1328072401,
    ("identity-merge", 1): 929384123,
    ("journey-control", 1): 1589001477,
    ("journey-control", 2): 779537162,
    ("journey-stage", 1): 1684897606,
    ("mobile", 1): 1436589742,
    ("order-line", 1): 2145030299,
    ("session", 1): 790164066,
    ("session", 2): 1468418402,
    ("signal", 1): 309000299,
    ("social", 1): 517965402,
    ("store", 1): 1864623815,
    ("web", 1): 1922985398,
    ("web", 2): 846804907,
}


def documented_id(schema: RegisteredSchema) -> int:
    """The rule from docs/schemas.md, computed independently of the registry code."""
    pcf = to_parsing_canonical_form(json.loads(schema.schema_json))
    return int.from_bytes(hashlib.sha256(pcf.encode()).digest()[:4], "big") & 0x7FFFFFFF


def test_ids_follow_the_documented_rule_and_are_pinned() -> None:
    registry = FileSchemaRegistry()
    ids = {(s.subject, s.version): s.schema_id for s in registry.all_schemas()}
    assert set(ids) == set(PUBLISHED_IDS)
    for schema in registry.all_schemas():
        assert schema.schema_id == documented_id(schema) == schema_id_for(schema.canonical_form)
        assert 0 < schema.schema_id < 2**31
        assert schema.schema_id == PUBLISHED_IDS[(schema.subject, schema.version)], (
            f"{schema.subject} v{schema.version} changed its id: published versions are immutable"
        )


def test_ids_stable_across_independent_loads_and_processes() -> None:
    first = {(s.subject, s.version): s.schema_id for s in FileSchemaRegistry().all_schemas()}
    second = {(s.subject, s.version): s.schema_id for s in FileSchemaRegistry(BUNDLED).all_schemas()}
    script = (
        "import json; from schemas.registry import FileSchemaRegistry as F;"
        "print(json.dumps([[s.subject, s.version, s.schema_id] for s in F().all_schemas()]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    third = {(s, v): i for s, v, i in json.loads(out.stdout)}
    assert first == second == third


def test_expanded_schemas_are_self_contained(tmp_path: Path) -> None:
    registry = FileSchemaRegistry()
    web = json.loads(registry.latest("web").schema_json)
    envelope = web["fields"][0]["type"]
    assert envelope["name"] == "Envelope" and envelope["namespace"] == "omnistream.common"
    assert "timestamp-millis" in registry.latest("web").schema_json  # logical types kept for writers
    # A self-contained schema needs no types/ directory to load and keeps its id.
    (tmp_path / "subjects" / "web").mkdir(parents=True)
    (tmp_path / "subjects" / "web" / "v2.avsc").write_text(registry.latest("web").schema_json)
    (tmp_path / "subjects" / "web" / "v1.avsc").write_text(registry.get("web", 1).schema_json)
    alone = FileSchemaRegistry(tmp_path)
    assert alone.latest("web").schema_id == registry.latest("web").schema_id


def test_docs_and_defaults_do_not_change_ids(tmp_path: Path) -> None:
    root = tmp_path / "avro"
    shutil.copytree(BUNDLED, root)
    path = root / "subjects" / "web" / "v2.avsc"
    schema = json.loads(path.read_text())
    schema["doc"] = "reworded"
    schema["fields"][2]["doc"] = "the page"
    path.write_text(json.dumps(schema))
    assert FileSchemaRegistry(root).latest("web").schema_id == FileSchemaRegistry().latest("web").schema_id


def test_lookups_and_unknowns() -> None:
    registry = FileSchemaRegistry()
    assert registry.subjects() == [
        "customer-event",
        "customer-profile",
        "event-bundle",
        "failed-event",
        "identity-merge",
        "journey-control",
        "journey-stage",
        "mobile",
        "order-line",
        "session",
        "signal",
        "social",
        "store",
        "web",
    ]
    assert registry.latest("web").version == 2 and registry.get("web", 1).version == 1
    assert registry.by_id(registry.get("web", 1).schema_id).subject == "web"
    assert registry.latest("web").name == "omnistream.web.WebEvent"
    with pytest.raises(UnknownSchemaError):
        registry.by_id(7)
    with pytest.raises(UnknownSchemaError):
        registry.latest("nope")
    with pytest.raises(UnknownSchemaError):
        registry.get("web", 3)


# --- temporary schema directories ---------------------------------------------------------------------


def _record(name: str, fields: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "t.shop", "fields": fields}


def _write(root: Path, subject: str, version: int, schema: Any) -> None:
    (root / "subjects" / subject).mkdir(parents=True, exist_ok=True)
    (root / "subjects" / subject / f"v{version}.avsc").write_text(json.dumps(schema))


COLOR = {"type": "enum", "name": "Color", "symbols": ["red", "green", "blue"], "default": "red"}
BASE_FIELDS: list[dict[str, Any]] = [
    {"name": "meta", "type": "t.common.Meta"},
    {"name": "count", "type": "int"},
    {"name": "color", "type": COLOR},
]


@pytest.fixture()
def tmp_root(tmp_path: Path) -> Path:
    (tmp_path / "types").mkdir()
    meta = {
        "type": "record",
        "name": "Meta",
        "namespace": "t.common",
        "fields": [{"name": "id", "type": "string"}],
    }
    (tmp_path / "types" / "Meta.avsc").write_text(json.dumps(meta))
    _write(tmp_path, "order", 1, _record("Order", BASE_FIELDS))
    return tmp_path


def test_tmp_dir_v1_to_v2_adding_optional_field(tmp_root: Path) -> None:
    v2_fields = [*BASE_FIELDS, {"name": "note", "type": ["null", "string"], "default": None}]
    v2_fields[1] = {"name": "count", "type": "long"}  # int -> long is an allowed promotion
    _write(tmp_root, "order", 2, _record("Order", v2_fields))
    registry = FileSchemaRegistry(tmp_root)
    codec = AvroCodec(registry)
    old = {"meta": {"id": "o-1"}, "count": 3, "color": "blue"}
    decoded = codec.decode(codec.encode("order", old, version=1))
    assert decoded.writer_version == 1 and decoded.record == {**old, "note": None}
    assert codec.decode(codec.encode("order", {**old, "note": "gift"})).record["note"] == "gift"
    assert FileSchemaRegistry(tmp_root).latest("order").schema_id == registry.latest("order").schema_id


def test_removing_enum_symbol_reads_old_data_as_enum_default(tmp_root: Path) -> None:
    fields = [*BASE_FIELDS[:2], {"name": "color", "type": {**COLOR, "symbols": ["red", "green"]}}]
    _write(tmp_root, "order", 2, _record("Order", fields))
    codec = AvroCodec(FileSchemaRegistry(tmp_root))
    data = codec.encode("order", {"meta": {"id": "o-1"}, "count": 1, "color": "blue"}, version=1)
    assert codec.decode(data).record["color"] == "red"


@pytest.mark.parametrize(
    ("v2_fields", "message"),
    [
        ([*BASE_FIELDS, {"name": "note", "type": "string"}], "note: added without a default"),
        ([BASE_FIELDS[0], {"name": "count", "type": "string"}, BASE_FIELDS[2]], "count: writer type int"),
        (
            [
                *BASE_FIELDS[:2],
                {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["red"]}},
            ],
            "has no default",
        ),
    ],
)
def test_incompatible_evolution_is_refused_at_load(tmp_root: Path, v2_fields: Any, message: str) -> None:
    _write(tmp_root, "order", 2, _record("Order", v2_fields))
    with pytest.raises(SchemaLoadError, match=message):
        FileSchemaRegistry(tmp_root)


def test_identical_schemas_collide(tmp_root: Path) -> None:
    _write(tmp_root, "order-copy", 1, _record("Order", BASE_FIELDS))
    with pytest.raises(SchemaCollisionError, match="identical canonical form"):
        FileSchemaRegistry(tmp_root)


def test_hash_collision_is_detected(tmp_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_root, "refund", 1, _record("Refund", BASE_FIELDS))
    monkeypatch.setattr(schemas.registry, "schema_id_for", lambda canonical_form: 4242)
    with pytest.raises(SchemaCollisionError, match="hash collision"):
        FileSchemaRegistry(tmp_root)


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("v3.avsc", _record("Order", BASE_FIELDS), "without gaps"),
        ("V2.avsc", _record("Order", BASE_FIELDS), "must be named"),
        ("v2.avsc", "{not json", "not valid JSON"),
        (
            "v2.avsc",
            {"type": "record", "name": "Order", "fields": [{"name": "x", "type": "nope"}]},
            "invalid Avro",
        ),
    ],
)
def test_malformed_directories_are_refused(tmp_root: Path, filename: str, content: Any, message: str) -> None:
    text = content if isinstance(content, str) else json.dumps(content)
    (tmp_root / "subjects" / "order" / filename).write_text(text)
    with pytest.raises(SchemaLoadError, match=message):
        FileSchemaRegistry(tmp_root)


# --- HTTP registry against a small Confluent-compatible server ------------------------------------------


class FakeConfluent:
    """Just enough of Confluent Schema Registry: sequential ids shared by subjects, versions per subject."""

    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str]] = []
        self.fail_with: int | None = None
        self.required_auth: str | None = None
        self.lock = threading.Lock()

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, path))
            if self.fail_with:
                return self.fail_with, {"error_code": 50001, "message": "backend store error"}
            if self.required_auth and headers.get("Authorization") != self.required_auth:
                return 401, {"error_code": 40101, "message": "unauthorized"}
            parts = [p for p in path.split("/") if p]
            if method == "POST" and len(parts) == 3 and parts[2] == "versions":
                if headers.get("Content-Type") != CONTENT_TYPE:
                    return 415, {"error_code": 415, "message": "bad content type"}
                schema = json.loads(body)["schema"]
                ids = [i for i, s in self.schemas.items() if s == schema]
                schema_id = ids[0] if ids else len(self.schemas) + 1
                self.schemas[schema_id] = schema
                versions = self.subjects.setdefault(parts[1], [])
                if schema_id not in versions:
                    versions.append(schema_id)
                return 200, {"id": schema_id}
            if parts == ["subjects"]:
                return 200, sorted(self.subjects)
            if parts[:2] == ["schemas", "ids"]:
                schema_id = int(parts[2])
                if schema_id not in self.schemas:
                    return 404, {"error_code": 40403, "message": f"Schema {schema_id} not found"}
                if len(parts) == 4:
                    return 200, [
                        {"subject": s, "version": v.index(schema_id) + 1}
                        for s, v in self.subjects.items()
                        if schema_id in v
                    ]
                return 200, {"schema": self.schemas[schema_id]}
            if parts[0] == "subjects" and len(parts) == 4:
                known = self.subjects.get(parts[1])
                if known is None:
                    return 404, {"error_code": 40401, "message": f"Subject '{parts[1]}' not found."}
                n = len(known) if parts[3] == "latest" else int(parts[3])
                if not 1 <= n <= len(known):
                    return 404, {"error_code": 40402, "message": "Version not found."}
                schema_id = known[n - 1]
                return 200, {
                    "subject": parts[1],
                    "version": n,
                    "id": schema_id,
                    "schema": self.schemas[schema_id],
                }
            return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}


@pytest.fixture()
def confluent() -> Iterator[tuple[FakeConfluent, str]]:
    fake = FakeConfluent()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, payload = fake.handle(self.command, self.path, self.headers, self.rfile.read(length))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_publish_all_then_decode_through_http_gives_the_same_records(
    confluent: tuple[FakeConfluent, str],
) -> None:
    fake, url = confluent
    files = FileSchemaRegistry()
    with HttpSchemaRegistry(url) as http, HttpSchemaRegistry(url) as reader:
        ids = publish_all(files, http)
        assert set(ids) == {(s.subject, s.version) for s in files.all_schemas()}
        assert publish_all(files, http) == ids  # idempotent
        assert set(fake.subjects) == {f"{s}-value" for s in files.subjects()}
        assert http.subjects() == files.subjects()
        assert http.latest("web").version == 2 and http.get("web", 1).schema_id == ids[("web", 1)]

        file_codec, http_codec = AvroCodec(files), AvroCodec(reader)
        for subject, record in sample_records().items():
            via_http = http_codec.decode(http_codec.encode(subject, record), expected_subjects={subject})
            via_files = file_codec.decode(file_codec.encode(subject, record))
            assert (via_http.subject, via_http.writer_version, via_http.record) == (
                via_files.subject,
                via_files.writer_version,
                via_files.record,
            )
            assert via_http.schema_id == ids[(subject, via_http.writer_version)]
        v1 = {k: v for k, v in sample_records()["web"].items() if k != "referrer"}
        old = http_codec.decode(http_codec.encode("web", v1, version=1))
        assert (old.subject, old.writer_version, old.record["referrer"]) == ("web", 1, None)


def test_http_caches_by_id(confluent: tuple[FakeConfluent, str]) -> None:
    fake, url = confluent
    with HttpSchemaRegistry(url) as http:
        schema_id = http.register("web", FileSchemaRegistry().latest("web").schema_json)
        with HttpSchemaRegistry(url) as fresh:
            first = fresh.by_id(schema_id)
            before = len(fake.requests)
            assert fresh.by_id(schema_id) is first and len(fake.requests) == before
            assert (first.subject, first.version) == ("web", 1)


def test_http_not_found_maps_to_unknown_schema(confluent: tuple[FakeConfluent, str]) -> None:
    _, url = confluent
    with HttpSchemaRegistry(url) as http:
        with pytest.raises(UnknownSchemaError) as info:
            http.by_id(99)
        assert info.value.schema_id == 99 and info.value.failure_type == "unknown_schema"
        with pytest.raises(UnknownSchemaError):
            http.latest("web")
        http.register("web", FileSchemaRegistry().get("web", 1).schema_json)
        with pytest.raises(UnknownSchemaError):
            http.get("web", 5)


def test_http_failures_are_registry_unavailable(confluent: tuple[FakeConfluent, str]) -> None:
    fake, url = confluent
    files = FileSchemaRegistry()
    with HttpSchemaRegistry(url) as http:
        publish_all(files, http)
        data = AvroCodec(http).encode("web", sample_records()["web"])
    fake.fail_with = 500
    with HttpSchemaRegistry(url) as http:
        for call in (lambda: http.by_id(1), lambda: http.latest("web"), http.subjects):
            with pytest.raises(RegistryUnavailableError, match="500"):
                call()
        with pytest.raises(RegistryUnavailableError):  # through the codec: never a CodecError
            AvroCodec(http).decode(data)
    fake.fail_with = None
    with HttpSchemaRegistry(url + "/not-a-registry") as wrong_path, pytest.raises(RegistryUnavailableError):
        wrong_path.latest("web")  # a bare 404 without a Confluent error code is misconfiguration


def test_http_unreachable_is_registry_unavailable() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connection refused
        http = HttpSchemaRegistry(f"http://127.0.0.1:{port}", timeout_s=2)
        with http, pytest.raises(RegistryUnavailableError):
            http.by_id(1)


def test_http_auth_and_custom_subject_naming(confluent: tuple[FakeConfluent, str]) -> None:
    fake, url = confluent
    fake.required_auth = "Basic " + base64.b64encode(b"svc:secret").decode()
    with HttpSchemaRegistry(url) as anonymous, pytest.raises(RegistryUnavailableError, match="401"):
        anonymous.subjects()
    naming = {"subject_for": lambda s: f"prod.{s}-value", "auth": ("svc", "secret")}
    with HttpSchemaRegistry(url, **naming) as http:  # type: ignore[arg-type]
        http.register("web", FileSchemaRegistry().latest("web").schema_json)
        assert "prod.web-value" in fake.subjects
        assert http.subjects() == ["web"] and http.latest("web").subject == "web"
    with pytest.raises(ValueError, match="subject_from"):
        HttpSchemaRegistry(url, subject_for=lambda s: "fixed")
