"""Limits at the door through the real CLI: refused with the field named, nothing left half-done;
a task with a long unicode name and a `/` runs and gets its log file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from easysched_es.runtime.embedded.client import Client, CommandRejectedError
from tests.harness import Run, cli, kill_leftovers, wait_until

pytestmark = pytest.mark.slow


def test_a_5000_character_task_name_and_a_1mb_parameter_are_refused_at_the_door(tmp_path: Path) -> None:
    long_name = tmp_path / "long.yaml"
    long_name.write_text(f"name: long\ntasks:\n  - {{name: {'t' * 5000}, type: SHELL, command: 'true'}}\n")
    proc = cli(tmp_path, "define", str(long_name))
    assert proc.returncode == 1
    assert "the task name is 5000 characters long; at most 256" in proc.stderr
    assert "Traceback" not in proc.stderr

    big = tmp_path / "big.yaml"
    tasks = "tasks:\n  - {name: a, type: SHELL, command: 'true'}\n"
    big.write_text(f"name: big\nparams: {{PAYLOAD: {'x' * 1_000_000}}}\n{tasks}")
    proc = cli(tmp_path, "define", str(big), "--json")
    assert proc.returncode == 1 and "parameter 'PAYLOAD' is 1,000,009 bytes" in json.loads(proc.stdout)["error"]

    # A 1 MB argument cannot even reach the CLI (the OS refuses it): a start through the client.
    ok = tmp_path / "ok.yaml"
    ok.write_text("name: ok\ntasks:\n  - {name: a, type: SHELL, command: 'true'}\n")
    assert cli(tmp_path, "define", str(ok)).returncode == 0
    with pytest.raises(CommandRejectedError, match="parameter 'PAYLOAD' is 1,000,009 bytes"):
        Client(tmp_path).start("ok", {"PAYLOAD": "x" * 1_000_000})
    assert json.loads(cli(tmp_path, "status", "--json").stdout) == []


def test_a_long_unicode_task_name_with_a_slash_gets_a_safe_log_file(tmp_path: Path) -> None:
    name = "données/" + "日本" * 120  # 248 characters, about 2 KB once percent-quoted
    flow = tmp_path / "uni.yaml"
    flow.write_text(json.dumps({"name": "uni", "tasks": [{"name": name, "type": "SHELL", "command": "echo hi"}]}))
    run = Run(tmp_path)
    try:
        assert cli(tmp_path, "define", str(flow)).returncode == 0
        inst = cli(tmp_path, "start", "uni").stdout.strip()
        wait_until("the task to succeed", lambda: run.state().instances[inst].state == "SUCCESS", timeout=120)
        logs = list((tmp_path / "logs").rglob("*.log")) if (tmp_path / "logs").exists() else []
        logs = logs or [p for p in tmp_path.rglob("*.log") if not p.name.startswith("run-")]
        assert any(p.read_text() == "hi\n" and len(p.name.encode()) < 255 for p in logs), logs
    finally:
        run.stop()
        kill_leftovers(tmp_path)


def test_numeric_parameter_values_are_accepted_as_text_and_yaml_booleans_as_names_refused(tmp_path: Path) -> None:
    from easysched_es.flows import FlowFileError, load_flow

    flow = tmp_path / "n.yaml"
    flow.write_text("name: n\nparams: {retries: 3, ratio: 1.5, flag: true}\n"
                    "tasks:\n  - {name: a, type: SHELL, command: 'true', env: {N: 7}}\n")
    definition = load_flow(flow)
    assert definition.params == {"retries": "3", "ratio": "1.5", "flag": "true"}
    assert definition.tasks[0].env == {"N": "7"}  # type: ignore[union-attr]
    flow.write_text("name: n\nparams: {on: 1}\ntasks:\n  - {name: a, type: SHELL, command: 'true'}\n")
    with pytest.raises(FlowFileError, match="parameter name True is not a string"):
        load_flow(flow)
    flow.write_text("name: n\nparams: {x: [1]}\ntasks:\n  - {name: a, type: SHELL, command: 'true'}\n")
    with pytest.raises(FlowFileError, match="parameter 'x' is a list"):
        load_flow(flow)


def test_gc_removes_old_logs_and_run_dirs_and_nothing_a_live_or_retained_instance_needs(tmp_path: Path) -> None:
    from easysched_es.core import commands as c
    from easysched_es.runtime.embedded.datadir import DataDir
    from easysched_es.runtime.embedded.gc import gc

    flow = tmp_path / "g.yaml"
    flow.write_text("name: g\nretention_days: 1\ntasks:\n  - {name: a, type: SHELL, command: 'echo $GATE_OK; "
                    "[ -n \"$HOLD\" ] && sleep 300; true'}\n")
    run = Run(tmp_path)
    try:
        assert cli(tmp_path, "define", str(flow)).returncode == 0
        old = cli(tmp_path, "start", "g").stdout.strip()
        wait_until("the first instance to succeed", lambda: run.state().instances[old].state == "SUCCESS", timeout=120)
        live = Client(tmp_path).submit(c.StartWorkflow(workflow="g", params={"HOLD": "1"})).events[0].instance  # type: ignore[union-attr]
        wait_until("the live task to run", lambda: run.task(live, "a") is not None
                   and run.task(live, "a").state == "RUNNING_EXECUTION", timeout=120)
        data = DataDir(tmp_path)
        later = run.state().instances[old].ended + 2 * 86_400_000
        dry = gc(data, dry_run=True, now=later)
        assert dry["instances"] == [old] and len(dry["directories"]) == 2
        assert (data.logs).exists() and len(list(data.logs.iterdir())) == 2
        report = gc(data, now=later)
        assert report["instances"] == [old]
        assert sorted(Path(d).parent.name for d in report["directories"]) == ["logs", "runs"]
        left = [d.name for d in data.logs.iterdir()] + [d.name for d in data.runs.iterdir()]
        assert all(live in name or name == live for name in left) and len(left) == 2
        assert set(run.state().instances) == {live}
        # A retired instance: `wait` gives how it ended, `status` says where it went.
        waited = cli(tmp_path, "wait", old, "--json")
        assert waited.returncode == 0 and json.loads(waited.stdout) == {
            "instance": old, "workflow": "g", "state": "SUCCESS", "retired": True}
        status = cli(tmp_path, "status", old, "--json")
        error = json.loads(status.stdout)["error"]
        assert status.returncode == 1 and "retention removed it from the hot state" in error
        assert f"easysched trace {old}" in error
        assert cli(tmp_path, "stop", live).returncode == 0
    finally:
        run.stop()
        kill_leftovers(tmp_path)
