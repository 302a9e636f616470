"""easysched-es: a workflow scheduler whose state, timers included, is a fold over a command log."""

from __future__ import annotations

from typing import Any

from easysched_es.flows import load_flow
from easysched_es.runtime.embedded.client import Client, CommandRejectedError

__all__ = ["Client", "CommandRejectedError", "KafkaClient", "connect", "load_flow"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`KafkaClient` is imported on first use: the embedded mode does not load kafka-python."""
    if name == "KafkaClient":
        from easysched_es.runtime.kafka.client import KafkaClient

        return KafkaClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def connect(data_dir: str = ".easysched") -> Any:
    """A read-only DuckDB connection to the projections of a data directory (caught up first)."""
    from projections.api import connect as _connect

    return _connect(data_dir)
