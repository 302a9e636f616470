"""A busy data directory for the debugging tests: the projections' random workload, both logs real."""

from __future__ import annotations

from pathlib import Path

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
