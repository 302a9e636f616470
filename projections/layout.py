"""Where things live in a data directory (embedded mode), and opening its streams.

This is the one place that knows the embedded layout; Kafka mode hands the service its own
`Stream`s instead.
"""

from __future__ import annotations

from pathlib import Path

from easysched_es.log.base import Stream
from easysched_es.log.embedded import EmbeddedStream

DB_FILE = "projections.duckdb"
SERVICE_FILE = "service.json"
EVENTS_DIR = "events"
COMMANDS_DIR = "commands"


def db_path(data_dir: Path) -> Path:
    """The DuckDB file of the projection."""
    return Path(data_dir) / DB_FILE


def service_file(data_dir: Path) -> Path:
    """Where a running projection service writes its address."""
    return Path(data_dir) / SERVICE_FILE


def open_streams(data_dir: Path) -> tuple[Stream, Stream | None]:
    """The events and commands streams of an embedded data directory (commands None if absent).

    Readers of an embedded stream take no lock, so this is safe beside a running scheduler.
    """
    data_dir = Path(data_dir)
    events = EmbeddedStream(data_dir / EVENTS_DIR)
    commands_dir = data_dir / COMMANDS_DIR
    commands = EmbeddedStream(commands_dir) if commands_dir.is_dir() else None
    return events, commands
