"""`easysched run`: master, ticker, worker and projector in one process on an embedded data dir."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from typing import Any

from easysched_es.core.events import Event
from easysched_es.log.embedded import DirectoryLock
from easysched_es.runtime.clock import wall_ms
from easysched_es.runtime.embedded.appender import CommandAppender
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.embedded.master import EmbeddedMaster
from easysched_es.runtime.worker import Worker

log = logging.getLogger(__name__)


def run_embedded(
    data: DataDir, *, kill_grace: float = 5.0, projections: bool = True, stop: threading.Event | None = None
) -> int:
    """Run until SIGTERM/SIGINT (or `stop`); returns the exit code."""
    stop = stop or threading.Event()
    with DirectoryLock(data.master_lock, "the master lock of this data directory"):
        reports = data.commands()
        master: EmbeddedMaster
        appender = CommandAppender(reports, on_appended=lambda: master.wake.set())
        worker = Worker(data.runs, data.logs, appender.submit, kill_grace=kill_grace)

        def effects(effect: Event) -> None:
            worker.submit(effect)

        master = EmbeddedMaster(data, effects)
        owed = master.recover()
        appender.start()
        worker.start()
        service: Any = None
        if projections:
            from projections.service import ProjectionService

            service = ProjectionService(data.root, port=0)
            service.start()
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
        ready = data.root / "run.json"
        ready.write_text(json.dumps({"pid": os.getpid(), "started": wall_ms(), "recovered_effects": owed}))
        log.info("easysched run on %s (pid %d): %d effects re-applied after recovery", data.root, os.getpid(), owed)
        try:
            master.run(stop)
        finally:
            ready.unlink(missing_ok=True)
            worker.stop()
            appender.stop()
            master.poll()
            if service is not None:
                service.stop()
            master.close()
            reports.close()
    return 0
