"""A small Schema Registry on loopback for the tests: the REST calls confluent-kafka's client
makes (register, look up, fetch by id, latest version, compatibility, config), in memory.

Compatibility follows Confluent's rules for Avro records, for the cases tickflow meets:
BACKWARD (the new schema reads data written with the latest: a field it adds needs a
default), FORWARD (the latest reads data of the new one: a field it removes needs a default
in the latest), FULL (both), NONE. Field types must match, or be an Avro promotion.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PROMOTIONS = {("int", "long"), ("int", "float"), ("int", "double"), ("long", "float"),
               ("long", "double"), ("float", "double"), ("string", "bytes"),
               ("bytes", "string")}


def _type_name(t: Any) -> Any:
    if isinstance(t, dict):
        return t["type"] if t["type"] not in ("record", "enum", "fixed") else t.get("name")
    if isinstance(t, list):
        return tuple(_type_name(x) for x in t)
    return t


def _readable(reader_t: Any, writer_t: Any) -> bool:
    r, w = _type_name(reader_t), _type_name(writer_t)
    if r == w:
        return True
    if isinstance(r, tuple):  # a reader union reads any of its branches
        return any(_readable(x, writer_t) for x in reader_t)
    if isinstance(w, tuple):
        return all(_readable(reader_t, x) for x in writer_t)
    return (w, r) in _PROMOTIONS


def can_read(reader: dict[str, Any], writer: dict[str, Any]) -> list[str]:
    """Why records written with ``writer`` cannot be read with ``reader`` (empty: they can)."""
    problems = []
    written = {f["name"]: f for f in writer.get("fields", [])}
    for f in reader.get("fields", []):
        old = written.get(f["name"])
        if old is None:
            if "default" not in f:
                problems.append(f"reader field {f['name']!r} has no default and is missing "
                                f"from the writer's schema")
        elif not _readable(f["type"], old["type"]):
            problems.append(f"field {f['name']!r}: {_type_name(old['type'])} cannot be read "
                            f"as {_type_name(f['type'])}")
    return problems


def compatibility_problems(level: str, new: dict[str, Any], latest: dict[str, Any]) -> list[str]:
    problems = []
    if level in ("BACKWARD", "FULL"):
        problems += can_read(new, latest)
    if level in ("FORWARD", "FULL"):
        problems += can_read(latest, new)
    return problems


class SchemaRegistryServer:
    """``with SchemaRegistryServer() as registry: registry.url`` (http://127.0.0.1:PORT)."""

    def __init__(self, compatibility: str = "BACKWARD"):
        self.compatibility = compatibility
        self.subject_compatibility: dict[str, str] = {}
        self.schemas: dict[int, str] = {}  # id -> schema text
        self.subjects: dict[str, list[int]] = {}  # subject -> ids by version
        self.requests: list[tuple[str, str]] = []  # (method, path), for assertions
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> SchemaRegistryServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ the REST calls

    def _id_for(self, text: str) -> int:
        canonical = json.dumps(json.loads(text), sort_keys=True)
        for i, known in self.schemas.items():
            if json.dumps(json.loads(known), sort_keys=True) == canonical:
                return i
        new_id = len(self.schemas) + 1
        self.schemas[new_id] = text
        return new_id

    def _version(self, subject: str, version: str) -> tuple[int, int] | None:
        ids = self.subjects.get(subject)
        if not ids:
            return None
        n = len(ids) if version in ("latest", "-1") else int(version)
        return (n, ids[n - 1]) if 1 <= n <= len(ids) else None

    def _level(self, subject: str) -> str:
        return self.subject_compatibility.get(subject, self.compatibility)

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        self.requests.append((method, path))
        parts = [p for p in path.split("?")[0].split("/") if p]
        with self._lock:
            if method == "GET" and parts[:2] == ["schemas", "ids"]:
                text = self.schemas.get(int(parts[2]))
                if text is None:
                    return 404, {"error_code": 40403, "message": "Schema not found"}
                return 200, {"schema": text}
            if method == "GET" and parts == ["subjects"]:
                return 200, sorted(self.subjects)
            if parts and parts[0] == "config":
                subject = parts[1] if len(parts) > 1 else None
                if method == "PUT":
                    if subject:
                        self.subject_compatibility[subject] = body["compatibility"]
                    else:
                        self.compatibility = body["compatibility"]
                    return 200, {"compatibility": body["compatibility"]}
                return 200, {"compatibilityLevel": self._level(subject or "")}
            if parts[:1] == ["compatibility"] and method == "POST":
                subject, found = parts[2], self._version(parts[2], parts[4])
                if found is None:
                    return 200, {"is_compatible": True}
                problems = compatibility_problems(self._level(subject),
                                                  json.loads(body["schema"]),
                                                  json.loads(self.schemas[found[1]]))
                return 200, {"is_compatible": not problems, "messages": problems}
            if parts[:1] == ["subjects"] and len(parts) >= 2:
                subject = parts[1]
                if method == "POST" and len(parts) == 3 and parts[2] == "versions":
                    return self._register(subject, body["schema"])
                if method == "POST" and len(parts) == 2:  # look a schema up
                    sid = self._id_for(body["schema"])
                    ids = self.subjects.get(subject, [])
                    if sid not in ids:
                        return 404, {"error_code": 40403, "message": "Schema not found"}
                    return 200, {"subject": subject, "id": sid, "version": ids.index(sid) + 1,
                                 "schema": self.schemas[sid]}
                if method == "GET" and len(parts) == 4 and parts[2] == "versions":
                    found = self._version(subject, parts[3])
                    if found is None:
                        return 404, {"error_code": 40402, "message": "Version not found"}
                    return 200, {"subject": subject, "version": found[0], "id": found[1],
                                 "schema": self.schemas[found[1]]}
        return 404, {"error_code": 404, "message": f"no route {method} {path}"}

    def _register(self, subject: str, text: str) -> tuple[int, Any]:
        ids = self.subjects.setdefault(subject, [])
        new = json.loads(text)
        if ids and self._level(subject) != "NONE":
            canonical = json.dumps(new, sort_keys=True)
            if all(json.dumps(json.loads(self.schemas[i]), sort_keys=True) != canonical
                   for i in ids):
                problems = compatibility_problems(self._level(subject), new,
                                                  json.loads(self.schemas[ids[-1]]))
                if problems:
                    return 409, {"error_code": 409, "message": "Schema being registered is "
                                 "incompatible with an earlier schema: " + "; ".join(problems)}
        sid = self._id_for(text)
        if sid not in ids:
            ids.append(sid)
        return 200, {"id": sid}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                status, answer = registry.handle(method, self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def log_message(self, *args: Any) -> None:
                return None

        return Handler


def schema_id(value: bytes) -> int:
    """The schema id of a Confluent-framed value."""
    return int.from_bytes(value[1:5], "big")


__all__ = ["SchemaRegistryServer", "can_read", "compatibility_problems", "schema_id"]
