"""End to end on the embedded log: a real `easysched run`, real subprocesses, the real CLI."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import msgspec
import pytest

from easysched_es.core.definitions import WorkflowDefinition
from easysched_es.core.events import CommandRejected
from easysched_es.debug.trace import trace
from easysched_es.runtime.fold import load_state
from tests.harness import Run, cli, cli_json, group_members, kill_leftovers, pid_alive, wait_until

pytestmark = pytest.mark.slow


def flow(name: str, *tasks: dict[str, object], **extra: object) -> WorkflowDefinition:
    return msgspec.convert({"name": name, "tasks": list(tasks), **extra}, WorkflowDefinition)


def shell(name: str, command: str, **extra: object) -> dict[str, object]:
    return {"name": name, "type": "SHELL", "command": command, **extra}


def waiting_dependent(name: str, interval: float = 0.5) -> dict[str, object]:
    return {
        "name": name,
        "type": "DEPENDENT",
        "dependence": {"check_interval": interval, "items": [{"workflow": "never_ran"}]},
    }


def test_kill_task_terminates_the_whole_process_group(run: Run) -> None:
    run.client.define(
        flow("sleepers", shell("nap", "sleep 300 & sleep 301; wait"), shell("after", "true", upstream=["nap"]))
    )
    instance = run.client.start("sleepers")
    pid = wait_until("nap running", lambda: getattr(run.task(instance, "nap"), "pid", None))
    members = wait_until("both sleeps in the group", lambda: len(group_members(pid)) >= 3 and group_members(pid))
    run.client.kill_task(instance, "nap")
    assert run.task(instance, "nap").state == "KILL"  # the decision is immediate
    wait_until("every process of the group gone", lambda: not any(pid_alive(p) for p in members), timeout=15)
    wait_until("kill confirmed", lambda: not run.task(instance, "nap").kill_pending)
    state = run.state()
    assert state.instances[instance].state == "FAILURE"
    assert "after" not in state.instances[instance].tasks
    assert [t for t in state.queue.entries() if t.instance == instance] == []


def test_stop_kills_dependent_and_shell_and_ends_stop(run: Run) -> None:
    run.client.define(flow("mixed", waiting_dependent("wait"), shell("work", "sleep 300")))
    instance = run.client.start("mixed")
    pid = wait_until("work running", lambda: getattr(run.task(instance, "work"), "pid", None))
    assert [t.kind for t in run.state().queue.entries() if t.instance == instance] == ["DEPENDENT_CHECK"]
    stop_offset = run.client.stop(instance).offset
    # The state as of the stop itself: the worker may confirm the kill before a later fold.
    state = load_state(run.data, until=stop_offset)
    assert {t.name: t.state for t in state.instances[instance].tasks.values()} == {"wait": "KILL", "work": "KILL"}
    assert state.instances[instance].state == "READY_STOP"  # until the worker confirms the process is gone
    assert [t for t in state.queue.entries() if t.instance == instance] == []
    wait_until("process gone", lambda: not pid_alive(pid), timeout=15)
    wait_until("instance STOP", lambda: run.state().instances[instance].state == "STOP")
    dispatches_after = [e for e in trace(run.data, instance) if e["offset"] > stop_offset and e["type"] == "dispatch"]
    assert dispatches_after == []


def test_16895_through_the_cli(run: Run, tmp_path: Path) -> None:
    flows = tmp_path / "flows.yaml"
    flows.write_text(
        "name: etl_daily\ntasks:\n"
        "  - name: wait_upstream\n    type: DEPENDENT\n    dependence:\n      check_interval: 0.3\n"
        "      items:\n        - {workflow: upstream, task: publish, cycle: DAY, date_value: today}\n"
        "  - name: load\n    type: SHELL\n    command: echo loading\n    upstream: [wait_upstream]\n"
    )
    probe = tmp_path / "probe.yaml"
    probe.write_text(
        "name: probe\ntasks:\n"
        "  - {name: tick, type: DEPENDENT, dependence: {check_interval: 0.1, items: [{workflow: nope}]}}\n"
    )
    assert cli(tmp_path, "define", str(flows), str(probe)).returncode == 0
    instance = cli_json(tmp_path, "start", "etl_daily")["instance"]
    wait_until("a re-check", lambda: sum(e["type"] == "timer_fired" for e in trace(run.data, instance)) >= 2)
    timers = cli_json(tmp_path, "timers")
    assert [(t["instance"], t["task"], t["kind"]) for t in timers] == [(instance, "wait_upstream", "DEPENDENT_CHECK")]
    assert timers[0]["due"].endswith("Z")
    assert cli(tmp_path, "stop", instance).returncode == 0
    status = cli_json(tmp_path, "status", instance)
    assert status["state"] == "STOP"
    keys = ("name", "type", "state", "attempt", "pid", "kill_pending")
    assert [{k: t[k] for k in keys} for t in status["tasks"]] == [
        {"name": "wait_upstream", "type": "DEPENDENT", "state": "KILL", "attempt": 0, "pid": None,
         "kill_pending": False},
        # Listed though never submitted: its upstream was killed (issue 11's status shows every task).
        {"name": "load", "type": "SHELL", "state": "NOT_SUBMITTED", "attempt": 0, "pid": None, "kill_pending": False},
    ]
    assert status["tasks"][0]["reason"] == "killed by stop"
    stop_offset = max(e["offset"] for e in cli_json(tmp_path, "trace", instance))
    probe_id = cli_json(tmp_path, "start", "probe")["instance"]
    # The clock keeps ticking (the probe's timer fires many times); the stopped task's never does.
    wait_until("ten ticks", lambda: sum(e["type"] == "timer_fired" for e in trace(run.data, probe_id)) >= 10)
    assert [t for t in cli_json(tmp_path, "timers") if t["instance"] == instance] == []
    after = [e for e in cli_json(tmp_path, "trace", instance) if e["offset"] > stop_offset]
    assert after == []
    replay = cli_json(tmp_path, "replay", "--until", str(stop_offset - 1))
    assert [t["instance"] for t in replay["timers"]] == [instance]
    assert cli(tmp_path, "verify").returncode == 0


def test_params_reach_the_script_as_environment(run: Run, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    run.client.define(flow("p", shell("a", f'printf "%s" "$GREETING" > {out}'), shell("b", "true", upstream=["a"])))
    instance = run.client.start("p", {"GREETING": "hello; rm -rf /"})
    wait_until("success", lambda: run.state().instances[instance].state == "SUCCESS")
    assert out.read_text() == "hello; rm -rf /"


def test_retry_then_success(run: Run, tmp_path: Path) -> None:
    marker = tmp_path / "tries"
    script = f'echo x >> {marker}; test "$(wc -l < {marker})" -ge 2'
    run.client.define(flow("r", shell("flaky", script, retry_times=2, retry_interval=0.2)))
    instance = run.client.start("r")
    wait_until("success", lambda: run.state().instances[instance].state == "SUCCESS")
    assert run.task(instance, "flaky").attempt == 2
    assert marker.read_text().count("x") == 2


def test_pause_lets_running_finish_then_resume(run: Run, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    run.client.define(
        flow(
            "pr",
            shell("first", f"while [ ! -e {gate} ]; do sleep 0.02; done"),
            shell("second", "true", upstream=["first"]),
        )
    )
    instance = run.client.start("pr")
    wait_until("first running", lambda: getattr(run.task(instance, "first"), "pid", None))
    run.client.pause(instance)
    assert run.state().instances[instance].state == "READY_PAUSE"
    gate.touch()
    wait_until("PAUSE", lambda: run.state().instances[instance].state == "PAUSE")
    assert run.task(instance, "first").state == "SUCCESS"
    assert run.task(instance, "second") is None  # not dispatched while paused
    run.client.resume(instance)
    wait_until("SUCCESS", lambda: run.state().instances[instance].state == "SUCCESS")


def test_second_run_on_the_same_data_dir_is_refused(run: Run) -> None:
    proc = cli(run.root, "run", "--no-projections")
    assert proc.returncode == 1
    assert f"pid {run.proc.pid}" in proc.stderr


def test_kill9_then_restart_adopts_a_running_task_and_runs_it_once(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    gate = tmp_path / "gate"
    first = Run(tmp_path)
    try:
        first.client.define(
            flow("long", shell("job", f"echo s >> {starts}; while [ ! -e {gate} ]; do sleep 0.02; done"))
        )
        instance = first.client.start("long")
        pid = wait_until("job running", lambda: getattr(first.task(instance, "job"), "pid", None))
        first.kill9()
        assert pid_alive(pid)  # the task lives in its own session
        second = Run(tmp_path)
        try:
            wait_until("adopted", lambda: any(e["type"] == "task_adopted" for e in trace(second.data, instance)))
            assert second.task(instance, "job").state == "RUNNING_EXECUTION"
            gate.touch()
            wait_until("SUCCESS", lambda: second.state().instances[instance].state == "SUCCESS")
            assert starts.read_text().count("s") == 1
            assert second.task(instance, "job").attempt == 1
        finally:
            second.stop()
    finally:
        kill_leftovers(tmp_path)


def test_kill_while_run_is_down_is_applied_on_restart(tmp_path: Path) -> None:
    first = Run(tmp_path)
    try:
        first.client.define(flow("long", shell("job", "sleep 300")))
        instance = first.client.start("long")
        pid = wait_until("job running", lambda: getattr(first.task(instance, "job"), "pid", None))
        first.kill9()
        first.client.kill_task(instance, "job")  # accepted into the log while no master runs
        assert pid_alive(pid)
        second = Run(tmp_path)
        try:
            wait_until("process killed after restart", lambda: not pid_alive(pid), timeout=30)
            wait_until("instance ends", lambda: second.state().instances[instance].state == "FAILURE")
        finally:
            second.stop()
    finally:
        kill_leftovers(tmp_path)


def test_task_that_finished_while_run_was_down_is_reported_from_its_exit_code(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    first = Run(tmp_path)
    try:
        first.client.define(flow("f", shell("job", f"while [ ! -e {gate} ]; do sleep 0.02; done; exit 3")))
        instance = first.client.start("f")
        pid = wait_until("job running", lambda: getattr(first.task(instance, "job"), "pid", None))
        first.kill9()
        gate.touch()
        wait_until("job exited", lambda: not pid_alive(pid))
        second = Run(tmp_path)
        try:
            wait_until("FAILURE", lambda: second.state().instances[instance].state == "FAILURE")
            assert second.task(instance, "job").exit_code == 3
        finally:
            second.stop()
    finally:
        kill_leftovers(tmp_path)


def test_torn_tail_is_cut_on_start_and_nothing_accepted_is_lost(tmp_path: Path) -> None:
    first = Run(tmp_path)
    first.client.define(flow("ok", shell("a", "true")))
    instance = first.client.start("ok")
    wait_until("SUCCESS", lambda: first.state().instances[instance].state == "SUCCESS")
    first.kill9()
    segment = sorted((tmp_path / "commands").glob("*.seg"))[-1]
    with open(segment, "ab") as f:
        f.write(struct.pack("<II", 1000, 0) + b"half a record")  # a torn write
    second = Run(tmp_path)
    try:
        assert "torn" in second.log().lower() or "cut" in second.log().lower()
        again = second.client.start("ok")
        wait_until("SUCCESS again", lambda: second.state().instances[again].state == "SUCCESS")
        assert second.state().instances[instance].state == "SUCCESS"
        assert cli(tmp_path, "verify").returncode == 0
    finally:
        second.stop()


def test_bad_input_gets_clear_messages_and_the_master_goes_on(run: Run, tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: x\ntasks: [\n")
    proc = cli(tmp_path, "define", str(bad_yaml))
    assert proc.returncode == 1 and "bad.yaml" in proc.stderr and "YAML" in proc.stderr
    cyclic = tmp_path / "cyclic.yaml"
    cyclic.write_text(
        "name: c\ntasks:\n  - {name: a, type: SHELL, command: x, upstream: [b]}\n"
        "  - {name: b, type: SHELL, command: x, upstream: [a]}\n"
    )
    proc = cli(tmp_path, "define", str(cyclic))
    assert proc.returncode == 1 and "cycle" in proc.stderr and "a -> b" in proc.stderr.replace("b -> a", "a -> b")
    unknown_type = tmp_path / "type.yaml"
    unknown_type.write_text("name: t\ntasks:\n  - {name: a, type: PYTHON, command: x}\n")
    proc = cli(tmp_path, "define", str(unknown_type))
    assert proc.returncode == 1 and "PYTHON" in proc.stderr and "tasks[0]" in proc.stderr
    proc = cli(tmp_path, "start", "no_such_flow")
    assert proc.returncode == 1 and "unknown workflow 'no_such_flow'" in proc.stderr
    proc = cli(tmp_path, "stop", "0-999999")
    assert proc.returncode == 1 and "unknown instance" in proc.stderr
    assert cli(tmp_path, "start").returncode == 2  # usage
    assert cli(tmp_path, "start", "x", "--param", "novalue").returncode == 2
    run.client.define(flow("quick", shell("a", "true")))
    instance = run.client.start("quick")
    wait_until("SUCCESS", lambda: run.state().instances[instance].state == "SUCCESS")
    proc = cli(tmp_path, "kill-task", instance, "a")
    assert proc.returncode == 1 and "already SUCCESS" in proc.stderr
    # A record that is not a command at all, appended straight to the log.
    with run.data.commands() as commands:
        offset = commands.append([b"\xc1 not msgpack"])[0]
    again = run.client.start("quick")
    wait_until("SUCCESS after the bad record", lambda: run.state().instances[again].state == "SUCCESS")
    events = json.loads(cli(tmp_path, "replay", "--until", str(offset), "--json").stdout)
    assert events["last_offset"] == offset
    assert cli(tmp_path, "verify").returncode == 0


def test_a_corrupt_record_in_the_middle_is_rejected_and_the_master_goes_on(tmp_path: Path) -> None:
    first = Run(tmp_path)
    first.client.define(flow("ok", shell("a", "true")))
    victim = first.client.start("ok")
    wait_until("SUCCESS", lambda: first.state().instances[victim].state == "SUCCESS")
    first.kill9()
    # Flip one payload byte of the StartWorkflow record: its CRC no longer matches.
    segment = sorted((tmp_path / "commands").glob("*.seg"))[-1]
    offset = int(victim.split("-")[1]) - int(segment.stem)
    data = bytearray(segment.read_bytes())
    data[offset + 8] ^= 0xFF
    segment.write_bytes(bytes(data))
    for snap in (tmp_path / "snapshots").glob("*.snap"):
        snap.unlink()  # make the fold read the damaged record, not a snapshot taken after it
    second = Run(tmp_path)
    try:
        again = second.client.start("ok")
        wait_until("SUCCESS after the corrupt record", lambda: second.state().instances[again].state == "SUCCESS")
        entries = cli_json(tmp_path, "replay", "--until", str(int(victim.split("-")[1])))
        assert victim not in [i["instance"] for i in entries["instances"]]
        rejected: list[str] = []
        load_state(
            second.data,
            sink=lambda r, evs, tag: rejected.extend(ev.reason for ev in evs if isinstance(ev, CommandRejected)),
        )
        assert any("corrupt record" in reason and "CRC" in reason for reason in rejected), rejected
    finally:
        second.stop()
