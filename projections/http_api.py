"""The projection query API as Starlette routes, and the guard every request of the server passes.

Endpoints (described at GET /openapi.json): POST /query, GET /instances, GET /instances/{id},
GET /timers, GET /stats, GET /health, POST /rebuild. Answers and errors are JSON; an error is
`{"error": ..., "kind": ...}`. DuckDB work runs in Starlette's thread pool, each request on a
cursor of its own.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import pyarrow as pa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from projections.client import ARROW_STREAM
from projections.errors import QueryError, ReadOnlyError
from projections.local import LocalProjection
from projections.openapi import OPENAPI
from projections.queries import encode_json, result_json

log = logging.getLogger(__name__)

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_BODY = 1 << 20


class Served(Protocol):
    """What the routes need of the service that runs them."""

    @property
    def projection(self) -> LocalProjection:
        """The projection being served."""
        ...

    def health(self) -> dict[str, Any]:
        """What GET /health answers."""
        ...

    @property
    def token(self) -> str:
        """The token POST /rebuild needs in X-Easysched-Token ("" = none needed)."""
        ...


class BadRequest(Exception):
    """The request is malformed; the message says how (answered as 400, kind bad_request)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def json_response(value: Any, status: int = 200) -> Response:
    """A JSON answer (msgspec-encoded: timestamps in UTC, JSON columns embedded)."""
    return Response(encode_json(value), status, media_type="application/json", headers={"Cache-Control": "no-store"})


def error_response(status: int, message: str, kind: str) -> Response:
    """The API's error shape."""
    return json_response({"error": message, "kind": kind}, status)


def host_of(header: str) -> str:
    """The host name of a Host header or an Origin's netloc, lower case, without port or brackets."""
    return (urllib.parse.urlsplit("//" + header).hostname or "").lower()


class Guard:
    """ASGI middleware: refuse requests addressed to a non-loopback Host (DNS rebinding) and
    cross-site state changes (any non-GET whose Origin is not this server's own).

    A browser always sends Origin with a cross-site POST; a request without Origin comes from a
    program (curl, the CLI), not from another site's page.
    """

    def __init__(self, app: ASGIApp, hosts: Iterable[str] = LOOPBACK) -> None:
        self.app = app
        self.hosts = frozenset(h.lower().strip("[]") for h in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = host_of(headers.get("host", ""))
        refusal = None
        if host not in self.hosts:
            refusal = f"requests must be addressed to 127.0.0.1, not {host!r}"
        elif scope["method"] not in ("GET", "HEAD"):
            origin = headers.get("origin")
            if origin is not None and not _same_origin(origin, headers.get("host", "")):
                refusal = f"cross-origin request from {origin!r} refused: state changes come from this server's pages"
            elif headers.get("sec-fetch-site") == "cross-site":
                refusal = "cross-site request refused"
        if refusal is not None:
            await error_response(403, refusal, "forbidden")(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _same_origin(origin: str, host_header: str) -> bool:
    parts = urllib.parse.urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.lower()


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object body (BadRequest otherwise; at most MAX_BODY bytes)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise BadRequest("send the request body as application/json", 415)
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise BadRequest(f"request body over {MAX_BODY} bytes" if declared.isdigit() else
                         f"Content-Length {declared!r} is not a number", 413 if declared.isdigit() else 400)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            raise BadRequest(f"request body over {MAX_BODY} bytes", 413)
    try:
        body = json.loads(bytes(data) or b"{}")
    except ValueError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


Endpoint = Callable[[Request], Any]


def api_errors(endpoint: Endpoint) -> Endpoint:
    """Wrap an async endpoint so that every failure is a JSON error and the server keeps serving."""

    async def wrapped(request: Request) -> Response:
        try:
            response: Response = await endpoint(request)
            return response
        except ReadOnlyError as exc:
            return error_response(400, str(exc), "read_only")
        except QueryError as exc:
            return error_response(400, str(exc), "query")
        except BadRequest as exc:
            return error_response(exc.status, str(exc), "bad_request")
        except Exception as exc:  # the client learns what happened; the log gets the traceback
            log.exception("%s %s failed", request.method, request.url.path)
            return error_response(500, f"{type(exc).__name__}: {exc}", "internal")

    return wrapped


def int_param(text: str, name: str) -> int:
    """A non-negative integer query parameter (BadRequest otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, not {text!r}") from None
    if value < 0:
        raise BadRequest(f"{name} must be >= 0")
    return value


def api_routes(service: Served) -> list[BaseRoute]:
    """The query API's routes, answering from `service`'s projection."""

    def reader() -> Any:
        return service.projection.reader

    async def health(request: Request) -> Response:
        return json_response(await run_in_threadpool(service.health))

    async def openapi(request: Request) -> Response:
        return json_response(OPENAPI)

    async def instances(request: Request) -> Response:
        q = request.query_params
        limit = int_param(q.get("limit", "100"), "limit")
        return json_response(await run_in_threadpool(reader().instances, q.get("workflow"), q.get("state"), limit))

    async def instance(request: Request) -> Response:
        instance_id = request.path_params["id"]
        found = await run_in_threadpool(reader().instance, instance_id)
        if found is None:
            return error_response(404, f"no workflow instance {instance_id!r}", "not_found")
        return json_response(found)

    async def timers(request: Request) -> Response:
        return json_response(await run_in_threadpool(reader().timers, request.query_params.get("instance")))

    async def stats(request: Request) -> Response:
        return json_response(await run_in_threadpool(reader().stats))

    async def query(request: Request) -> Response:
        body = await json_body(request)
        sql = body.get("sql")
        if not isinstance(sql, str) or not sql.strip():
            raise BadRequest('the body needs "sql": a non-empty string')
        params = body.get("params")
        if params is not None and not isinstance(params, list):
            raise BadRequest('"params" must be a list')
        max_rows = body.get("max_rows")
        if max_rows is not None and (not isinstance(max_rows, int) or isinstance(max_rows, bool) or max_rows < 0):
            raise BadRequest('"max_rows" must be a non-negative integer')
        arrow = body.get("format") == "arrow" or ARROW_STREAM in request.headers.get("accept", "")
        result = await run_in_threadpool(reader().run, sql, params, None if arrow else max_rows)
        if not arrow:
            return json_response(result_json(result))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, result.table.schema) as writer:
            writer.write_table(result.table)
        return Response(sink.getvalue().to_pybytes(), 200, media_type=ARROW_STREAM)

    async def rebuild(request: Request) -> Response:
        # Heavy and destructive (the tables are dropped and refolded): where the server has a
        # token (a dashboard), only a caller that has read service.json or been given it may ask.
        given = request.headers.get("x-easysched-token", "")
        if service.token and not hmac.compare_digest(given.encode(), service.token.encode()):
            return error_response(401, "POST /rebuild needs the token of <data>/service.json (or"
                                  " $EASYSCHED_UI_TOKEN) in the X-Easysched-Token header", "unauthorized")
        await json_body(request)
        t0 = time.monotonic()
        records = await run_in_threadpool(service.projection.projector.rebuild, False)
        return json_response({"records": records, "seconds": round(time.monotonic() - t0, 3)})

    return [
        Route("/health", api_errors(health), methods=["GET"]),
        Route("/openapi.json", api_errors(openapi), methods=["GET"]),
        Route("/instances", api_errors(instances), methods=["GET"]),
        Route("/instances/{id:path}", api_errors(instance), methods=["GET"]),
        Route("/timers", api_errors(timers), methods=["GET"]),
        Route("/stats", api_errors(stats), methods=["GET"]),
        Route("/query", api_errors(query), methods=["POST"]),
        Route("/rebuild", api_errors(rebuild), methods=["POST"]),
    ]


async def not_found(request: Request, exc: Exception) -> Response:
    """The API's 404 and 405, in its error shape."""
    status = getattr(exc, "status_code", 404)
    kind = "not_found" if status == 404 else "bad_request"
    return error_response(status, f"no endpoint {request.method} {request.url.path}; see GET /openapi.json", kind)
