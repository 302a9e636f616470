"""Scope 2: a decoded command whose application raises stops the partition loudly; `skip` passes over it,
the same way in the master, the CLI readers, trace, replay and verify."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from easysched_es.cli.app import main
from easysched_es.core import commands as c
from easysched_es.core import step as core_step
from easysched_es.core.events import CommandSkipped, Event, SkipRecorded
from easysched_es.debug.trace import trace
from easysched_es.debug.verify import verify
from easysched_es.runtime.embedded.client import Client
from easysched_es.runtime.embedded.master import EmbeddedMaster
from easysched_es.runtime.fold import PartitionHalted, load_state
from tests.robust.helpers import flow, shell


def _boom(*_: object) -> None:
    raise KeyError("a bug in the pause handler")


@pytest.fixture
def buggy_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(core_step._HANDLERS, c.PauseWorkflow, _boom)


def test_a_raising_command_stops_the_partition_until_skipped(
    tmp_path: Path, buggy_pause: None, capsys: pytest.CaptureFixture[str]
) -> None:
    client = Client(tmp_path)
    effects: list[Event] = []
    master = EmbeddedMaster(client.data, effects.append)
    master.recover()
    client.define(flow("w", shell("a", "sleep 1"), shell("b", upstream=["a"])))
    instance = client.start("w")
    with pytest.raises(PartitionHalted, match=r"stopped at offset \d+: applying the 'pause' command"):
        client.pause(instance)
    bad = load_state_offset(client)
    assert master.poll() == 2  # define and start decided before the stop
    assert master.halted is not None and master.halted.failure.offset == bad
    assert any(type(e).__name__ == "DispatchTask" for e in effects)
    assert master.poll() == 0  # stays stopped
    assert client.data.halted.read_text().startswith(f"partition 0 is stopped at offset {bad}")
    # The CLI says so, naming the offset and the way out.
    assert main(["--data-dir", str(tmp_path), "status"]) == 1
    err = capsys.readouterr().err
    assert f"stopped at offset {bad}" in err and f"easysched skip {bad}" in err
    # The operator skips it; every fold now passes over it the same way.
    assert main(["--data-dir", str(tmp_path), "skip", str(bad), "--reason", "bug #42"]) == 0
    master.poll()  # finds the skip, folds again with it
    assert master.halted is None and not client.data.halted.exists()
    assert master.poll() == 2  # the skipped pause and the skip itself
    state = load_state(client.data)
    assert state.instances[instance].state == "RUNNING_EXECUTION"  # the pause never happened
    assert state.skipped == {}
    entries = trace(client.data, instance)
    skipped = [e for e in entries if e["type"] == "command_skipped"]
    assert skipped and skipped[0]["offset"] == bad and skipped[0]["data"]["reason"] == "bug #42"
    assert "KeyError" in skipped[0]["data"]["error"]
    report = verify(client.data)
    assert report.ok, report.divergence
    master.close()


def test_a_skip_of_a_command_that_applied_is_rejected(tmp_path: Path) -> None:
    client = Client(tmp_path)
    client.define(flow("w", shell("a")))
    with pytest.raises(Exception, match="nothing to skip"):
        client.skip(0, "why not")


def test_skip_partition_is_refused_on_the_embedded_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(tmp_path), "skip", "3", "--partition", "1", "--reason", "x", "--json"]) == 2
    answer = json.loads(capsys.readouterr().out)
    assert answer["kind"] == "usage" and "--partition is for --kafka" in answer["error"], answer


def test_skip_needs_a_reason_and_records_it(tmp_path: Path, buggy_pause: None) -> None:
    client = Client(tmp_path)
    client.define(flow("w", shell("a")))
    instance = client.start("w")
    with pytest.raises(PartitionHalted):
        client.pause(instance)
    bad = load_state_offset(client)
    with pytest.raises(Exception, match="needs a reason"):
        client.skip(bad, "  ")
    verdict = client.skip(bad, "known bug")
    assert [type(e) for e in verdict.events] == [SkipRecorded]
    seen: list[Event] = []
    load_state(client.data, sink=lambda r, evs, tag: seen.extend(evs))
    assert sum(isinstance(e, CommandSkipped) for e in seen) == 1


def load_state_offset(client: Client) -> int:
    """The offset of the last command in the log (the pause that raised)."""
    with client.data.commands() as commands:
        return commands.last_record().offset  # type: ignore[union-attr]


_BUG = '''
import os
if os.environ.get("EASYSCHED_TEST_PAUSE_BUG"):
    from easysched_es.core import commands, step

    def _boom(*_):
        raise KeyError("a bug in the pause handler")

    step._HANDLERS[commands.PauseWorkflow] = _boom
'''


@pytest.mark.slow
def test_a_real_run_stops_at_a_raising_command_and_goes_on_after_skip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.harness import Run, cli, kill_leftovers, wait_until

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_BUG)  # the bug, in every easysched process of this test
    monkeypatch.setenv("PYTHONPATH", f"{hook}:{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("EASYSCHED_TEST_PAUSE_BUG", "1")
    root = tmp_path / "data"
    run = Run(root)
    try:
        run.client.define(flow("w", shell("a", "sleep 1"), shell("b", upstream=["a"])))
        instance = run.client.start("w")
        paused = cli(root, "pause", instance)
        assert paused.returncode == 1 and "is stopped at offset" in paused.stderr, paused.stderr
        bad = int(paused.stderr.split("stopped at offset ")[1].split(":")[0])
        wait_until("the master says it stopped", lambda: "stopped at offset" in run.log())
        assert run.proc.poll() is None  # stopped loudly, not dead
        status = cli(root, "status", "--json")
        assert status.returncode == 1 and '"halted"' in status.stdout
        skipped = cli(root, "skip", str(bad), "--reason", "bug #42")
        assert skipped.returncode == 0, skipped.stderr
        # Asked through the CLI, whose process has the bug too: this test process's own fold
        # would apply the pause (no bug here) and disagree with the master.
        def succeeded() -> bool:
            answer = cli(root, "status", instance, "--json")
            return answer.returncode == 0 and json.loads(answer.stdout).get("state") == "SUCCESS"

        wait_until("the instance goes on without the pause", succeeded, timeout=60)
        assert cli(root, "verify").returncode == 0
    finally:
        run.stop()
        kill_leftovers(root)
