"""An ASGI app served by uvicorn in a background thread, on a socket bound before it starts.

Binding first means `port=0` is known at once and a busy port is an error the caller sees
synchronously (not a log line in a thread). uvicorn installs no signal handlers off the main
thread, so the process that embeds the server keeps its own.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import uvicorn

log = logging.getLogger(__name__)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when it sees
    # TCP there; without it every keep-alive request waits 40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(256)
    except BaseException:
        sock.close()
        raise
    return sock


class ServerThread:
    """`app` served on `host:port` (0: a free port) by uvicorn in a daemon thread."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        self.socket = _listen(host.strip("[]"), port)
        config = uvicorn.Config(
            app, log_config=None, log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=2, server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="http-api", daemon=True)
        self._failed: BaseException | None = None

    @property
    def port(self) -> int:
        """The port the socket is bound to."""
        return int(self.socket.getsockname()[1])

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self.socket])
        except BaseException as exc:  # reported by start(); the process goes on without the API
            self._failed = exc
            log.exception("the HTTP server stopped")

    def start(self, timeout: float = 30.0) -> None:
        """Start serving; returns once uvicorn accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._failed is not None or not self._thread.is_alive():
                raise RuntimeError(f"the HTTP server did not start: {self._failed}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP server did not start within {timeout:g} s")
            time.sleep(0.01)  # uvicorn exposes no event to wait on

    def stop(self) -> None:
        """Stop serving (open requests get a short grace) and close the socket. Idempotent."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(10)
        self.socket.close()
