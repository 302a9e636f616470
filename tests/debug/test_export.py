"""Export/import: an exported instance's trace in a fresh data directory equals the original's, entry by entry."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from easysched_es.debug.export import (
    FORMAT,
    ExportError,
    dump,
    export_instance,
    export_range,
    import_file,
    load,
)
from easysched_es.debug.trace import trace
from easysched_es.debug.verify import verify
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.fold import load_state
from tests.debug.helpers import busy_data_dir


def _renamed(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        # Ids also appear inside reasons ("task 'x' of instance 0-12 is ..."): whole ids only.
        return re.sub(rf"(?<![\d-]){re.escape(old)}(?!\d)", new, value)
    if isinstance(value, dict):
        return {k: _renamed(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, old, new) for v in value]
    return value


def _comparable(entries: list[dict[str, Any]], old: str, new: str) -> list[Any]:
    """Offsets are renumbered and the id renamed: compare everything else."""
    return [
        {k: _renamed(v, old, new) for k, v in entry.items() if k != "offset"}
        for entry in entries
    ]


def _roundtrip(data: DataDir, instance: str, where: Path) -> tuple[DataDir, str]:
    export = load(dump(export_instance(data, instance)))
    imported = DataDir(where)
    done = import_file(export, imported.root)
    return imported, done.instance_map[instance]


@given(seed=st.integers(0, 10_000), pick=st.integers(0, 10_000))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_an_exported_instance_replays_the_same_trace(tmp_path_factory: pytest.TempPathFactory, seed: int,
                                                     pick: int) -> None:
    data = busy_data_dir(tmp_path_factory.mktemp("orig"), commands=700, seed=seed)
    instances = sorted(load_state(data).instances)
    instance = instances[pick % len(instances)]
    imported, new = _roundtrip(data, instance, tmp_path_factory.mktemp("imported"))
    assert _comparable(trace(imported, new), instance, new) == _comparable(trace(data, instance), instance, new)
    assert verify(imported).ok


def test_the_slice_is_small_and_every_instance_of_a_busy_log_round_trips(tmp_path: Path) -> None:
    data = busy_data_dir(tmp_path / "orig", commands=1500, seed=3)
    state = load_state(data)
    with data.commands() as stream:
        total = sum(1 for _ in stream.iter_records(0))
    for i, instance in enumerate(random.Random(1).sample(sorted(state.instances), 10)):
        export = export_instance(data, instance)
        assert len(export.commands) < total / 2
        imported, new = _roundtrip(data, instance, tmp_path / f"imp{i}")
        assert _comparable(trace(imported, new), instance, new) == _comparable(trace(data, instance), instance, new)


def test_a_range_export_keeps_offsets_and_ids(tmp_path: Path) -> None:
    data = busy_data_dir(tmp_path / "orig", commands=900, seed=5)
    with data.commands() as stream:
        offsets = [r.offset for r in stream.iter_records(0)]
    start, end = offsets[300], offsets[700]
    export = load(dump(export_range(data, start, end)))
    assert export.first_offset == start and len(export.commands) == 401
    imported = DataDir(tmp_path / "imp")
    import_file(export, imported.root)
    expected = load_state(data)
    with data.commands() as stream:
        from easysched_es.core.state import State
        from easysched_es.runtime.fold import fold_stream

        expected = State()
        fold_stream(stream, expected, until=end)
    got = load_state(imported)
    from easysched_es.core.codec import encode

    assert encode(got.snapshot()) == encode(expected.snapshot())
    assert verify(imported).ok
    some = next(i for i in sorted(expected.instances) if int(i.split("-")[1]) >= start)
    assert trace(imported, some) == [e for e in trace(data, some) if e["offset"] <= end]


def test_damaged_foreign_and_newer_files_are_refused(tmp_path: Path) -> None:
    data = busy_data_dir(tmp_path / "orig", commands=200)
    raw = dump(export_instance(data, sorted(load_state(data).instances)[0]))
    with pytest.raises(ExportError, match="not an easysched export"):
        load(b"hello" + raw)
    with pytest.raises(ExportError, match="CRC"):
        load(raw[:-3] + b"xyz")
    with pytest.raises(ExportError, match="truncated"):
        load(raw[:-3])
    import msgspec

    from easysched_es.debug.export import ExportFile

    newer = msgspec.structs.replace(load(raw), format=FORMAT + 1)
    with pytest.raises(ExportError, match="upgrade"):
        load(dump(newer))
    with pytest.raises(ExportError, match="already holds a log"):
        import_file(load(raw), data.root)
    assert isinstance(load(raw), ExportFile)


def test_a_sub_workflow_parent_carries_its_child(tmp_path: Path) -> None:
    from easysched_es.core import commands as c
    from easysched_es.core.definitions import SubWorkflowSpec, SubWorkflowTask
    from tests.core.helpers import shell, wf
    from tests.debug.helpers import Script

    data = DataDir(tmp_path / "orig")
    run = Script(data)
    run(c.DefineWorkflow(definition=wf("child", shell("work", "echo work"))))
    run(c.DefineWorkflow(definition=wf("parent", SubWorkflowTask(name="sub", sub_workflow=SubWorkflowSpec("child")),
                                       shell("after", "echo after", upstream=["sub"]))))
    noise = run.start("child")  # another instance of the child workflow, not part of the slice
    parent = run.start("parent")
    child = next(i for i in load_state(data).instances if i.startswith(parent + "."))
    run(c.TaskStarted(instance=noise, task="work", attempt=1, pid=7))
    run(c.TaskStarted(instance=child, task="work", attempt=1, pid=8))
    run(c.TaskFinished(instance=child, task="work", attempt=1, exit_code=0))
    run(c.TaskStarted(instance=parent, task="after", attempt=1, pid=9))
    run(c.TaskFinished(instance=parent, task="after", attempt=1, exit_code=0))
    assert load_state(data).instances[parent].state == "SUCCESS"
    export = export_instance(data, parent)
    assert set(export.instance_map) == {parent, child}
    imported = DataDir(tmp_path / "imp")
    import_file(export, imported.root)
    new_parent, new_child = export.instance_map[parent], export.instance_map[child]
    got = load_state(imported)
    assert got.instances[new_parent].state == "SUCCESS" and got.instances[new_child].state == "SUCCESS"
    assert noise not in got.instances
    original = _comparable(_comparable(trace(data, parent), parent, new_parent), child, new_child)
    assert _comparable(trace(imported, new_parent), parent, new_parent) == original
