"""SUB_WORKFLOW in the fold: child instances, parameters down, outputs up, stop/pause/kill over trees."""

from __future__ import annotations

from typing import Any

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.definitions import SubWorkflowSpec, SubWorkflowTask
from easysched_es.core.state import (
    FAILURE,
    KILL,
    PAUSE,
    SUCCESS,
    WF_FAILURE,
    WF_PAUSE,
    WF_READY_STOP,
    WF_RUNNING,
    WF_STOP,
    WF_SUCCESS,
)
from tests.core.helpers import Master, of, shell, wf


def sub(name: str, workflow: str, upstream: list[str] | None = None, **params: str) -> SubWorkflowTask:
    return SubWorkflowTask(name=name, upstream=upstream or [], sub_workflow=SubWorkflowSpec(workflow=workflow,
                                                                                             params=params))


def _finish(m: Master, inst: str, task: str, exit_code: int = 0, outputs: dict[str, str] | None = None,
            killed: bool = False) -> list[e.Event]:
    return m.send(c.TaskFinished(instance=inst, task=task, attempt=1, exit_code=exit_code, worker="w1",
                                 killed=killed, outputs=outputs or {}))


def setup(*extra: Any) -> tuple[Master, str, str]:
    m = Master()
    m.define(wf("child", shell("load", command="echo $ROWS"), shell("after", upstream=["load"])))
    m.define(wf("parent", shell("extract"), sub("run_child", "child", ["extract"], ROWS="${rows}"),
                shell("publish", upstream=["run_child"]), *extra))
    inst = m.start("parent")
    m.started(inst, "extract")
    events = _finish(m, inst, "extract", outputs={"rows": "42"})
    (started,) = of(events, e.WorkflowStarted)
    return m, inst, started.instance


def test_a_child_runs_in_the_same_step_with_parameters_passed_down() -> None:
    m, inst, child = setup()
    assert child == f"0-{m.offset}.1"
    ch = m.state.instances[child]
    assert (ch.parent, ch.parent_task, ch.params["ROWS"]) == (inst, "run_child", "42")
    assert m.task(inst, "run_child").child == child
    (d,) = of(m.log, e.DispatchTask, instance=child, task="load")
    assert d.env["ROWS"] == "42"


def test_the_task_ends_with_the_child_and_takes_its_outputs_up() -> None:
    m, inst, child = setup()
    m.started(child, "load")
    _finish(m, child, "load", outputs={"loaded": "42"})
    m.started(child, "after")
    events = _finish(m, child, "after")
    assert m.wf_state(child) == WF_SUCCESS and m.task(inst, "run_child").state == SUCCESS
    assert m.task(inst, "run_child").outputs == {"loaded": "42"}
    (d,) = of(events, e.DispatchTask, instance=inst, task="publish")
    assert d.env["loaded"] == "42"


def test_a_failed_child_fails_the_task() -> None:
    m, inst, child = setup()
    m.started(child, "load")
    _finish(m, child, "load", exit_code=2)
    assert m.wf_state(child) == WF_FAILURE
    assert m.task(inst, "run_child").state == FAILURE
    assert m.wf_state(inst) == WF_FAILURE


def test_stop_of_the_parent_reaches_the_child_and_waits_for_its_processes() -> None:
    m, inst, child = setup()
    m.started(child, "load")
    events = m.send(c.StopWorkflow(instance=inst))
    (kill,) = of(events, e.KillTaskProcess)
    assert (kill.instance, kill.task) == (child, "load")
    assert m.wf_state(inst) == WF_READY_STOP and m.wf_state(child) == WF_READY_STOP
    assert m.task(inst, "run_child").state == KILL and m.task(inst, "run_child").kill_pending
    assert m.timers() == {}
    events = _finish(m, child, "load", exit_code=-15, killed=True)
    assert m.wf_state(child) == WF_STOP and m.wf_state(inst) == WF_STOP
    assert [ev.instance for ev in of(events, e.WorkflowFinished)] == [child, inst]
    assert not of(m.log[m.log.index(kill):], e.DispatchTask)


def test_a_kill_of_the_sub_workflow_task_stops_the_child() -> None:
    m, inst, child = setup()
    m.started(child, "load")
    m.send(c.KillTask(instance=inst, task="run_child"))
    assert m.wf_state(child) == WF_READY_STOP and m.wf_state(inst) == WF_RUNNING
    _finish(m, child, "load", exit_code=-15, killed=True)
    assert m.wf_state(child) == WF_STOP and m.wf_state(inst) == WF_FAILURE
    assert "publish" not in m.state.instances[inst].tasks


def test_pause_and_resume_reach_the_child() -> None:
    m, inst, child = setup()
    m.started(child, "load")
    m.send(c.PauseWorkflow(instance=inst))
    assert m.wf_state(child) == "READY_PAUSE" and m.wf_state(inst) == "READY_PAUSE"
    _finish(m, child, "load")
    assert m.wf_state(child) == WF_PAUSE and m.task(inst, "run_child").state == PAUSE
    assert m.wf_state(inst) == WF_PAUSE
    assert not of(m.log, e.DispatchTask, instance=child, task="after")
    events = m.send(c.ResumeWorkflow(instance=inst))
    assert m.wf_state(child) == WF_RUNNING and m.wf_state(inst) == WF_RUNNING
    assert of(events, e.DispatchTask, instance=child, task="after")


def test_a_child_of_a_paused_parent_is_resumed_only_through_the_parent() -> None:
    m, inst, child = setup()
    m.started(child, "load")
    m.send(c.PauseWorkflow(instance=inst))
    _finish(m, child, "load")
    assert m.wf_state(child) == WF_PAUSE and m.task(inst, "run_child").state == PAUSE
    events = m.send(c.ResumeWorkflow(instance=child))
    rejected = of(events, e.CommandRejected)
    assert len(rejected) == 1 and f"resume {inst} instead" in rejected[0].reason
    assert m.wf_state(child) == WF_PAUSE and m.task(inst, "run_child").state == PAUSE


def test_a_grandchild_tree_stops_as_a_whole() -> None:
    m = Master()
    m.define(wf("leaf", shell("nap", command="sleep 100")))
    m.define(wf("middle", sub("go_leaf", "leaf")))
    m.define(wf("top", sub("go_middle", "middle")))
    top = m.start("top")
    middle = m.task(top, "go_middle").child
    leaf = m.task(middle, "go_leaf").child
    m.started(leaf, "nap")
    m.send(c.StopWorkflow(instance=top))
    assert {m.wf_state(i) for i in (top, middle, leaf)} == {WF_READY_STOP}
    _finish(m, leaf, "nap", exit_code=-15, killed=True)
    assert [m.wf_state(i) for i in (top, middle, leaf)] == [WF_STOP] * 3


def test_recursion_and_unknown_children_are_refused_at_define() -> None:
    m = Master()
    (r,) = of(m.define(wf("a", sub("me", "a"))), e.CommandRejected)
    assert r.reason == ("workflow 'a', task 'me': sub_workflow.workflow 'a' makes a workflow contain itself: a -> a")
    (r,) = of(m.define(wf("a", sub("x", "ghost"))), e.CommandRejected)
    assert "sub_workflow.workflow 'ghost' is not defined: define it first" in r.reason
    m.define(wf("c", shell("t")))
    m.define(wf("b", sub("to_c", "c")))
    assert not of(m.define(wf("a", sub("to_b", "b"))), e.CommandRejected)
    (r,) = of(m.define(wf("c", sub("to_a", "a"))), e.CommandRejected)
    assert r.reason.endswith("makes a workflow contain itself: c -> a -> b -> c")


def test_offline_child_and_unknown_parameter_fail_the_task_with_the_reason() -> None:
    m = Master()
    m.define(wf("child", shell("t")))
    m.define(wf("p1", sub("s", "child", X="${nope}")))
    inst = m.start("p1")
    (failed,) = of(m.log, e.TaskStateChanged, instance=inst, task="s", state=FAILURE)
    assert failed.reason.startswith("sub_workflow.params.X: unknown name ${nope}")
    m.send(c.SetReleaseState(workflow="child", online=False))
    m.define(wf("p2", sub("s", "child")))
    inst = m.start("p2")
    (failed,) = of(m.log, e.TaskStateChanged, instance=inst, task="s", state=FAILURE)
    assert failed.reason == "child workflow 'child' is OFFLINE: release it"


def test_a_resume_before_the_pause_completed_resumes_the_child_too() -> None:
    m, inst, child = setup()
    m.started(child, "load")
    m.send(c.PauseWorkflow(instance=inst))
    m.send(c.ResumeWorkflow(instance=inst))
    assert m.wf_state(child) == WF_RUNNING and m.wf_state(inst) == WF_RUNNING
    events = _finish(m, child, "load")
    assert of(events, e.DispatchTask, instance=child, task="after")


def test_the_kill_confirmation_of_a_sub_workflow_task_is_a_kill_confirmed_event() -> None:
    m, inst, child = setup()
    m.started(child, "load")
    m.send(c.StopWorkflow(instance=inst))
    events = _finish(m, child, "load", exit_code=-15, killed=True)
    confirmed = of(events, e.KillConfirmed, instance=inst, task="run_child")
    assert len(confirmed) == 1 and not m.task(inst, "run_child").kill_pending
