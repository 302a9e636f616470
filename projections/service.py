"""The projection service: the projector thread plus a local, read-only HTTP JSON API.

DuckDB lets one process open the file while it is written, so the process that projects
(`easysched run`) also answers the queries, on cursors of its own connection:

    svc = ProjectionService(data_dir, port=0)
    svc.start()          # projector thread + HTTP server thread; writes <data>/service.json
    ...
    svc.stop()           # stops both, closes the file, removes service.json

Endpoints (described at GET /openapi.json): POST /query, GET /instances, GET /instances/{id},
GET /timers, GET /stats, GET /health, POST /rebuild. The server listens on 127.0.0.1 only,
accepts requests addressed to a loopback host only (no DNS rebinding) and POSTs with a JSON
content type only (no cross-site form posts from a browser).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa

from easysched_es.log.base import Stream
from projections.client import ARROW_STREAM
from projections.errors import ProjectionError, QueryError, ReadOnlyError
from projections.layout import service_file
from projections.local import LocalProjection
from projections.queries import DEFAULT_TIMEOUT, encode_json, result_json

log = logging.getLogger(__name__)

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_MAX_BODY = 1 << 20


class ProjectionService:
    """Runs the projector of `data_dir` in a thread and serves read-only queries over HTTP.

    `port=0` picks a free port (see `port` / `url` after `start`). `events` and `commands`
    default to the embedded log of `data_dir`; pass other `Stream`s (Kafka) to fold those.
    """

    def __init__(
        self,
        data_dir: Path | str,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        events: Stream | None = None,
        commands: Stream | None = None,
        poll_interval: float = 0.05,
        query_timeout: float | None = DEFAULT_TIMEOUT,
        open_wait: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self._port = port
        self._host = host
        self._events, self._commands = events, commands
        self._poll_interval = poll_interval
        self._query_timeout = query_timeout
        self._open_wait = open_wait
        self._stop = threading.Event()
        self._projection: LocalProjection | None = None
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []
        self.started_at: float | None = None

    @property
    def port(self) -> int:
        """The port the API listens on (after `start`)."""
        if self._server is None:
            raise ProjectionError("the projection service is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port> (after `start`)."""
        return f"http://{self._host}:{self.port}"

    @property
    def projection(self) -> LocalProjection:
        """The projection this service runs (after `start`)."""
        if self._projection is None:
            raise ProjectionError("the projection service is not started")
        return self._projection

    def start(self) -> None:
        """Open the projection, start the projector and HTTP threads, and write service.json.

        Returns at once: catching up with the log happens in the projector thread, and
        queries meanwhile see the projection as far as it got (GET /stats tells how far).
        """
        if self._projection is not None:
            raise ProjectionError("the projection service is already started")
        # Waits a little for the file: a CLI call may hold it for a moment.
        projection = LocalProjection(
            self.data_dir, self._events, self._commands, wait=self._open_wait, query_timeout=self._query_timeout
        )
        try:
            server = _Server((self._host, self._port), _Handler)
        except OSError as exc:
            projection.close()
            raise ProjectionError(f"cannot listen on {self._host}:{self._port}: {exc}") from exc
        server.service = self
        self._projection, self._server = projection, server
        self._stop.clear()
        self.started_at = time.time()
        self._threads = [
            threading.Thread(
                target=projection.projector.run, args=(self._stop, self._poll_interval),
                name="projector", daemon=True,
            ),
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="projection-api",
                             daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._write_service_file()
        log.info("projection service of %s listening on %s", self.data_dir, self.url)

    def stop(self) -> None:
        """Stop serving and projecting, close the file and remove service.json. Idempotent."""
        if self._projection is None:
            return
        self._remove_service_file()
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join()
        self._projection.close()
        self._projection, self._server, self._threads = None, None, []

    def _write_service_file(self) -> None:
        info = {"pid": os.getpid(), "url": self.url, "port": self.port, "started_at": self.started_at}
        path = service_file(self.data_dir)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info) + "\n")
        os.replace(tmp, path)  # readers never see half a file

    def _remove_service_file(self) -> None:
        path = service_file(self.data_dir)
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        # Only ours: another service may have taken over the data directory meanwhile.
        if info.get("pid") == os.getpid() and info.get("port") == self.port:
            path.unlink(missing_ok=True)

    def health(self) -> dict[str, Any]:
        """What GET /health answers."""
        status = self.projection.projector.status()
        return {"ok": True, "pid": os.getpid(), "data_dir": str(self.data_dir), "caught_up": status["caught_up"],
                "last_error": status["last_error"]}

    def __enter__(self) -> ProjectionService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    service: ProjectionService


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "easysched-projections/1"

    # ---------------------------------------------------------------- plumbing

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, value: Any, status: int = 200) -> None:
        self._send(status, encode_json(value))

    def _error(self, status: int, message: str, kind: str) -> None:
        self._json({"error": message, "kind": kind}, status)

    def _guard(self) -> bool:
        """Loopback Host only: a web page cannot reach this API through DNS rebinding."""
        host = urllib.parse.urlsplit("//" + (self.headers.get("Host") or "")).hostname or ""
        if host not in _LOOPBACK and f"[{host}]" not in _LOOPBACK:
            self._error(HTTPStatus.FORBIDDEN, f"requests must be addressed to 127.0.0.1, not {host!r}", "forbidden")
            return False
        return True

    def _body(self) -> dict[str, Any] | None:
        if self.headers.get_content_type() != "application/json":
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the request body as application/json", "bad_request")
            return None
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body over {_MAX_BODY} bytes", "bad_request")
            return None
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError as exc:
            self._error(HTTPStatus.BAD_REQUEST, f"the body is not JSON: {exc}", "bad_request")
            return None
        if not isinstance(body, dict):
            self._error(HTTPStatus.BAD_REQUEST, "the body must be a JSON object", "bad_request")
            return None
        return body

    def _dispatch(self, routes: dict[str, Any]) -> None:
        if not self._guard():
            return
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        path = url.path.rstrip("/") or "/"
        handler = routes.get(path)
        arg: str | None = None
        if handler is None and path.startswith("/instances/") and "/instances/{id}" in routes:
            handler, arg = routes["/instances/{id}"], urllib.parse.unquote(path[len("/instances/"):])
        if handler is None:
            self._error(HTTPStatus.NOT_FOUND, f"no endpoint {self.command} {url.path}; see GET /openapi.json",
                        "not_found")
            return
        try:
            handler(self, query, *(() if arg is None else (arg,)))
        except ReadOnlyError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc), "read_only")
        except QueryError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc), "query")
        except _BadRequest as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc), "bad_request")
        except Exception as exc:  # the server keeps serving; the client learns what happened
            log.exception("projection API %s %s failed", self.command, self.path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}", "internal")

    def do_GET(self) -> None:
        self._dispatch(_GET_ROUTES)

    def do_POST(self) -> None:
        self._dispatch(_POST_ROUTES)

    # ---------------------------------------------------------------- endpoints

    @property
    def _service(self) -> ProjectionService:
        return self.server.service

    def _health(self, query: dict[str, str]) -> None:
        self._json(self._service.health())

    def _openapi(self, query: dict[str, str]) -> None:
        self._json(OPENAPI)

    def _instances(self, query: dict[str, str]) -> None:
        limit = _int(query.get("limit", "100"), "limit")
        reader = self._service.projection.reader
        self._json(reader.instances(query.get("workflow"), query.get("state"), limit))

    def _instance(self, query: dict[str, str], instance_id: str) -> None:
        found = self._service.projection.reader.instance(instance_id)
        if found is None:
            self._error(HTTPStatus.NOT_FOUND, f"no workflow instance {instance_id!r}", "not_found")
        else:
            self._json(found)

    def _timers(self, query: dict[str, str]) -> None:
        self._json(self._service.projection.reader.timers(query.get("instance")))

    def _stats(self, query: dict[str, str]) -> None:
        self._json(self._service.projection.reader.stats())

    def _query(self, query: dict[str, str]) -> None:
        body = self._body()
        if body is None:
            return
        sql = body.get("sql")
        if not isinstance(sql, str) or not sql.strip():
            raise _BadRequest('the body needs "sql": a non-empty string')
        params = body.get("params")
        if params is not None and not isinstance(params, list):
            raise _BadRequest('"params" must be a list')
        max_rows = body.get("max_rows")
        if max_rows is not None and (not isinstance(max_rows, int) or max_rows < 0):
            raise _BadRequest('"max_rows" must be a non-negative integer')
        arrow = body.get("format") == "arrow" or ARROW_STREAM in (self.headers.get("Accept") or "")
        result = self._service.projection.reader.run(sql, params, None if arrow else max_rows)
        if arrow:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, result.table.schema) as writer:
                writer.write_table(result.table)
            self._send(HTTPStatus.OK, sink.getvalue().to_pybytes(), ARROW_STREAM)
        else:
            self._json(result_json(result))

    def _rebuild(self, query: dict[str, str]) -> None:
        if self._body() is None:
            return
        t0 = time.monotonic()
        records = self._service.projection.projector.rebuild(progress=False)
        self._json({"records": records, "seconds": round(time.monotonic() - t0, 3)})


class _BadRequest(Exception):
    pass


def _int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer, not {text!r}") from None
    if value < 0:
        raise _BadRequest(f"{name} must be >= 0")
    return value


_GET_ROUTES = {
    "/health": _Handler._health,
    "/openapi.json": _Handler._openapi,
    "/instances": _Handler._instances,
    "/instances/{id}": _Handler._instance,
    "/timers": _Handler._timers,
    "/stats": _Handler._stats,
}
_POST_ROUTES = {"/query": _Handler._query, "/rebuild": _Handler._rebuild}


def _error_responses() -> dict[str, Any]:
    return {"400": {"description": "bad request, bad SQL or a statement that writes",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}


_ROWS = {"type": "array", "items": {"type": "object", "additionalProperties": True}}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "easysched projections",
        "version": "1",
        "description": "Read-only queries over the DuckDB projection of the scheduler's log. Times are UTC "
                       "(ISO 8601). Listens on 127.0.0.1; the address is in <data>/service.json.",
    },
    "paths": {
        "/query": {"post": {
            "summary": "Run one read-only SQL statement (SELECT, or EXPLAIN of one)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["sql"],
                "properties": {
                    "sql": {"type": "string"},
                    "params": {"type": "array", "description": "values for $1, $2, ... or ?"},
                    "max_rows": {"type": "integer", "minimum": 0},
                    "format": {"enum": ["json", "arrow"], "description": "arrow: an Arrow IPC stream"},
                }}}}},
            "responses": {**_ok({"$ref": "#/components/schemas/QueryResult"}), **_error_responses()},
        }},
        "/instances": {"get": {
            "summary": "Workflow instances, newest first",
            "parameters": [
                {"name": "workflow", "in": "query", "schema": {"type": "string"}},
                {"name": "state", "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 100}},
            ],
            "responses": _ok({"type": "object", "properties": {"instances": _ROWS}}),
        }},
        "/instances/{id}": {"get": {
            "summary": "One workflow instance with its task attempts and pending timers",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                **_ok({"type": "object", "properties": {"instance": {"type": "object"}, "tasks": _ROWS,
                                                         "timers": _ROWS}}),
                "404": {"description": "no such instance"},
            },
        }},
        "/timers": {"get": {
            "summary": "The delay queue: pending timers, earliest first",
            "parameters": [{"name": "instance", "in": "query", "schema": {"type": "string"}}],
            "responses": _ok({"type": "object", "properties": {"timers": _ROWS}}),
        }},
        "/stats": {"get": {
            "summary": "Outcome counts and p50/p95 durations per workflow and task; projection progress",
            "responses": _ok({"type": "object", "properties": {"workflows": _ROWS, "tasks": _ROWS,
                                                                "projection": {"type": "object"}}}),
        }},
        "/health": {"get": {"summary": "Liveness and whether the projection has caught up",
                            "responses": _ok({"type": "object"})}},
        "/rebuild": {"post": {
            "summary": "Drop the projection and refold it from the log (blocks until done)",
            "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": _ok({"type": "object", "properties": {"records": {"type": "integer"},
                                                                "seconds": {"type": "number"}}}),
        }},
        "/openapi.json": {"get": {"summary": "This description", "responses": _ok({"type": "object"})}},
    },
    "components": {"schemas": {
        "QueryResult": {"type": "object", "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "types": {"type": "array", "items": {"type": "string"}, "description": "DuckDB type of each column"},
            "rows": {"type": "array", "items": {"type": "array"}},
            "row_count": {"type": "integer"},
            "truncated": {"type": "boolean", "description": "max_rows cut the answer"},
        }},
        "Error": {"type": "object", "properties": {
            "error": {"type": "string"},
            "kind": {"enum": ["read_only", "query", "bad_request", "not_found", "forbidden", "internal"]},
        }},
    }},
}
