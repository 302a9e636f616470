"""kafka-python's own logging, kept readable: WARNING and up, each kind of line at most once per interval.

While a broker is down, kafka-python logs every reconnect attempt (about ten lines a second per
process, ERROR and WARNING). A long-running process (master, worker, projector) keeps the first
line of each kind and then one per `interval` seconds, saying how many were held back; a one-shot
CLI command hides them altogether (its own error line names the broker), unless `--verbose`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["DriverLogLimit", "quiet_driver_logs"]

DRIVER_LOGGER = "kafka"


class DriverLogLimit(logging.Filter):
    """Lets through one record per (logger, message template) per `interval` seconds (kafka.* only)."""

    def __init__(self, interval: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._last: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not (record.name == DRIVER_LOGGER or record.name.startswith(DRIVER_LOGGER + ".")):
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        with self._lock:
            seen = self._last.get(key)
            if seen is not None and now - seen[0] < self.interval:
                self._last[key] = (seen[0], seen[1] + 1)
                return False
            held = seen[1] if seen is not None else 0
            self._last[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} [{held} similar lines in the last {self.interval:g}s not shown]"
        return True


def quiet_driver_logs(*, long_running: bool, verbose: bool = False, interval: float = 30.0) -> None:
    """Set kafka-python's logging for this process (see the module docstring); idempotent."""
    driver = logging.getLogger(DRIVER_LOGGER)
    if verbose:
        driver.setLevel(logging.DEBUG)
        return
    driver.setLevel(logging.WARNING if long_running else logging.CRITICAL + 1)
    if not long_running:
        return
    # Filters on a logger do not see records of its children: filter at the root's handlers.
    root = logging.getLogger()
    for handler in root.handlers or [logging.lastResort]:
        if handler is not None and not any(isinstance(f, DriverLogLimit) for f in handler.filters):
            handler.addFilter(DriverLogLimit(interval))
