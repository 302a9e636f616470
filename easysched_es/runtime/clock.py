"""The wall clock, read only at the edges (clients, workers, the ticker); the core never reads it."""

from __future__ import annotations

import time


def wall_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000
