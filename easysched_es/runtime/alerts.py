"""The alert sender: carries out `SendAlert` effects beside the master, never in its way.

A webhook attempt is a JSON POST with an `Idempotency-Key` header (the alert's key: the same
for every attempt and after a restart, so the receiver can drop repeats); a 2xx answer is a
delivery. A script attempt runs `sh -c SCRIPT` with the alert in EASYSCHED_ALERT_* variables
and as JSON on stdin; exit 0 is a delivery. Either way the outcome goes back into the log as
`AlertSent` or `AlertFailed`, and the fold decides what happens next (core/alerts.py). Sends
run in a few threads of their own: a receiver that hangs delays only its own alert.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable

from easysched_es.core import commands as c
from easysched_es.core.events import SendAlert
from easysched_es.runtime.clock import wall_ms

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 10.0
SCRIPT_TIMEOUT_S = 60.0
THREADS = 4


def alert_body(alert: SendAlert) -> dict[str, object]:
    """The JSON a webhook receives (and a script reads on stdin)."""
    return {"key": alert.key, "instance": alert.instance, "workflow": alert.workflow, "on": alert.on,
            "detail": alert.detail, "attempt": alert.attempt, "raised_at": alert.raised_at}


class AlertSender:
    """Sends alerts in background threads and reports each attempt through `submit`."""

    def __init__(self, submit: Callable[[c.Command], None], threads: int = THREADS) -> None:
        self._submit = submit
        self._queue: queue.Queue[SendAlert | None] = queue.Queue()
        self._in_flight: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, name=f"alerts-{i}", daemon=True) for i in range(threads)]

    def start(self) -> None:
        """Start the sending threads."""
        for thread in self._threads:
            thread.start()

    def send(self, alert: SendAlert) -> None:
        """Queue one attempt (the same key and attempt twice at once is sent once)."""
        with self._lock:
            if (alert.key, alert.attempt) in self._in_flight:
                return
            self._in_flight.add((alert.key, alert.attempt))
        self._queue.put(alert)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the attempts in progress (queued ones are owed again after a restart)."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            try:
                error = self._deliver(alert)
            except Exception as exc:  # a bug here must not stop the other alerts
                log.exception("alert %s failed", alert.key)
                error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._in_flight.discard((alert.key, alert.attempt))
            if error is None:
                self._submit(c.AlertSent(at=wall_ms(), key=alert.key, instance=alert.instance, attempt=alert.attempt))
            else:
                log.warning("alert %s attempt %d failed: %s", alert.key, alert.attempt, error)
                self._submit(c.AlertFailed(at=wall_ms(), key=alert.key, instance=alert.instance,
                                           attempt=alert.attempt, error=error[:500]))

    def _deliver(self, alert: SendAlert) -> str | None:
        body = json.dumps(alert_body(alert)).encode()
        if alert.webhook:
            request = urllib.request.Request(alert.webhook, data=body, method="POST", headers={
                "Content-Type": "application/json", "Idempotency-Key": alert.key, "User-Agent": "easysched-alerts"})
            try:
                with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
                    return None if 200 <= response.status < 300 else f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                return f"HTTP {exc.code} from {alert.webhook}"
            except (OSError, ValueError) as exc:
                return f"{alert.webhook}: {exc}"
        env = {**os.environ, **{f"EASYSCHED_ALERT_{k.upper()}": str(v) for k, v in alert_body(alert).items()}}
        try:
            done = subprocess.run(["/bin/sh", "-c", alert.script], input=body, env=env, capture_output=True,
                                  timeout=SCRIPT_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            return f"the script ran longer than {SCRIPT_TIMEOUT_S:g} s"
        except OSError as exc:
            return f"the script could not start: {exc}"
        if done.returncode != 0:
            return f"the script exited {done.returncode}: {done.stderr.decode(errors='replace')[-300:]}"
        return None
