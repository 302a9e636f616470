"""Batched command appends: many threads submit, one thread writes (one write, one fsync a batch)."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from easysched_es.core.codec import encode
from easysched_es.core.commands import Command
from easysched_es.log.base import Stream

log = logging.getLogger(__name__)


class CommandAppender:
    """Appends submitted commands to a stream in batches, in submission order."""

    def __init__(self, stream: Stream, on_appended: Callable[[], None] | None = None, partition: int = 0) -> None:
        self.stream = stream
        self.on_appended = on_appended
        self.partition = partition
        self._queue: queue.SimpleQueue[Command | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="command-appender", daemon=True)

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def submit(self, command: Command) -> None:
        """Queue a command; it is durable once a later batch write returns."""
        self._queue.put(command)

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        done = False
        while not done:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if None in batch:
                done = True
            payloads = [encode(cmd) for cmd in batch if cmd is not None]
            if not payloads:
                continue
            try:
                self.stream.append(payloads, self.partition)
            except Exception:
                # A lost report would leave a task running in the state forever: say so loudly.
                log.exception("could not append %d commands to the log", len(payloads))
                continue
            if self.on_appended is not None:
                self.on_appended()
