"""Registry backed by a directory of ``.avsc`` files (the bundled contracts by default).

Layout::

    <root>/types/*.avsc                 shared named types (records/enums/fixed with a namespace)
    <root>/subjects/<subject>/v<N>.avsc one file per published version, N = 1, 2, ... without gaps

Subject files reference shared types by name; at load every version is expanded into a self-contained
schema (each shared type inlined at its first use, referenced by name afterwards, as Avro requires).
See :mod:`schemas.registry` for the id rule and the evolution rules.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fastavro import parse_schema

from schemas.errors import SchemaCollisionError, SchemaLoadError, UnknownSchemaError
from schemas.registry import RegisteredSchema, make_registered

_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")
_NAMED = ("record", "error", "enum", "fixed")
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
# Avro's allowed writer -> reader promotions (spec, "Schema Resolution").
_PROMOTIONS = {
    ("int", "long"), ("int", "float"), ("int", "double"), ("long", "float"), ("long", "double"),
    ("float", "double"), ("string", "bytes"), ("bytes", "string"),
}  # fmt: skip


class FileSchemaRegistry:
    """Immutable, in-memory registry loaded once from a schema directory.

    Guarantees: ids follow :func:`schemas.registry.schema_id_for` and are therefore identical in every
    process and run for the same files; no two versions share an id; versions are contiguous from 1;
    the latest version of each subject can read data written with every older version (checked with
    Avro's resolution rules at load, so a field added without a default fails here, not in production).
    Does not guarantee that an already published file was left unchanged -- that is the team rule
    (pinned by the id test in tests/unit/test_registry.py), not something one directory can prove.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else Path(__file__).parent / "avro"
        self._shared = _load_shared_types(self.root / "types")
        self._by_id: dict[int, RegisteredSchema] = {}
        self._versions: dict[str, list[RegisteredSchema]] = {}
        subjects_dir = self.root / "subjects"
        if not subjects_dir.is_dir():
            raise SchemaLoadError(f"no subjects directory at {subjects_dir}")
        for subject_dir in sorted(p for p in subjects_dir.iterdir() if p.is_dir()):
            self._versions[subject_dir.name] = self._load_subject(subject_dir)

    def _load_subject(self, subject_dir: Path) -> list[RegisteredSchema]:
        files: dict[int, Path] = {}
        for path in subject_dir.glob("*.avsc"):
            match = _VERSION_FILE.match(path.name)
            if match is None:
                raise SchemaLoadError(f"{path}: subject files must be named v<N>.avsc")
            files[int(match.group(1))] = path
        if not files:
            raise SchemaLoadError(f"{subject_dir}: no v<N>.avsc files")
        if sorted(files) != list(range(1, len(files) + 1)):
            # A missing version would strand the producers still stamping its id.
            raise SchemaLoadError(f"{subject_dir}: versions must be 1..N without gaps, found {sorted(files)}")
        versions: list[RegisteredSchema] = []
        for version in sorted(files):
            path = files[version]
            try:
                expanded = _expand(_read_json(path), None, self._shared, set())
                registered = make_registered(subject_dir.name, version, expanded)
            except SchemaLoadError:
                raise
            except Exception as exc:  # fastavro raises several unrelated types for an invalid schema
                raise SchemaLoadError(f"{path}: invalid Avro schema: {exc}") from exc
            self._add(registered, path)
            versions.append(registered)
        latest = versions[-1]
        for older in versions[:-1]:
            problems = read_problems(json.loads(latest.schema_json), json.loads(older.schema_json))
            if problems:
                raise SchemaLoadError(
                    f"{subject_dir.name}: v{latest.version} cannot read data written with "
                    f"v{older.version}: " + "; ".join(problems)
                )
        return versions

    def _add(self, registered: RegisteredSchema, path: Path) -> None:
        if registered.schema_id == 0:
            raise SchemaCollisionError(f"{path}: hashes to the reserved schema id 0; rename the record")
        other = self._by_id.get(registered.schema_id)
        if other is not None:
            same = other.canonical_form == registered.canonical_form
            raise SchemaCollisionError(
                f"{path}: schema id {registered.schema_id} already used by {other.subject} v{other.version}"
                + (
                    " (identical canonical form: a new version must change names, fields or types; "
                    "doc/default-only edits do not make a new version)"
                    if same
                    else " (hash collision: rename the record or reorder a field)"
                )
            )
        self._by_id[registered.schema_id] = registered

    def by_id(self, schema_id: int) -> RegisteredSchema:
        try:
            return self._by_id[schema_id]
        except KeyError:
            message = f"schema id {schema_id} is not registered"
            raise UnknownSchemaError(message, schema_id=schema_id) from None

    def latest(self, subject: str) -> RegisteredSchema:
        return self._subject_versions(subject)[-1]

    def get(self, subject: str, version: int) -> RegisteredSchema:
        versions = self._subject_versions(subject)
        if not 1 <= version <= len(versions):
            raise UnknownSchemaError(f"subject {subject!r} has no version {version}", rule="unknown_version")
        return versions[version - 1]

    def subjects(self) -> list[str]:
        return sorted(self._versions)

    def all_schemas(self) -> list[RegisteredSchema]:
        """Every registered version, by subject then version (the order to publish them in)."""
        return [s for subject in self.subjects() for s in self._versions[subject]]

    def _subject_versions(self, subject: str) -> list[RegisteredSchema]:
        versions = self._versions.get(subject)
        if not versions:
            raise UnknownSchemaError(f"unknown subject {subject!r}", rule="unknown_subject")
        return versions


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise SchemaLoadError(f"{path}: not valid JSON: {exc}") from exc


def _load_shared_types(types_dir: Path) -> dict[str, Any]:
    shared: dict[str, Any] = {}
    if not types_dir.is_dir():
        return shared
    for path in sorted(types_dir.glob("*.avsc")):
        schema = _read_json(path)
        if not isinstance(schema, dict) or schema.get("type") not in _NAMED:
            raise SchemaLoadError(f"{path}: a shared type must be a named record, enum or fixed")
        full = _fullname(schema["name"], schema.get("namespace"))
        if "." not in full:
            # Inlined into a namespaced subject it would silently adopt that namespace.
            raise SchemaLoadError(f"{path}: shared type {full!r} needs a namespace")
        if full in shared:
            raise SchemaLoadError(f"{path}: shared type {full} is defined twice")
        shared[full] = schema
    return shared


def _fullname(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _expand(node: Any, namespace: str | None, shared: dict[str, Any], defined: set[str]) -> Any:
    """Inline shared types at their first use; ``defined`` tracks names already defined in this schema."""
    if isinstance(node, str):
        if node in _PRIMITIVES:
            return node
        full = _fullname(node, namespace)
        if full in shared and full not in defined:
            definition = dict(shared[full])
            # Explicit name + namespace so the inlined copy keeps its identity wherever it lands.
            definition["name"], definition["namespace"] = full.rsplit(".", 1)[1], full.rsplit(".", 1)[0]
            return _expand(definition, namespace, shared, defined)
        return node
    if isinstance(node, list):
        return [_expand(branch, namespace, shared, defined) for branch in node]
    if not isinstance(node, dict):
        raise SchemaLoadError(f"unexpected schema node {node!r}")
    kind = node.get("type")
    out = dict(node)
    if kind in _NAMED:
        full = _fullname(node["name"], node.get("namespace", namespace))
        defined.add(full)
        inner = full.rpartition(".")[0] or None
        if kind in ("record", "error"):
            out["fields"] = [dict(f, type=_expand(f["type"], inner, shared, defined)) for f in node["fields"]]
    elif kind == "array":
        out["items"] = _expand(node["items"], namespace, shared, defined)
    elif kind == "map":
        out["values"] = _expand(node["values"], namespace, shared, defined)
    elif isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in _PRIMITIVES):
        out["type"] = _expand(kind, namespace, shared, defined)
    return out


def read_problems(reader: Any, writer: Any) -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader`` (empty list: it can).

    Both are self-contained schemas. Implements the Avro resolution rules for records (missing
    fields need defaults), enums (unknown symbols need a reader default), unions, arrays, maps,
    fixed and primitive promotions. Aliases are not considered.
    """
    resolver = _Resolver()
    return resolver.check(parse_schema(reader, resolver.reader_named), parse_schema(writer, resolver.writer_named))


class _Resolver:
    def __init__(self) -> None:
        self.reader_named: dict[str, Any] = {}
        self.writer_named: dict[str, Any] = {}
        self.memo: dict[str, list[str] | None] = {}

    def check(self, r: Any, w: Any, path: str = "<root>") -> list[str]:
        if isinstance(r, str):
            r = self.reader_named.get(r, r)
        if isinstance(w, str):
            w = self.writer_named.get(w, w)
        if isinstance(w, list):
            return [problem for branch in w for problem in self.check(r, branch, path)]
        if isinstance(r, list):
            if any(not self.check(branch, w, path) for branch in r):
                return []
            return [f"{path}: writer type {_kind(w)} matches no branch of the reader union"]
        rk, wk = _kind(r), _kind(w)
        if rk != wk:
            ok = (wk, rk) in _PROMOTIONS
            return [] if ok else [f"{path}: writer type {wk} cannot be read as {rk}"]
        if rk in _NAMED:
            if r["name"] != w["name"]:
                return [f"{path}: named type {w['name']} is read as {r['name']}"]
            if r["name"] not in self.memo:
                self.memo[r["name"]] = None  # in progress: a recursive reference resolves to "fine"
                self.memo[r["name"]] = self._named(rk, r, w, path)
            return self.memo[r["name"]] or []
        if rk == "array":
            return self.check(r["items"], w["items"], f"{path}[]")
        if rk == "map":
            return self.check(r["values"], w["values"], f"{path}{{}}")
        return []

    def _named(self, kind: str, r: Any, w: Any, path: str) -> list[str]:
        if kind == "enum":
            missing = [s for s in w["symbols"] if s not in r["symbols"]]
            if missing and r.get("default") is None:
                return [f"{path}: reader enum lacks {missing} and has no default"]
            return []
        if kind == "fixed":
            return [] if r["size"] == w["size"] else [f"{path}: fixed size {w['size']} read as {r['size']}"]
        writer_fields = {f["name"]: f for f in w["fields"]}
        problems: list[str] = []
        for rf in r["fields"]:
            where = rf["name"] if path == "<root>" else f"{path}.{rf['name']}"
            if rf["name"] in writer_fields:
                problems += self.check(rf["type"], writer_fields[rf["name"]]["type"], where)
            elif "default" not in rf:
                problems.append(f"{where}: added without a default")
        return problems


def _kind(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    kind = schema["type"]
    return kind if isinstance(kind, str) else _kind(kind)
