"""The layout of an embedded data directory, in one place.

```
<data>/commands/          the commands stream (EmbeddedStream)
<data>/events/            the events stream: one EventBatch per command
<data>/snapshots/         master state snapshots, <offset>.snap
<data>/runs/              per-attempt claim files (idempotent dispatch, restart reconcile)
<data>/logs/              per-attempt task logs
<data>/master.lock        held by the one `easysched run` on this directory
<data>/projections.duckdb the DuckDB read models
```
"""

from __future__ import annotations

import os
from pathlib import Path

from easysched_es.log.embedded import EmbeddedStream

DEFAULT_DATA_DIR = ".easysched"


def resolve(data_dir: str | Path | None) -> Path:
    """The data directory: the argument, else $EASYSCHED_DATA_DIR, else ./.easysched."""
    chosen = data_dir or os.environ.get("EASYSCHED_DATA_DIR") or DEFAULT_DATA_DIR
    return Path(chosen).absolute()


class DataDir:
    """Paths and streams of one embedded data directory."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = resolve(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.snapshots = self.root / "snapshots"
        self.runs = self.root / "runs"
        self.logs = self.root / "logs"
        self.master_lock = self.root / "master.lock"
        self.duckdb = self.root / "projections.duckdb"

    def commands(self) -> EmbeddedStream:
        """Open the commands stream."""
        return EmbeddedStream(self.root / "commands")

    def events(self) -> EmbeddedStream:
        """Open the events stream."""
        return EmbeddedStream(self.root / "events")
