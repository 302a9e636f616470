"""Snapshots are an optimisation: snapshot + tail must equal the fold of the whole log."""

from __future__ import annotations

import logging
from pathlib import Path

import msgspec
import pytest

from easysched_es.core import commands as c
from easysched_es.core.codec import encode
from easysched_es.core.definitions import WorkflowDefinition
from easysched_es.core.state import State
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.fold import fold_stream, load_state
from easysched_es.runtime.snapshots import SnapshotStore

FLOW = msgspec.convert(
    {
        "name": "f",
        "tasks": [
            {"name": "wait", "type": "DEPENDENT", "dependence": {"check_interval": 5, "items": [{"workflow": "f"}]}},
            {"name": "run", "type": "SHELL", "command": "true", "retry_times": 1, "retry_interval": 2},
        ],
    },
    WorkflowDefinition,
)


def _log(data: DataDir) -> None:
    commands: list[c.Command] = [c.DefineWorkflow(at=1_000, definition=FLOW)]
    commands += [c.StartWorkflow(at=2_000 + i, workflow="f") for i in range(5)]
    commands += [c.CheckDue(at=9_000, now=9_000), c.Heartbeat(at=9_001, worker="w")]
    with data.commands() as stream:
        stream.append([encode(cmd) for cmd in commands])


def test_snapshot_plus_tail_equals_the_whole_fold(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    _log(data)
    whole = load_state(data)
    partial = State()
    with data.commands() as stream:
        fold_stream(stream, partial, max_records=3)
    SnapshotStore(data.snapshots).save(partial)
    restored = load_state(data)
    assert encode(restored.snapshot()) == encode(whole.snapshot())
    assert restored.queue.entries() == whole.queue.entries()


def test_replay_until_uses_only_snapshots_at_or_before_the_offset(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    _log(data)
    whole = load_state(data)
    SnapshotStore(data.snapshots).save(whole)
    with data.commands() as stream:
        third = stream.read(0)[2].offset
    early = load_state(data, until=third)
    assert early.last_offset == third
    assert len(early.instances) == 2


def test_a_corrupt_snapshot_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = DataDir(tmp_path)
    _log(data)
    whole = load_state(data)
    path = SnapshotStore(data.snapshots).save(whole)
    path.write_bytes(path.read_bytes()[:-5] + b"xxxxx")
    with caplog.at_level(logging.WARNING):
        again = load_state(data)
    assert "unusable" in caplog.text
    assert encode(again.snapshot()) == encode(whole.snapshot())
