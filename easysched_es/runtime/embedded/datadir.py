"""The layout of an embedded data directory, in one place.

```
<data>/commands/          the commands stream (EmbeddedStream)
<data>/events/            the events stream: one EventBatch per command
<data>/snapshots/         master state snapshots, <offset>.snap + <offset>.meta (the sparse index)
<data>/runs/              per-attempt claim files (idempotent dispatch, restart reconcile)
<data>/logs/              per-attempt task logs
<data>/master.lock        held by the one `easysched run` on this directory
<data>/halted.txt         while the master is stopped at a command that raised (`easysched skip`)
<data>/projections.duckdb the DuckDB read models
```
"""

from __future__ import annotations

import os
from pathlib import Path

from easysched_es.core.state import State
from easysched_es.log.embedded import EmbeddedStream
from easysched_es.runtime.embedded.location import DEFAULT_DATA_DIR, resolve
from easysched_es.runtime.snapshots import SnapshotStore

__all__ = ["DEFAULT_DATA_DIR", "DataDir", "resolve"]


def segment_bytes() -> int:
    """The size after which the log starts a new segment: `EASYSCHED_SEGMENT_BYTES` (default 64 MiB).

    Old segments are the unit `easysched gc` deletes, so smaller segments free disk sooner.
    """
    raw = os.environ.get("EASYSCHED_SEGMENT_BYTES", "").strip()
    if not raw:
        return 64 << 20
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"EASYSCHED_SEGMENT_BYTES={raw!r} must be a positive number of bytes")
    return int(raw)


class DataDir:
    """Paths and streams of one embedded data directory (a `runtime.fold.LogSource`)."""

    partitions = 1

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = resolve(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.snapshots = self.root / "snapshots"
        self.runs = self.root / "runs"
        self.logs = self.root / "logs"
        self.master_lock = self.root / "master.lock"
        # Present while the master is stopped at a command that raised (it holds the error).
        self.halted = self.root / "halted.txt"
        self.duckdb = self.root / "projections.duckdb"

    def commands(self) -> EmbeddedStream:
        """Open the commands stream."""
        return EmbeddedStream(self.root / "commands", segment_bytes=segment_bytes())

    def events(self) -> EmbeddedStream:
        """Open the events stream."""
        return EmbeddedStream(self.root / "events", segment_bytes=segment_bytes())

    def snapshot_store(self) -> SnapshotStore:
        """The snapshot index of the (one) partition."""
        return SnapshotStore(self.snapshots)

    def load_snapshot(self, partition: int = 0, until: int | None = None) -> State | None:
        """The newest good snapshot covering at most command offset `until` (None: any)."""
        return self.snapshot_store().load(until) if partition == 0 else None
