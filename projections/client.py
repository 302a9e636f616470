"""Reaching a projection from another process: the HTTP client, and the choice service-or-file.

DuckDB lets one process open a file while it writes, so while the scheduler runs, its
projection service is the only way in; when no service runs, the file is opened directly
after catching up with the log. `open_reader` makes that choice.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

from projections.errors import ProjectionError, ProjectionLockedError, QueryError, ReadOnlyError, ServiceUnavailable
from projections.layout import service_file
from projections.queries import Reader

ARROW_STREAM = "application/vnd.apache.arrow.stream"
_ERRORS: dict[str, type[ProjectionError]] = {"read_only": ReadOnlyError, "query": QueryError}


class HttpReader:
    """Asks a projection service over its HTTP JSON API (see `service.py`)."""

    def __init__(self, url: str, timeout: float | None = 120.0, token: str = "") -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"not an http://host:port URL: {url!r}")
        self.url = url.rstrip("/")
        self._host, self._port = parts.hostname, parts.port
        self._timeout = timeout
        self.token = token  # sent with POST /rebuild (read from service.json by find_service)

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, accept: str = "application/json"
    ) -> tuple[int, bytes]:
        """Send one request; return (status, body). Raises ServiceUnavailable if nothing answers."""
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        headers = {"Accept": accept}
        if self.token:
            headers["X-Easysched-Token"] = self.token
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ServiceUnavailable(f"the projection service at {self.url} does not answer: {exc}") from exc
        finally:
            conn.close()

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        status, data = self.request(method, path, body)
        if status == 200:
            return json.loads(data)
        raise _error(status, data)

    def health(self) -> dict[str, Any]:
        """GET /health."""
        result: dict[str, Any] = self._json("GET", "/health")
        return result

    def query(self, sql: str, params: Sequence[Any] | None = None, max_rows: int | None = None) -> dict[str, Any]:
        """POST /query (see `Reader.query`)."""
        body: dict[str, Any] = {"sql": sql}
        if params:
            body["params"] = list(params)
        if max_rows is not None:
            body["max_rows"] = max_rows
        result: dict[str, Any] = self._json("POST", "/query", body)
        return result

    def query_arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """POST /query with an Arrow stream answer."""
        body: dict[str, Any] = {"sql": sql, "format": "arrow"}
        if params:
            body["params"] = list(params)
        status, data = self.request("POST", "/query", body, accept=ARROW_STREAM)
        if status != 200:
            raise _error(status, data)
        with pa.ipc.open_stream(data) as stream:
            return stream.read_all()

    def instances(self, workflow: str | None = None, state: str | None = None, limit: int = 100) -> dict[str, Any]:
        """GET /instances."""
        query = {k: v for k, v in {"workflow": workflow, "state": state, "limit": limit}.items() if v is not None}
        result: dict[str, Any] = self._json("GET", "/instances?" + urllib.parse.urlencode(query))
        return result

    def instance(self, instance_id: str) -> dict[str, Any] | None:
        """GET /instances/{id}; None if there is no such instance."""
        status, data = self.request("GET", "/instances/" + urllib.parse.quote(instance_id, safe=""))
        if status == 404:
            return None
        if status != 200:
            raise _error(status, data)
        result: dict[str, Any] = json.loads(data)
        return result

    def timers(self, instance: str | None = None) -> dict[str, Any]:
        """GET /timers."""
        suffix = "?" + urllib.parse.urlencode({"instance": instance}) if instance else ""
        result: dict[str, Any] = self._json("GET", "/timers" + suffix)
        return result

    def stats(self) -> dict[str, Any]:
        """GET /stats."""
        result: dict[str, Any] = self._json("GET", "/stats")
        return result

    def rebuild(self) -> dict[str, Any]:
        """POST /rebuild: the service drops and refolds its projection (blocks until done)."""
        result: dict[str, Any] = self._json("POST", "/rebuild", {})
        return result


def _error(status: int, data: bytes) -> ProjectionError:
    try:
        body = json.loads(data)
        message, kind = str(body["error"]), str(body.get("kind", ""))
    except (ValueError, KeyError, TypeError):
        message, kind = data.decode(errors="replace")[:500] or f"HTTP {status}", ""
    return _ERRORS.get(kind, ProjectionError)(message)


def read_service_file(data_dir: Path) -> dict[str, Any] | None:
    """The contents of `<data>/service.json` if it names a process that is alive, else None."""
    try:
        info = json.loads(service_file(data_dir).read_text())
        pid, url = int(info["pid"]), str(info["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # left behind by a process that died without cleaning up
    except PermissionError:
        pass  # alive, another user's
    return {**info, "pid": pid, "url": url}


def find_service(data_dir: Path, timeout: float = 2.0) -> HttpReader | None:
    """An HttpReader for the live service of `data_dir`, or None when none answers."""
    info = read_service_file(data_dir)
    if info is None:
        return None
    probe = HttpReader(info["url"], timeout=timeout)
    try:
        probe.health()
    except ProjectionError:
        return None
    return HttpReader(info["url"], token=str(info.get("token", "")))


@contextmanager
def open_reader(data_dir: Path, progress: bool = False, wait: float = 5.0) -> Iterator[Reader]:
    """A Reader for `data_dir`: its running service if one answers, else the file opened here.

    Opening the file catches up with the log first (`progress` shows a bar on stderr when
    that takes a while). If the file is locked by a process without a service (one starting
    up, or another CLI call), retries for `wait` seconds, looking for a service again.
    """
    from projections.local import LocalProjection  # imports DuckDB; only needed without a service

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ProjectionError(f"no data directory at {data_dir} (pass --data-dir, or start the scheduler once)")
    deadline = time.monotonic() + wait
    while True:
        remote = find_service(data_dir)
        if remote is not None:
            yield remote
            return
        try:
            local = LocalProjection(data_dir)
        except ProjectionLockedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)  # the holder may be a service about to write service.json
            continue
        with local:
            local.projector.catch_up(progress=progress)
            yield local.reader
        return
