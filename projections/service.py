"""The projection service: the projector thread plus a local HTTP server (Starlette on uvicorn).

DuckDB lets one process open the file while it is written, so the process that projects
(`easysched run`) also answers the queries, on cursors of its own connection:

    svc = ProjectionService(data_dir, port=0)
    svc.start()          # projector thread + HTTP server thread; writes <data>/service.json
    ...
    svc.stop()           # stops both, closes the file, removes service.json

The server carries the read-only query API (`http_api.py`) and whatever other routes the
caller mounts beside it (the web dashboard, `/metrics`): one server per process. It listens on
127.0.0.1 by default, accepts requests addressed to a loopback host only (no DNS rebinding),
refuses cross-origin state changes, and takes POST bodies as JSON only (no cross-site form
posts from a browser).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from easysched_es.log.base import Stream
from projections.errors import ProjectionError
from projections.http_api import LOOPBACK, Guard, api_routes, not_found
from projections.layout import service_file
from projections.local import LocalProjection
from projections.queries import DEFAULT_TIMEOUT
from projections.server import ServerThread

log = logging.getLogger(__name__)

# Called once the projection is open: more routes for the same server (pages, metrics).
RouteFactory = Callable[["ProjectionService"], Sequence[BaseRoute]]


class ProjectionService:
    """Runs the projector of `data_dir` in a thread and serves read-only queries over HTTP.

    `port=0` picks a free port (see `port` / `url` after `start`); with `port_fallback`, a busy
    port is replaced by a free one (with a warning) instead of failing. `events` and `commands`
    default to the embedded log of `data_dir`; pass other `Stream`s (Kafka) to fold those.
    `routes` adds routes to the server; `info` adds keys to service.json (written 0600: it may
    hold a token).
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
        routes: RouteFactory | None = None,
        info: dict[str, Any] | None = None,
        port_fallback: bool = False,
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
        self._routes, self._info, self._port_fallback = routes, dict(info or {}), port_fallback
        self._server: ServerThread | None = None
        self._threads: list[threading.Thread] = []
        self.started_at: float | None = None

    @property
    def port(self) -> int:
        """The port the API listens on (after `start`)."""
        if self._server is None:
            raise ProjectionError("the projection service is not started")
        return self._server.port

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port> (after `start`)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

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
            server = self._bind(projection)
        except BaseException:
            projection.close()
            raise
        self._projection, self._server = projection, server
        self._stop.clear()
        self.started_at = time.time()
        self._threads = [
            threading.Thread(
                target=projection.projector.run, args=(self._stop, self._poll_interval),
                name="projector", daemon=True,
            ),
        ]
        for thread in self._threads:
            thread.start()
        try:
            server.start()
        except RuntimeError as exc:
            self.stop()
            raise ProjectionError(str(exc)) from exc
        self._write_service_file()
        log.info("projection service of %s listening on %s", self.data_dir, self.url)

    def stop(self) -> None:
        """Stop serving and projecting, close the file and remove service.json. Idempotent."""
        if self._projection is None:
            return
        self._remove_service_file()
        self._stop.set()
        if self._server is not None:
            self._server.stop()
        for thread in self._threads:
            thread.join()
        self._projection.close()
        self._projection, self._server, self._threads = None, None, []

    def _bind(self, projection: LocalProjection) -> ServerThread:
        self._projection = projection  # the route factories may look at it
        try:
            routes = [*api_routes(self), *(self._routes(self) if self._routes else ())]
        finally:
            self._projection = None
        hosts = LOOPBACK | {self._host} if self._host not in ("0.0.0.0", "::", "") else LOOPBACK
        app = Starlette(routes=routes, middleware=[Middleware(Guard, hosts=hosts)],
                        exception_handlers={404: not_found, 405: not_found})
        try:
            return ServerThread(app, self._host, self._port)
        except OSError as exc:
            if not self._port_fallback or self._port == 0:
                raise ProjectionError(f"cannot listen on {self._host}:{self._port}: {exc}") from exc
            log.warning("port %d is busy (%s): listening on a free port instead", self._port, exc)
            return ServerThread(app, self._host, 0)

    def _write_service_file(self) -> None:
        info = {**self._info, "pid": os.getpid(), "url": self.url, "port": self.port, "started_at": self.started_at}
        path = service_file(self.data_dir)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(info) + "\n")
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

    @property
    def token(self) -> str:
        """The token its POST /rebuild needs ("" when it was started without one)."""
        return str(self._info.get("token", ""))

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
