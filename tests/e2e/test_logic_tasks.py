"""Logic tasks with real processes: a parent's stop kills its child's SHELL; outputs flow SHELL -> SWITCH -> branch."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from easysched_es.core.definitions import WorkflowDefinition
from tests.harness import Run, group_members, pid_alive, wait_until

pytestmark = pytest.mark.slow


def flow(doc: dict[str, object]) -> WorkflowDefinition:
    return msgspec.convert(doc, WorkflowDefinition)


def test_a_stop_of_the_parent_kills_the_childs_process_and_both_end_stop(run: Run) -> None:
    run.client.define(flow({"name": "child", "tasks": [
        {"name": "nap", "type": "SHELL", "command": "sleep 300 & sleep 301; wait", "timeout": 900},
    ]}))
    run.client.define(flow({"name": "parent", "tasks": [
        {"name": "run_child", "type": "SUB_WORKFLOW", "sub_workflow": {"workflow": "child"}},
        {"name": "after", "type": "SHELL", "command": "true", "upstream": ["run_child"]},
    ]}))
    parent = run.client.start("parent")
    child = wait_until("child instance", lambda: run.task(parent, "run_child").child)
    pid = wait_until("the child's sleep running", lambda: getattr(run.task(child, "nap"), "pid", None))
    members = wait_until("both sleeps in the group", lambda: len(group_members(pid)) >= 3 and group_members(pid))
    run.client.stop(parent)
    wait_until("every process of the child's group gone", lambda: not any(pid_alive(p) for p in members), timeout=30)
    state = wait_until("both STOP", lambda: (s := run.state()).instances[parent].state == "STOP" and s)
    assert state.instances[child].state == "STOP"
    assert state.instances[child].tasks["nap"].state == "KILL"
    assert state.instances[parent].tasks["run_child"].state == "KILL"
    assert "after" not in state.instances[parent].tasks
    assert [t for t in state.queue.entries() if t.instance in (parent, child)] == []


def test_output_parameters_flow_from_shell_through_switch_to_the_branch_environment(run: Run, tmp_path: Path) -> None:
    seen = tmp_path / "seen.txt"
    run.client.define(flow({"name": "routed", "tasks": [
        {"name": "extract", "type": "SHELL",
         "command": "n=$(printf 'a\\nb\\nc\\nd\\n' | wc -l); echo \"\\${setValue(rows=$n)}\"; "
                    "echo \"source=in.csv\" >> \"$EASYSCHED_OUTPUT\""},
        {"name": "route", "type": "SWITCH", "upstream": ["extract"],
         "switch": {"cases": [{"condition": "${rows} > 3", "next": "big"}], "default": "small"}},
        {"name": "big", "type": "SHELL", "upstream": ["route"], "command": f"echo \"big $rows $source\" > {seen}"},
        {"name": "small", "type": "SHELL", "upstream": ["route"], "command": f"echo small > {seen}"},
    ]}))
    instance = run.client.start("routed")
    state = wait_until("instance SUCCESS", lambda: (s := run.state()).instances[instance].state == "SUCCESS" and s)
    tasks = state.instances[instance].tasks
    assert tasks["extract"].outputs == {"rows": "4", "source": "in.csv"}
    assert tasks["small"].state == "SKIPPED" and tasks["small"].note == "not taken: route chose case 1"
    assert seen.read_text() == "big 4 in.csv\n"
