"""Alerts end to end: a real `easysched run`, a real webhook receiver on 127.0.0.1, a kill -9 mid-delivery."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import pytest

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.definitions import WorkflowDefinition
from easysched_es.runtime.fold import records
from tests.harness import Run, kill_leftovers, wait_until

pytestmark = pytest.mark.slow


class Receiver:
    """A webhook receiver that records each POST; `hold` makes the first one wait for `release`."""

    def __init__(self, hold: bool = False) -> None:
        self.posts: list[dict[str, Any]] = []
        self.first = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.posts.append({"key": self.headers["Idempotency-Key"], **body})
                receiver.first.set()
                receiver.release.wait(60)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def failing_flow(url: str, **alert: Any) -> WorkflowDefinition:
    return msgspec.convert({"name": "nightly", "tasks": [{"name": "load", "type": "SHELL", "command": "exit 3"}],
                            "alerts": [{"webhook": url, **alert}]}, WorkflowDefinition)


def logged(run: Run, kind: type) -> list[Any]:
    from easysched_es.core.codec import decode_batch, decode_command

    found: list[Any] = []
    with run.data.commands() as commands, run.data.events() as events:
        for r in records(commands):
            if r.corrupt is None and isinstance(cmd := decode_command(r.payload), kind):
                found.append(cmd)
        for r in records(events):
            if r.corrupt is None:
                found.extend(ev for ev in decode_batch(r.payload).events if isinstance(ev, kind))
    return found


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    kill_leftovers(tmp_path)


def test_one_notification_per_failure_across_a_kill_9_during_delivery(root: Path) -> None:
    receiver = Receiver(hold=True)
    run = Run(root)
    try:
        run.client.define(failing_flow(receiver.url))
        instance = run.client.start("nightly")
        assert receiver.first.wait(60), "the webhook was never called"
        run.kill9()  # while the receiver holds the first POST: no report of it reaches the log
        receiver.release.set()
        run = Run(root)
        wait_until("the alert delivered", lambda: logged(run, e.AlertDelivered))
    finally:
        run.stop()
        receiver.close()
    keys = {p["key"] for p in receiver.posts}
    assert keys == {f"{instance}/FAILURE/0"}  # one notification: every POST carries the same key
    assert len(receiver.posts) == 2 and {p["attempt"] for p in receiver.posts} == {1}
    assert receiver.posts[0]["on"] == "FAILURE" and receiver.posts[0]["workflow"] == "nightly"
    assert [s.attempt for s in logged(run, c.AlertSent)] == [1]


def test_a_receiver_that_is_down_delays_nothing_else(root: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    run = Run(root)
    try:
        run.client.define(failing_flow(dead, max_attempts=3, backoff=0.2))
        run.client.define(msgspec.convert({"name": "other", "tasks": [
            {"name": "a", "type": "SHELL", "command": "true"}, {"name": "b", "type": "SHELL", "command": "true",
                                                               "upstream": ["a"]}]}, WorkflowDefinition))
        failed = run.client.start("nightly")
        wait_until("nightly FAILURE", lambda: run.state().instances[failed].state == "FAILURE")
        other = run.client.start("other")
        wait_until("other SUCCESS", lambda: run.state().instances[other].state == "SUCCESS", timeout=60)
        wait_until("the alert given up", lambda: logged(run, e.AlertGaveUp))
    finally:
        run.stop()
    attempts = logged(run, c.AlertFailed)
    assert [a.attempt for a in attempts] == [1, 2, 3] and all("127.0.0.1" in a.error for a in attempts)
    retries = logged(run, e.AlertAttemptFailed)
    assert [r.attempt for r in retries] == [1, 2]  # the third failure gives up instead of retrying
    assert run.state().alerts == {}
