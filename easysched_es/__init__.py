"""easysched-es: a workflow scheduler whose state, timers included, is a fold over a command log.

The public names are imported on first use, so that `easysched --help` (which imports this
package) does not load the log, the core or YAML.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from easysched_es.flows import load_flow
    from easysched_es.runtime.embedded.client import Client, CommandRejectedError
    from easysched_es.runtime.kafka.client import KafkaClient

__all__ = ["Client", "CommandRejectedError", "KafkaClient", "connect", "load_flow"]
__version__ = "0.1.0"

_LAZY = {
    "Client": "easysched_es.runtime.embedded.client",
    "CommandRejectedError": "easysched_es.runtime.embedded.client",
    "KafkaClient": "easysched_es.runtime.kafka.client",
    "load_flow": "easysched_es.flows",
}


def __getattr__(name: str) -> Any:
    """Import a public name on first use (the embedded mode never loads kafka-python)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def connect(data_dir: str = ".easysched") -> Any:
    """A read-only DuckDB connection to the projections of a data directory (caught up first)."""
    from projections.api import connect as _connect

    return _connect(data_dir)
