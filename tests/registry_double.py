"""A test double of Confluent Schema Registry: the REST endpoints the hub uses, in process.

No registry server can run in the tests, so this serves the subset of the Schema Registry API
(https://docs.confluent.io/platform/current/schema-registry/develop/api.html) that
confluent-kafka's SchemaRegistryClient calls for the hub, with the registry's status codes,
error codes and bodies. That subset is written down in tests/registry_api.yaml (OpenAPI,
from the registry's API reference) and tests/unit/test_registry_api.py checks every answer
of this double against it:

- `POST /subjects/{subject}/versions` registers (idempotent: the same schema gets its id back;
  a schema the subject's compatibility level refuses gets 409, error_code 409; an invalid
  one 42201);
- `POST /subjects/{subject}` looks a schema up (40401 unknown subject, 40403 unknown schema);
- `GET /schemas/ids/{id}` (40403), `GET /subjects`, `GET /subjects/{subject}/versions`,
  `GET /subjects/{subject}/versions/{version|latest}` (40402 unknown version, 42202 not a
  version);
- `POST /compatibility/subjects/{subject}/versions/{version|latest}[?verbose=true]`;
- `GET|PUT /config[/{subject}]` (compatibility level; default BACKWARD, 40408 unset subject,
  42203 unknown level);
- `GET|PUT /mode` with `READONLY` refusing registration (42205 operation not permitted;
  42204 unknown mode);
- HTTP basic auth when credentials are set (401, error_code 401).

Compatibility follows the registry's rules with Apache Avro's own checker: BACKWARD (the new
schema reads data of the previous), FORWARD (the previous reads the new), FULL (both), the
`_TRANSITIVE` variants against every earlier version, NONE.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
LEVELS = frozenset(
    {
        "NONE",
        "BACKWARD",
        "BACKWARD_TRANSITIVE",
        "FORWARD",
        "FORWARD_TRANSITIVE",
        "FULL",
        "FULL_TRANSITIVE",
    }
)
MODES = frozenset({"READWRITE", "READONLY", "READONLY_OVERRIDE", "IMPORT"})


class Refusal(Exception):
    """An answer other than 200: its HTTP status and the registry's error code."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message


def _schema_of(body: Any) -> str:
    """The request's Avro schema text (42201 when it is not one)."""
    if not isinstance(body, dict):
        raise Refusal(422, 42201, "Invalid schema: the body is not an object")
    schema, kind = body.get("schema"), body.get("schemaType") or "AVRO"
    if kind != "AVRO":
        raise Refusal(422, 42201, f"Invalid schema: this registry keeps AVRO, not {kind}")
    if not isinstance(schema, str):
        raise Refusal(422, 42201, "Invalid schema: no schema text")
    try:
        avro.schema.parse(schema)
    except Exception as exc:  # any parse failure is an invalid schema
        raise Refusal(422, 42201, f"Invalid schema: {exc}") from exc
    return schema


def _canonical(schema: str) -> str:
    return json.dumps(json.loads(schema), sort_keys=True, separators=(",", ":"))


def _compatible(reader: str, writer: str) -> list[str]:
    """Why `reader` cannot read data written with `writer` (empty: it can)."""
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(avro.schema.parse(reader), avro.schema.parse(writer))
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    return [str(m) for m in result.messages] or ["incompatible"]


def check_level(level: str, new: str, earlier: list[str]) -> list[str]:
    """The registry's compatibility rule for `new` against the subject's earlier schemas."""
    if level == "NONE" or not earlier:
        return []
    against = earlier if level.endswith("_TRANSITIVE") else earlier[-1:]
    base = level.removesuffix("_TRANSITIVE")
    problems: list[str] = []
    for old in against:
        if base in ("BACKWARD", "FULL"):
            problems += _compatible(new, old)
        if base in ("FORWARD", "FULL"):
            problems += _compatible(old, new)
    return problems


def _level_of(body: Any) -> str:
    level = body.get("compatibility") if isinstance(body, dict) else None
    if level not in LEVELS:
        raise Refusal(422, 42203, f"Invalid compatibility level {level!r}")
    return str(level)


@dataclass
class RegistryState:
    """Schemas by id, subjects' versions, configs and mode."""

    schemas: dict[int, str] = field(default_factory=dict)
    subjects: dict[str, list[int]] = field(default_factory=dict)
    levels: dict[str, str] = field(default_factory=dict)
    global_level: str = "BACKWARD"
    mode: str = "READWRITE"
    requests: list[tuple[str, str]] = field(default_factory=list)

    def id_of(self, schema: str) -> int | None:
        canonical = _canonical(schema)
        for sid, text in self.schemas.items():
            if _canonical(text) == canonical:
                return sid
        return None


class FakeSchemaRegistry:
    """A running fake registry on 127.0.0.1; `url`, `state`, and `stop()`."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.state = RegistryState()
        self.credentials = credentials
        self._lock = threading.Lock()
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the tests read the state instead

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                parts = [unquote(p) for p in url.path.strip("/").split("/") if p]
                query = parse_qs(url.query)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else {}
                if registry.credentials is not None:
                    expected = (
                        "Basic "
                        + base64.b64encode(":".join(registry.credentials).encode()).decode()
                    )
                    if self.headers.get("Authorization") != expected:
                        self._send(401, {"error_code": 401, "message": "Unauthorized"})
                        return
                with registry._lock:
                    registry.state.requests.append((method, url.path))
                    try:
                        status, answer = registry.route(method, parts, query, body)
                    except Refusal as exc:
                        status, answer = (
                            exc.status,
                            {
                                "error_code": exc.error_code,
                                "message": exc.message,
                            },
                        )
                self._send(status, answer)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def level(self, subject: str) -> str:
        """A subject's compatibility level (the global one when it has none)."""
        return self.state.levels.get(subject, self.state.global_level)

    def _version(self, subject: str, version: str) -> tuple[int, int] | None:
        """(version number, schema id) of a subject's version or `latest`."""
        ids = self.state.subjects.get(subject, [])
        if version not in ("latest", "-1") and not (version.isdigit() and int(version) >= 1):
            raise Refusal(
                422, 42202, f"The specified version '{version}' is not a valid version id"
            )
        if not ids:
            return None
        if version in ("latest", "-1"):
            return len(ids), ids[-1]
        number = int(version)
        return (number, ids[number - 1]) if 1 <= number <= len(ids) else None

    def route(
        self, method: str, parts: list[str], query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        """The registry's answer to one request."""
        st = self.state
        not_found = {"error_code": 404, "message": "HTTP 404 Not Found"}
        match (method, parts):
            case ("GET", ["schemas", "ids", id_text]):
                if int(id_text) not in st.schemas:
                    return 404, {"error_code": 40403, "message": "Schema not found"}
                return 200, {"schema": st.schemas[int(id_text)]}
            case ("GET", ["subjects"]):
                return 200, sorted(st.subjects)
            case ("GET", ["subjects", subject, "versions"]):
                if subject not in st.subjects:
                    return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
                return 200, list(range(1, len(st.subjects[subject]) + 1))
            case ("GET", ["subjects", subject, "versions", version]):
                if subject not in st.subjects:
                    return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
                found = self._version(subject, version)
                if found is None:
                    return 404, {"error_code": 40402, "message": "Version not found."}
                number, version_id = found
                return 200, {
                    "subject": subject,
                    "version": number,
                    "id": version_id,
                    "schema": st.schemas[version_id],
                }
            case ("POST", ["subjects", subject, "versions"]):
                if st.mode != "READWRITE":
                    return 422, {
                        "error_code": 42205,
                        "message": f"Subject {subject} is in read-only mode",
                    }
                schema = _schema_of(body)
                ids = st.subjects.setdefault(subject, [])
                sid = st.id_of(schema)
                if sid is not None and sid in ids:
                    return 200, {"id": sid}
                problems = check_level(self.level(subject), schema, [st.schemas[i] for i in ids])
                if problems:
                    if not ids:
                        del st.subjects[subject]
                    return 409, {
                        "error_code": 409,
                        "message": "Schema being registered is incompatible with an earlier "
                        "schema for subject "
                        f'"{subject}", details: {problems}',
                    }
                if sid is None:
                    sid = max(st.schemas, default=0) + 1
                    st.schemas[sid] = schema
                ids.append(sid)
                return 200, {"id": sid}
            case ("POST", ["subjects", subject]):
                if subject not in st.subjects:
                    return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
                sid = st.id_of(_schema_of(body))
                ids = st.subjects[subject]
                if sid is None or sid not in ids:
                    return 404, {"error_code": 40403, "message": "Schema not found"}
                return 200, {
                    "subject": subject,
                    "id": sid,
                    "version": ids.index(sid) + 1,
                    "schema": st.schemas[sid],
                }
            case ("POST", ["compatibility", "subjects", subject, "versions", version]):
                if subject not in st.subjects:
                    return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
                found = self._version(subject, version)
                if found is None:
                    return 404, {"error_code": 40402, "message": "Version not found."}
                schema = _schema_of(body)
                level = self.level(subject)
                ids = st.subjects[subject]
                earlier = ids[: found[0]] if level.endswith("_TRANSITIVE") else [found[1]]
                problems = check_level(level, schema, [st.schemas[i] for i in earlier])
                answer: dict[str, Any] = {"is_compatible": not problems}
                if query.get("verbose") == ["true"]:
                    answer["messages"] = problems
                return 200, answer
            case ("GET", ["config"]):
                return 200, {"compatibilityLevel": st.global_level}
            case ("PUT", ["config"]):
                st.global_level = _level_of(body)
                return 200, {"compatibility": st.global_level}
            case ("GET", ["config", subject]):
                if subject not in st.levels:
                    if query.get("defaultToGlobal") == ["true"]:
                        return 200, {"compatibilityLevel": st.global_level}
                    return 404, {
                        "error_code": 40408,
                        "message": f"Subject '{subject}' does not have subject-level "
                        "compatibility configured",
                    }
                return 200, {"compatibilityLevel": st.levels[subject]}
            case ("PUT", ["config", subject]):
                st.levels[subject] = _level_of(body)
                return 200, {"compatibility": st.levels[subject]}
            case ("GET", ["mode"]):
                return 200, {"mode": st.mode}
            case ("PUT", ["mode"]):
                if body.get("mode") not in MODES:
                    raise Refusal(422, 42204, f"Invalid mode {body.get('mode')!r}")
                st.mode = body["mode"]
                return 200, {"mode": st.mode}
        return 404, not_found
