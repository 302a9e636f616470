"""Slots through a real `easysched run`: a 200-task fan-out with --slots 4 never has more than
4 task processes alive, sampled from /proc while it runs."""

from __future__ import annotations

import threading
from pathlib import Path

import msgspec
import pytest

from easysched_es.core.definitions import WorkflowDefinition
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.embedded.local_run import task_processes
from tests.harness import Run, cli, cli_json, kill_leftovers, wait_until

pytestmark = pytest.mark.slow


def test_fan_out_of_200_with_4_slots_never_runs_more_than_4_processes(tmp_path: Path) -> None:
    run = Run(tmp_path, "--slots", "4")
    try:
        assert "at most 4 task processes" in run.log()
        tasks = [{"name": f"t{i:03d}", "type": "SHELL", "command": "sleep 0.2"} for i in range(200)]
        run.client.define(msgspec.convert({"name": "fan", "tasks": tasks}, WorkflowDefinition))
        runs = DataDir(tmp_path).runs
        seen: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                seen.append(len(task_processes(runs)))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            inst = run.client.start("fan")
            wait_until("the fan-out to finish", lambda: run.state().instances[inst].state == "SUCCESS", timeout=300)
        finally:
            done.set()
            sampler.join()
        state = run.state()
        print("max concurrent task processes seen:", max(seen), "samples:", len(seen))
        assert max(seen) <= 4, max(seen)
        assert max(seen) >= 2, "the sampler never saw the tasks run in parallel"
        assert all(t.state == "SUCCESS" for t in state.instances[inst].tasks.values())
        # The wait was visible: tasks went through "waiting for a slot" before they ran.
        assert state.capacity.waiting_count() == 0
    finally:
        run.stop()
        kill_leftovers(tmp_path)


def test_pools_and_serial_waits_through_the_cli(tmp_path: Path) -> None:
    flow = tmp_path / "pooled.yaml"
    flow.write_text(
        "name: pooled\nmax_active_instances: 1\ntasks:\n"
        "  - {name: a, type: SHELL, command: 'true', pool: db}\n"
    )
    assert cli(tmp_path, "define", str(flow)).returncode == 0
    first = cli(tmp_path, "start", "pooled").stdout.strip()
    second = cli(tmp_path, "start", "pooled").stdout.strip()
    status = cli_json(tmp_path, "status")
    by_id = {i["instance"]: i for i in status}
    assert by_id[second]["state"] == "SERIAL_WAIT" and "max_active_instances 1" in by_id[second]["waiting_for"]
    assert "pool db has no slots" in by_id[first]["tasks"][0]["waiting_for"]
    timers = cli_json(tmp_path, "timers")
    assert {t["kind"] for t in timers} == {"SLOT_WAIT", "SERIAL_WAIT"}
    assert "pool db" in cli(tmp_path, "pool", "list").stdout
    assert cli(tmp_path, "pool", "set", "db", "--slots", "2").returncode == 0
    rows = cli_json(tmp_path, "pool", "list")
    assert rows == [{"name": "pool db", "slots": 2, "busy": 1, "waiting": 0}]
    assert cli(tmp_path, "pool", "delete", "nope").returncode == 1


def test_verdicts_come_from_the_master_while_it_runs_and_from_a_fold_otherwise(tmp_path: Path) -> None:
    from easysched_es.core import commands as c
    from easysched_es.runtime.embedded.client import Client, CommandRejectedError

    definition = msgspec.convert({"name": "v", "tasks": [{"name": "a", "type": "SHELL", "command": "true"}]},
                                 WorkflowDefinition)
    offline = Client(tmp_path)
    offline.define(definition)
    verdict = offline.submit(c.StartWorkflow(workflow="v"))
    assert not verdict.by_master and verdict.events
    run = Run(tmp_path)
    try:
        online = Client(tmp_path)
        verdict = online.submit(c.StartWorkflow(workflow="v"))
        assert verdict.by_master and any(type(ev).__name__ == "WorkflowStarted" for ev in verdict.events)
        with pytest.raises(CommandRejectedError, match="unknown workflow"):
            online.submit(c.StartWorkflow(workflow="nope"))
    finally:
        run.stop()
        kill_leftovers(tmp_path)
