"""A busy data directory for the debugging tests: the projections' random workload, both logs real."""

from __future__ import annotations

from pathlib import Path

import msgspec

from easysched_es.core import commands as c
from easysched_es.core.codec import encode
from easysched_es.log.embedded import EmbeddedStream
from easysched_es.runtime.embedded.datadir import DataDir
from tests.projections.workload import Simulation


def busy_data_dir(root: Path, commands: int = 600, seed: int = 1, segment_bytes: int = 64 << 20) -> DataDir:
    """A data directory whose commands and events logs hold a random workload (as the master writes them)."""
    data = DataDir(root)
    with (
        EmbeddedStream(data.root / "commands", fsync=False, segment_bytes=segment_bytes) as cmds,
        EmbeddedStream(data.root / "events", fsync=False, segment_bytes=segment_bytes) as evs,
    ):
        sim = Simulation(seed=seed, commands=cmds, events=evs, record=False)
        sim.run(commands)
    return data


class Script:
    """Appends commands to a data directory's log one by one and says what offset each got."""

    def __init__(self, data: DataDir, t0: int = 1_764_547_200_000) -> None:  # 2025-12-01T00:00:00Z
        self.data = data
        self.now = t0

    def __call__(self, command: c.Command, *, after_ms: int = 1000) -> int:
        """Append `command` stamped `after_ms` after the previous one; return its offset."""
        self.now += after_ms
        command = msgspec.structs.replace(command, at=self.now)
        if isinstance(command, c.CheckDue):
            command = msgspec.structs.replace(command, now=self.now)
        with self.data.commands() as stream:
            (offset,) = stream.append([encode(command)])
        return offset

    def start(self, workflow: str, **kw: object) -> str:
        """Start an instance; its id."""
        return f"0-{self(c.StartWorkflow(workflow=workflow, **kw))}"  # type: ignore[arg-type]
