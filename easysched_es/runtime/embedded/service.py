"""`easysched run`: master, ticker, worker and projector in one process on an embedded data dir."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from typing import Any

from easysched_es.core.capacity import UNLIMITED
from easysched_es.core.codec import encode
from easysched_es.core.commands import Heartbeat
from easysched_es.core.events import Event, SendAlert
from easysched_es.core.slots import ALL_GROUPS
from easysched_es.log.embedded import DirectoryLock
from easysched_es.runtime.alerts import AlertSender
from easysched_es.runtime.clock import wall_ms
from easysched_es.runtime.embedded.appender import CommandAppender
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.embedded.master import EmbeddedMaster
from easysched_es.runtime.worker import Worker

log = logging.getLogger(__name__)

EMBEDDED_WORKER = "embedded"
"""The name the embedded worker announces its slots under (stable across restarts)."""


RETENTION_EVERY = 3600.0
"""Seconds between the retention passes `easysched run` makes on its own (the first one at start)."""


def _retention_loop(data: DataDir, stop: threading.Event) -> None:
    from easysched_es.runtime.embedded.gc import gc

    while not stop.is_set():
        try:
            report = gc(data)
            if report["instances"] or report["directories"]:
                log.info("retention: %d instances retired, %d directories removed",
                         len(report["instances"]), len(report["directories"]))
            if report["log"]["segments"]:
                log.info("retention: %d old log segments (%d bytes) deleted; log kept from %s",
                         len(report["log"]["segments"]), report["log"]["bytes"], report["log"]["kept_from"])
        except Exception:  # a failed pass must not stop the service; the next one retries
            log.exception("retention pass failed")
        stop.wait(RETENTION_EVERY)


def default_slots() -> int:
    """Task slots of `easysched run` when `--slots` is not given: 4 per CPU, at least 8."""
    return max(8, 4 * (os.cpu_count() or 1))


def run_embedded(
    data: DataDir, *, kill_grace: float = 5.0, projections: bool = True, stop: threading.Event | None = None,
    slots: int = 0, ui: Any = None,
) -> int:
    """Run until SIGTERM/SIGINT (or `stop`); returns the exit code.

    With `projections`, one HTTP server carries the query API, /metrics and (per `ui`, a
    `web.serve.UiSettings`; default: on, 127.0.0.1:8642) the dashboard. It starts first, so a
    busy port fails the run before anything else does.

    `slots` > 0 bounds the task processes of this machine (announced to the fold in a heartbeat
    of the worker group `*`, before anything new is decided); 0 sets no limit.
    """
    stop = stop or threading.Event()
    with DirectoryLock(data.master_lock, "the master lock of this data directory"):
        reports = data.commands()
        master: EmbeddedMaster
        appender = CommandAppender(reports, on_appended=lambda: master.wake.set())
        worker = Worker(data.runs, data.logs, appender.submit, kill_grace=kill_grace)

        alerts = AlertSender(appender.submit)

        def effects(effect: Event) -> None:
            if isinstance(effect, SendAlert):
                alerts.send(effect)  # beside the master, never in its way
            else:
                worker.submit(effect)

        service: Any = None
        if projections:
            from easysched_es.runtime.embedded.client import Client
            from easysched_es.web.serve import UiSettings, announce, dashboard_service

            settings = ui or UiSettings()
            service = dashboard_service(data.root, data, lambda: Client(data.root), settings, logs_dir=data.logs,
                                        log_dirs={"commands": data.root / "commands", "events": data.root / "events"})
            service.start()
            print(announce(service, settings), flush=True)
        master = EmbeddedMaster(data, effects)
        owed = master.recover()
        # Through the log, so the fold knows the capacity at a definite position (replays agree).
        beat = Heartbeat(at=wall_ms(), worker=EMBEDDED_WORKER, group=ALL_GROUPS, slots=slots or UNLIMITED)
        master.commands.append([encode(beat)])
        appender.start()
        worker.start()
        alerts.start()
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
        ready = data.root / "run.json"
        ready.write_text(json.dumps({"pid": os.getpid(), "started": wall_ms(), "recovered_effects": owed}))
        log.info("easysched run on %s (pid %d): %d effects re-applied after recovery", data.root, os.getpid(), owed)
        retention = threading.Thread(target=_retention_loop, args=(data, stop), name="retention", daemon=True)
        retention.start()
        try:
            master.run(stop)
        finally:
            ready.unlink(missing_ok=True)
            worker.stop()
            alerts.stop()
            appender.stop()
            master.poll()
            if service is not None:
                service.stop()
            master.close()
            reports.close()
    return 0
