"""The fold, command by command: given these commands, expect these events and this state."""

from __future__ import annotations

import msgspec
import pytest

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.codec import encode
from easysched_es.core.definitions import ShellTask
from easysched_es.core.delay_queue import DEPENDENT_CHECK, RETRY, TIMEOUT
from easysched_es.core.state import State
from easysched_es.core.step import SequenceError, reject_record, step, step_record
from tests.core.helpers import SECOND, T0, Master, dep, item, of, shell, tags, task_states, wf

# ---- define, release, start ------------------------------------------------------------


def test_define_then_start_dispatches_the_roots() -> None:
    m = Master()
    ev = m.define(
        wf("etl", shell("extract", command="echo $WHO"), shell("load", upstream=["extract"]), params={"WHO": "x"})
    )
    assert tags(ev) == ["workflow_defined"]
    assert of(ev, e.WorkflowDefined)[0].version == 1
    ev = m.send(c.StartWorkflow(workflow="etl", params={"WHO": "me"}))
    assert tags(ev) == ["workflow_started", "workflow_state", "task_state", "dispatch"]
    inst = "0-1"  # partition-offset of the StartWorkflow command
    assert ev[0] == e.WorkflowStarted(instance=inst, workflow="etl", version=1, base_time=T0, params={"WHO": "me"})
    assert ev[2] == e.TaskStateChanged(instance=inst, task="extract", state="DISPATCH", attempt=1, task_type="SHELL")
    dispatch = of(ev, e.DispatchTask)[0]
    assert (dispatch.task, dispatch.attempt, dispatch.command) == ("extract", 1, "echo $WHO")
    assert dispatch.env["WHO"] == "me"  # parameters go through the environment, never the script
    assert dispatch.env["DS_DATE"] == "2024-03-04"
    assert dispatch.env["EASYSCHED_INSTANCE"] == inst
    assert m.state.instances[inst].tasks.keys() == {"extract"}


def test_schedule_time_is_the_base_date() -> None:
    m = Master()
    m.define(wf("etl", shell("a")))
    inst = m.start("etl", schedule_time=T0 - 86_400_000)
    assert m.state.instances[inst].base_time == T0 - 86_400_000
    assert of(m.log, e.DispatchTask)[0].env["DS_DATE"] == "2024-03-03"


def test_redefine_adds_a_version_and_running_instances_keep_theirs() -> None:
    m = Master()
    m.define(wf("etl", shell("a")))
    first = m.start("etl")
    ev = m.define(wf("etl", shell("a"), shell("b")))
    assert of(ev, e.WorkflowDefined)[0].version == 2
    second = m.start("etl")
    assert m.state.instances[first].version == 1
    assert m.state.instances[second].version == 2
    m.run_ok(first, "a")
    assert m.wf_state(first) == "SUCCESS"  # version 1 has no task b


def test_invalid_definition_is_rejected_and_names_the_problem() -> None:
    m = Master()
    ev = m.define(wf("etl", shell("a", upstream=["b"]), shell("b", upstream=["a"])))
    assert tags(ev) == ["command_rejected"]
    assert of(ev, e.CommandRejected)[0].command == "define"
    assert "cycle: a -> b -> a" in of(ev, e.CommandRejected)[0].reason
    assert m.state.workflows == {}


def _rejected_without_change(m: Master, cmd: c.Command) -> e.CommandRejected:
    before = m.snapshot_bytes(ignore_clock=True)
    ev = m.send(cmd)
    assert tags(ev) == ["command_rejected"], ev
    assert m.snapshot_bytes(ignore_clock=True) == before
    return of(ev, e.CommandRejected)[0]


def test_start_unknown_workflow_is_rejected() -> None:
    m = Master()
    r = _rejected_without_change(m, c.StartWorkflow(workflow="nope"))
    assert r.command == "start"
    assert "unknown workflow 'nope'" in r.reason


def test_offline_workflow_cannot_start_until_released() -> None:
    m = Master()
    ev = m.define(wf("etl", shell("a")), release=False)
    assert of(ev, e.WorkflowDefined)[0].online is False
    r = _rejected_without_change(m, c.StartWorkflow(workflow="etl"))
    assert "workflow 'etl' is OFFLINE" in r.reason
    assert m.send(c.SetReleaseState(workflow="etl", online=True)) == [
        e.ReleaseStateChanged(workflow="etl", online=True)
    ]
    m.start("etl")
    m.send(c.SetReleaseState(workflow="etl", online=False))
    assert "OFFLINE" in _rejected_without_change(m, c.StartWorkflow(workflow="etl")).reason
    assert (
        "unknown workflow 'ghost'"
        in _rejected_without_change(m, c.SetReleaseState(workflow="ghost", online=True)).reason
    )


@pytest.mark.parametrize("schedule_time", [-1, 2**62])
def test_schedule_time_out_of_range_is_rejected_not_fatal(schedule_time: int) -> None:
    m = Master()
    m.define(wf("etl", shell("a")))
    r = _rejected_without_change(m, c.StartWorkflow(workflow="etl", schedule_time=schedule_time))
    assert "schedule_time" in r.reason
    m.start("etl")  # the master goes on


def test_command_time_out_of_range_is_rejected_not_fatal() -> None:
    m = Master()
    m.define(wf("etl", shell("a", timeout=5)))
    ev = m.send(c.StartWorkflow(workflow="etl", at=2**64 - 1))
    assert tags(ev) == ["command_rejected"]
    assert "at" in of(ev, e.CommandRejected)[0].reason
    ev = m.send(c.CheckDue(now=2**64 - 1))
    assert tags(ev) == ["command_rejected"]
    encode(m.state.snapshot())
    assert m.state.now == T0
    m.start("etl")
    encode(m.log)


def test_heartbeat_records_the_worker() -> None:
    m = Master()
    assert m.send(c.Heartbeat(worker="w1")) == []
    assert m.state.workers == {"w1": T0}


# ---- SHELL -----------------------------------------------------------------------------


def test_shell_chain_succeeds() -> None:
    m = Master()
    m.define(wf("etl", shell("a"), shell("b", upstream=["a"])))
    inst = m.start("etl")
    ev = m.started(inst, "a", pid=101)
    assert ev == [
        e.TaskStateChanged(
            instance=inst, task="a", state="RUNNING_EXECUTION", attempt=1, task_type="SHELL", pid=101, worker="w1"
        )
    ]
    ev = m.finished(inst, "a", exit_code=0)
    assert tags(ev) == ["task_state", "task_state", "dispatch"]
    assert task_states(ev) == ["SUCCESS", "DISPATCH"]
    assert of(ev, e.DispatchTask)[0].task == "b"
    m.started(inst, "b")
    ev = m.finished(inst, "b")
    assert tags(ev) == ["task_state", "workflow_finished"]
    assert ev[-1] == e.WorkflowFinished(
        instance=inst, workflow="etl", state="SUCCESS", base_time=T0, task_states={"a": "SUCCESS", "b": "SUCCESS"}
    )
    assert m.wf_state(inst) == "SUCCESS"
    assert len(m.state.queue) == 0


def test_finished_before_started_report_is_accepted_then_start_is_late() -> None:
    m = Master()
    m.define(wf("etl", shell("a")))
    inst = m.start("etl")
    m.finished(inst, "a")
    ev = m.started(inst, "a")
    assert tags(ev) == ["late_report_ignored"]
    assert of(ev, e.LateReportIgnored)[0].reason == "task is SUCCESS"


def test_duplicate_start_report_is_ignored() -> None:
    m = Master()
    m.define(wf("etl", shell("a")))
    inst = m.start("etl")
    m.started(inst, "a", pid=1)
    ev = m.started(inst, "a", pid=2)
    assert of(ev, e.LateReportIgnored)[0].reason == "duplicate start report"
    assert m.task(inst, "a").pid == 1


def test_retry_without_interval_dispatches_at_once() -> None:
    m = Master()
    m.define(wf("etl", shell("a", retry_times=2)))
    inst = m.start("etl")
    m.started(inst, "a")
    ev = m.finished(inst, "a", exit_code=3)
    assert task_states(ev) == ["DELAY_EXECUTION", "DISPATCH"]
    assert "exit code 3; retry 1 of 2" in of(ev, e.TaskStateChanged)[0].reason
    assert of(ev, e.DispatchTask)[0].attempt == 2
    assert not of(ev, e.TimerSet)
    ev = m.finished(inst, "a", attempt=2, exit_code=1)
    assert of(ev, e.DispatchTask)[0].attempt == 3
    ev = m.finished(inst, "a", attempt=3, exit_code=1)
    assert task_states(ev) == ["FAILURE"]
    assert of(ev, e.WorkflowFinished)[0].state == "FAILURE"


def test_retry_with_interval_waits_in_the_delay_queue() -> None:
    m = Master()
    m.define(wf("etl", shell("a", retry_times=1, retry_interval=30)))
    inst = m.start("etl")
    m.started(inst, "a")
    ev = m.finished(inst, "a", exit_code=1)
    assert tags(ev) == ["task_state", "timer_set"]
    assert ev[1] == e.TimerSet(instance=inst, task="a", kind=RETRY, due=T0 + 30 * SECOND)
    assert m.task(inst, "a").state == "DELAY_EXECUTION"
    assert m.state.queue.pending_for(inst, "a") == [RETRY]
    assert m.tick(29.999) == []
    ev = m.tick(0.001)
    assert tags(ev) == ["timer_fired", "task_state", "dispatch"]
    assert of(ev, e.DispatchTask)[0].attempt == 2
    # A report of the first attempt is stale now.
    ev = m.finished(inst, "a", attempt=1, exit_code=0)
    assert of(ev, e.LateReportIgnored)[0].reason == "attempt 1 is not the current attempt 2"
    m.started(inst, "a", attempt=2)
    ev = m.finished(inst, "a", attempt=2, exit_code=1)
    assert task_states(ev) == ["FAILURE"]  # retries exhausted
    assert not of(ev, e.TimerSet) and not of(ev, e.DispatchTask)
    assert m.wf_state(inst) == "FAILURE"
    assert len(m.state.queue) == 0


def test_timeout_warn_only_warns() -> None:
    m = Master()
    m.define(wf("etl", shell("a", timeout=60)))
    inst = m.start("etl")
    assert of(m.log, e.TimerSet) == [e.TimerSet(instance=inst, task="a", kind=TIMEOUT, due=T0 + 60 * SECOND)]
    m.started(inst, "a")
    ev = m.tick(60)
    assert tags(ev) == ["timer_fired", "task_timed_out"]
    assert of(ev, e.TaskTimedOut)[0].strategy == "WARN"
    assert m.task(inst, "a").state == "RUNNING_EXECUTION"
    ev = m.finished(inst, "a")
    assert m.wf_state(inst) == "SUCCESS"


def test_timeout_timer_is_cancelled_when_the_task_ends() -> None:
    m = Master()
    m.define(wf("etl", shell("a", timeout=60)))
    inst = m.start("etl")
    ev = m.finished(inst, "a")
    assert of(ev, e.TimerCancelled) == [e.TimerCancelled(instance=inst, task="a", kind=TIMEOUT, reason="task SUCCESS")]
    assert m.tick(120) == []


@pytest.mark.parametrize("strategy", ["FAILED", "WARNFAILED"])
def test_timeout_failed_kills_and_never_retries(strategy: str) -> None:
    m = Master()
    m.define(wf("etl", shell("a", timeout=60, timeout_strategy=strategy, retry_times=3), shell("b", upstream=["a"])))
    inst = m.start("etl")
    m.started(inst, "a")
    ev = m.tick(60)
    assert tags(ev) == ["timer_fired", "task_timed_out", "kill_process", "task_state"]
    assert of(ev, e.KillTaskProcess)[0] == e.KillTaskProcess(instance=inst, task="a", attempt=1, reason="timeout")
    assert task_states(ev) == ["FAILURE"]
    assert m.wf_state(inst) == "RUNNING_EXECUTION"  # the process is not confirmed gone yet
    ev = m.finished(inst, "a", exit_code=-15, killed=True)
    assert tags(ev) == ["kill_confirmed", "workflow_finished"]
    assert of(ev, e.WorkflowFinished)[0].state == "FAILURE"
    assert not of(m.log, e.TimerSet, kind=RETRY)
    assert [d.attempt for d in of(m.log, e.DispatchTask)] == [1]


# ---- DEPENDENT -------------------------------------------------------------------------

UP = wf("up", shell("publish"))


def _waiting_flow(*items: object, **kw: object) -> Master:
    m = Master()
    m.define(UP)
    m.define(wf("down", dep("wait", *items, check_interval=10, **kw), shell("load", upstream=["wait"])))  # type: ignore[arg-type]
    return m


def test_dependent_waiting_holds_exactly_one_check_timer() -> None:
    m = _waiting_flow(item("up"), item("up", "publish"))
    inst = m.start("down")
    ev = m.log[-4:]
    assert tags(ev) == ["workflow_state", "task_state", "dependent_checked", "timer_set"]
    assert of(ev, e.DependentChecked)[0].result == "WAITING"
    assert of(ev, e.DependentChecked)[0].detail == "up/today=WAITING, up.publish/today=WAITING"
    assert m.timers() == {(inst, "wait", DEPENDENT_CHECK): T0 + 10 * SECOND}
    assert m.tick(9.999) == []
    for k in range(1, 4):
        ev = m.tick(0.001 if k == 1 else 10)
        assert tags(ev) == ["timer_fired", "dependent_checked", "timer_set"]
        assert m.timers() == {(inst, "wait", DEPENDENT_CHECK): T0 + (k + 1) * 10 * SECOND}
        assert m.state.queue.pending_for(inst, "wait") == [DEPENDENT_CHECK]


def test_dependent_succeeds_when_the_upstream_instance_finishes_in_the_same_partition() -> None:
    m = _waiting_flow(item("up"), item("up", "publish"))
    down = m.start("down")
    up = m.start("up")
    m.tick(10)
    assert m.task(down, "wait").state == "RUNNING_EXECUTION"
    m.run_ok(up, "publish")
    assert m.wf_state(up) == "SUCCESS"
    ev = m.tick(10)
    assert tags(ev) == ["timer_fired", "dependent_checked", "task_state", "task_state", "dispatch"]
    assert of(ev, e.DependentChecked)[0].result == "SUCCESS"
    assert task_states(ev) == ["SUCCESS", "DISPATCH"]
    assert m.timers() == {}


def test_dependent_succeeds_via_upstream_finished_from_another_partition() -> None:
    m = _waiting_flow(item("remote", "publish"))
    down = m.start("down")
    ev = m.send(
        c.UpstreamFinished(
            workflow="remote", instance="3-17", state="SUCCESS", base_time=T0, task_states={"publish": "SUCCESS"}
        )
    )
    assert ev == []  # recorded; the next check sees it
    ev = m.tick(10)
    assert of(ev, e.DependentChecked)[0].result == "SUCCESS"
    assert m.task(down, "wait").state == "SUCCESS"


def test_upstream_outside_the_window_does_not_count() -> None:
    m = _waiting_flow(item("remote"))
    down = m.start("down")
    m.send(c.UpstreamFinished(workflow="remote", instance="3-1", state="SUCCESS", base_time=T0 - 86_400_000))
    m.tick(10)
    assert m.task(down, "wait").state == "RUNNING_EXECUTION"


def test_item_with_a_task_looks_at_that_task_only() -> None:
    m = _waiting_flow(item("remote", "publish"))
    down = m.start("down")
    m.send(
        c.UpstreamFinished(
            workflow="remote",
            instance="3-1",
            state="FAILURE",
            base_time=T0,
            task_states={"publish": "SUCCESS", "x": "FAILURE"},
        )
    )
    m.tick(10)
    assert m.task(down, "wait").state == "SUCCESS"


def test_the_latest_instance_in_the_window_decides() -> None:
    m = _waiting_flow(item("remote"))
    down = m.start("down")
    m.send(c.UpstreamFinished(workflow="remote", instance="3-1", state="SUCCESS", base_time=T0 - 3_600_000))
    m.send(c.UpstreamFinished(workflow="remote", instance="3-2", state="FAILURE", base_time=T0 - 60_000))
    ev = m.tick(10)
    assert of(ev, e.DependentChecked)[0].result == "FAILED"
    assert m.task(down, "wait").state == "FAILURE"
    assert m.wf_state(down) == "FAILURE"


@pytest.mark.parametrize(
    ("relation", "upstreams", "verdict"),
    [
        ("AND", {"a": "SUCCESS", "b": "SUCCESS"}, "SUCCESS"),
        ("AND", {"a": "SUCCESS"}, "WAITING"),
        ("AND", {"a": "SUCCESS", "b": "FAILURE"}, "FAILED"),
        ("AND", {"b": "FAILURE"}, "FAILED"),
        ("OR", {"a": "SUCCESS"}, "SUCCESS"),
        ("OR", {"a": "SUCCESS", "b": "FAILURE"}, "SUCCESS"),
        ("OR", {"b": "FAILURE"}, "WAITING"),
        ("OR", {"a": "FAILURE", "b": "FAILURE"}, "FAILED"),
        ("OR", {}, "WAITING"),
    ],
)
def test_relation_and_or(relation: str, upstreams: dict[str, str], verdict: str) -> None:
    m = _waiting_flow(item("a"), item("b"), relation=relation)
    for name, state in upstreams.items():
        m.send(c.UpstreamFinished(workflow=name, instance=f"9-{name}", state=state, base_time=T0))
    down = m.start("down")
    assert of(m.log, e.DependentChecked)[-1].result == verdict
    expected = {"SUCCESS": "SUCCESS", "WAITING": "RUNNING_EXECUTION", "FAILED": "FAILURE"}[verdict]
    assert m.task(down, "wait").state == expected
    assert bool(m.state.queue.pending_for(down, "wait")) == (verdict == "WAITING")


def test_failure_policy_wait_keeps_checking_until_failure_waiting_time() -> None:
    m = _waiting_flow(item("remote"), failure_policy="WAIT", failure_waiting_time=25)
    m.send(c.UpstreamFinished(workflow="remote", instance="3-1", state="FAILURE", base_time=T0))
    down = m.start("down")
    assert of(m.log, e.DependentChecked)[-1].result == "FAILED"
    assert m.timers() == {(down, "wait", DEPENDENT_CHECK): T0 + 10 * SECOND}
    m.tick(10)
    m.tick(10)
    assert m.task(down, "wait").state == "RUNNING_EXECUTION"  # waited 20 s < 25 s
    ev = m.tick(10)
    assert task_states(ev) == ["FAILURE"]
    assert "dependency failed: remote/today=FAILED" in of(ev, e.TaskStateChanged)[0].reason
    assert m.timers() == {}


def test_failure_policy_wait_succeeds_if_a_rerun_succeeds_in_time() -> None:
    m = _waiting_flow(item("remote"), failure_policy="WAIT", failure_waiting_time=25)
    m.send(c.UpstreamFinished(workflow="remote", instance="3-1", state="FAILURE", base_time=T0))
    down = m.start("down")
    m.tick(10)
    m.send(c.UpstreamFinished(workflow="remote", instance="3-2", state="SUCCESS", base_time=T0 + 1))
    m.tick(10)
    assert m.task(down, "wait").state == "SUCCESS"


def test_failure_policy_fail_fails_at_once() -> None:
    m = _waiting_flow(item("remote"), failure_policy="FAIL")
    m.send(c.UpstreamFinished(workflow="remote", instance="3-1", state="FAILURE", base_time=T0))
    down = m.start("down")
    assert m.task(down, "wait").state == "FAILURE"
    assert m.wf_state(down) == "FAILURE"
    assert m.timers() == {}


def test_dependent_satisfied_at_start_does_not_finish_the_workflow_before_its_siblings_start() -> None:
    m = Master()
    m.send(c.UpstreamFinished(workflow="remote", instance="3-1", state="SUCCESS", base_time=T0))
    m.define(wf("w", dep("ready", item("remote")), shell("work")))
    inst = m.start("w")
    assert of(m.log, e.WorkflowFinished) == []
    assert m.wf_state(inst) == "RUNNING_EXECUTION"
    assert [d.task for d in of(m.log, e.DispatchTask)] == ["work"]
    m.run_ok(inst, "work")
    assert of(m.log, e.WorkflowFinished)[0].state == "SUCCESS"


def test_dependent_satisfied_downstream_does_not_finish_the_workflow_early() -> None:
    m = Master()
    m.send(c.UpstreamFinished(workflow="remote", instance="3-1", state="SUCCESS", base_time=T0))
    m.define(wf("w", shell("a"), dep("ready", item("remote"), upstream=["a"]), shell("b", upstream=["a"])))
    inst = m.start("w")
    m.run_ok(inst, "a")
    assert of(m.log, e.WorkflowFinished) == []
    assert m.task(inst, "b").state == "DISPATCH"
    m.run_ok(inst, "b")
    assert of(m.log, e.WorkflowFinished)[0].state == "SUCCESS"


# ---- DolphinScheduler #16895 -----------------------------------------------------------


def test_16895_stop_removes_the_dependent_check_in_the_same_step() -> None:
    m = Master()
    m.define(
        wf("etl_daily", dep("wait_upstream", item("never_ran", "publish")), shell("load", upstream=["wait_upstream"]))
    )
    inst = m.start("etl_daily")
    m.tick(10)
    m.tick(10)
    assert m.state.queue.pending_for(inst, "wait_upstream") == [DEPENDENT_CHECK]
    ev = m.send(c.StopWorkflow(instance=inst))
    assert tags(ev) == ["workflow_state", "timer_cancelled", "task_state", "workflow_finished"]
    assert ev[0] == e.WorkflowStateChanged(instance=inst, state="READY_STOP", reason="stop requested")
    assert ev[1] == e.TimerCancelled(instance=inst, task="wait_upstream", kind=DEPENDENT_CHECK, reason="task killed")
    assert task_states(ev) == ["KILL"]
    assert of(ev, e.WorkflowFinished)[0].state == "STOP"
    assert m.state.queue.pending_for(inst, "wait_upstream") == []
    assert len(m.state.queue) == 0 and m.state.queue.earliest() is None
    checks = len(of(m.log, e.DependentChecked))
    for seconds in (10, 10, 3600, 86_400):
        assert m.tick(seconds) == []
    assert len(of(m.log, e.DependentChecked)) == checks
    assert of(m.log, e.DispatchTask) == []
    assert m.task(inst, "wait_upstream").state == "KILL"


# ---- kill one task ---------------------------------------------------------------------


def _running(m: Master, *tasks: object, **kw: object) -> str:
    m.define(wf("w", *tasks, **kw))  # type: ignore[arg-type]
    inst = m.start("w")
    for d in of(m.log, e.DispatchTask, instance=inst):
        m.started(inst, d.task, d.attempt)
    return inst


def test_kill_running_shell_task_waits_for_the_confirmation() -> None:
    m = Master()
    inst = _running(m, shell("a", command="sleep 100", timeout=300), shell("b", upstream=["a"]))
    ev = m.send(c.KillTask(instance=inst, task="a"))
    assert tags(ev) == ["timer_cancelled", "task_state", "kill_process"]
    assert of(ev, e.TimerCancelled)[0].kind == TIMEOUT
    assert task_states(ev) == ["KILL"]
    assert of(ev, e.KillTaskProcess)[0] == e.KillTaskProcess(
        instance=inst, task="a", attempt=1, reason="killed by user"
    )
    assert m.task(inst, "a").kill_pending
    assert m.wf_state(inst) == "RUNNING_EXECUTION"
    assert len(m.state.queue) == 0
    # A late start report of the killed attempt changes nothing.
    before = m.snapshot_bytes(ignore_clock=True)
    ev = m.started(inst, "a", pid=999)
    assert ev == [e.LateReportIgnored(instance=inst, task="a", attempt=1, report="task_started", reason="task is KILL")]
    assert m.snapshot_bytes(ignore_clock=True) == before
    # The worker confirms the process group is gone: the workflow can end.
    ev = m.finished(inst, "a", exit_code=-15, killed=True)
    assert ev[0] == e.KillConfirmed(instance=inst, task="a", attempt=1, exit_code=-15)
    assert of(ev, e.WorkflowFinished)[0].state == "FAILURE"
    assert not m.task(inst, "a").kill_pending
    assert m.task(inst, "a").state == "KILL"
    # Any later report is recorded as ignored and changes nothing.
    before = m.snapshot_bytes(ignore_clock=True)
    for ev in (
        m.finished(inst, "a", exit_code=0),
        m.started(inst, "a"),
        m.finished(inst, "a", exit_code=-9, killed=True),
    ):
        assert tags(ev) == ["late_report_ignored"]
    assert m.snapshot_bytes(ignore_clock=True) == before
    assert [d.task for d in of(m.log, e.DispatchTask)] == ["a"]


def test_kill_confirmation_by_task_lost() -> None:
    m = Master()
    inst = _running(m, shell("a"))
    m.send(c.KillTask(instance=inst, task="a"))
    ev = m.send(c.TaskLost(instance=inst, task="a", attempt=1, reason="process gone after restart"))
    assert tags(ev) == ["kill_confirmed", "workflow_finished"]
    assert of(ev, e.KillConfirmed)[0].exit_code == -9


def test_kill_a_shell_task_waiting_for_its_retry() -> None:
    m = Master()
    inst = _running(m, shell("a", retry_times=2, retry_interval=60))
    m.finished(inst, "a", exit_code=1)
    ev = m.send(c.KillTask(instance=inst, task="a"))
    assert tags(ev) == ["timer_cancelled", "task_state", "workflow_finished"]  # no process to kill
    assert of(ev, e.TimerCancelled)[0].kind == RETRY
    assert m.tick(120) == []
    assert [d.attempt for d in of(m.log, e.DispatchTask)] == [1]


def test_kill_a_waiting_dependent_task() -> None:
    m = _waiting_flow(item("ghost"))
    inst = m.start("down")
    ev = m.send(c.KillTask(instance=inst, task="wait"))
    assert tags(ev) == ["timer_cancelled", "task_state", "workflow_finished"]
    assert m.tick(60) == []


def test_kill_rejections_name_the_thing_and_change_nothing() -> None:
    m = Master()
    inst = _running(m, shell("a"), shell("b", upstream=["a"]), shell("c"))
    m.finished(inst, "c")
    assert (
        _rejected_without_change(m, c.KillTask(instance=inst, task="c")).reason
        == "task 'c' of instance 0-1 is already SUCCESS; nothing to kill"
    )
    r = _rejected_without_change(m, c.KillTask(instance="0-999", task="a"))
    assert (r.command, r.reason, r.instance) == ("kill_task", "unknown instance '0-999'", "0-999")
    r = _rejected_without_change(m, c.KillTask(instance=inst, task="nope"))
    assert r.reason == "task 'nope' of instance 0-1 does not exist in this workflow; nothing to kill"
    assert (r.instance, r.task) == (inst, "nope")
    r = _rejected_without_change(m, c.KillTask(instance=inst, task="b"))
    assert r.reason == "task 'b' of instance 0-1 has not been submitted yet; nothing to kill"


def test_reports_for_unknown_targets_are_rejected() -> None:
    m = Master()
    inst = _running(m, shell("a"))
    r = _rejected_without_change(m, c.TaskFinished(instance="0-77", task="a", attempt=1, exit_code=0))
    assert "unknown task 'a' of instance '0-77'" in r.reason
    r = _rejected_without_change(m, c.TaskStarted(instance=inst, task="zz", attempt=1, pid=1))
    assert "unknown task 'zz'" in r.reason


# ---- stop ------------------------------------------------------------------------------


def test_stop_is_final_only_after_every_kill_is_confirmed() -> None:
    m = Master()
    m.define(UP)
    inst = _running(
        m, shell("a"), shell("b", retry_times=1, retry_interval=5), dep("c", item("up")), shell("d", upstream=["a"])
    )
    m.finished(inst, "b", exit_code=1)  # b waits for its retry
    ev = m.send(c.StopWorkflow(instance=inst))
    assert ev[0] == e.WorkflowStateChanged(instance=inst, state="READY_STOP", reason="stop requested")
    assert sorted(t.task for t in of(ev, e.TaskStateChanged, state="KILL")) == ["a", "b", "c"]
    assert [k.task for k in of(ev, e.KillTaskProcess)] == ["a"]  # b and c have no process
    assert sorted((t.task, t.kind) for t in of(ev, e.TimerCancelled)) == [("b", RETRY), ("c", DEPENDENT_CHECK)]
    assert m.wf_state(inst) == "READY_STOP"
    assert len(m.state.queue) == 0
    r = _rejected_without_change(m, c.StopWorkflow(instance=inst))
    assert r.reason == "instance 0-2 is already READY_STOP; nothing to stop"
    assert m.tick(60) == []
    ev = m.finished(inst, "a", exit_code=-15, killed=True)
    assert tags(ev) == ["kill_confirmed", "workflow_finished"]
    assert of(ev, e.WorkflowFinished)[0].state == "STOP"
    assert of(ev, e.WorkflowFinished)[0].task_states == {"a": "KILL", "b": "KILL", "c": "KILL"}
    assert [d.task for d in of(m.log, e.DispatchTask)] == ["a", "b"]
    assert "already STOP" in _rejected_without_change(m, c.StopWorkflow(instance=inst)).reason


def test_stop_of_a_dispatched_but_not_started_task_still_kills_its_process() -> None:
    m = Master()
    m.define(wf("w", shell("a")))
    inst = m.start("w")
    ev = m.send(c.StopWorkflow(instance=inst))
    assert of(ev, e.KillTaskProcess)[0].attempt == 1
    # The worker never started it: it says so, which confirms the kill.
    ev = m.finished(inst, "a", exit_code=-15, killed=True)
    assert of(ev, e.WorkflowFinished)[0].state == "STOP"


def test_unknown_instance_stop_pause_resume_rejected() -> None:
    m = Master()
    for cmd in (c.StopWorkflow(instance="0-5"), c.PauseWorkflow(instance="0-5"), c.ResumeWorkflow(instance="0-5")):
        assert _rejected_without_change(m, cmd).reason == "unknown instance '0-5'"


# ---- pause / resume --------------------------------------------------------------------


def test_pause_lets_running_shell_finish_and_holds_downstream() -> None:
    m = Master()
    m.define(UP)
    inst = _running(m, shell("a", timeout=600), shell("b", upstream=["a"]), dep("c", item("up")))
    ev = m.send(c.PauseWorkflow(instance=inst))
    assert tags(ev) == ["workflow_state", "timer_cancelled", "task_state"]
    assert ev[0].state == "READY_PAUSE"  # type: ignore[union-attr]
    assert ev[1] == e.TimerCancelled(instance=inst, task="c", kind=DEPENDENT_CHECK, reason="workflow paused")
    assert ev[2].state == "PAUSE" and ev[2].task == "c"  # type: ignore[union-attr]
    # The running SHELL keeps its timeout: it is still running.
    assert m.timers() == {(inst, "a", TIMEOUT): T0 + 600 * SECOND}
    assert m.tick(10) == []  # no DEPENDENT check while paused
    assert "only a running instance can be paused" in _rejected_without_change(m, c.PauseWorkflow(instance=inst)).reason
    ev = m.finished(inst, "a")
    assert tags(ev) == ["timer_cancelled", "task_state", "workflow_state"]
    assert task_states(ev) == ["SUCCESS"]
    assert ev[-1] == e.WorkflowStateChanged(instance=inst, state="PAUSE")
    assert of(m.log, e.DispatchTask, task="b") == []
    assert m.tick(3600) == []
    # Resume continues from there: the DEPENDENT checks again, b is dispatched.
    ev = m.send(c.ResumeWorkflow(instance=inst))
    assert ev[0] == e.WorkflowStateChanged(instance=inst, state="RUNNING_EXECUTION", reason="resumed")
    assert of(ev, e.DependentChecked, task="c")[0].result == "WAITING"
    assert of(ev, e.TimerSet) == [e.TimerSet(instance=inst, task="c", kind=DEPENDENT_CHECK, due=m.now + 10 * SECOND)]
    assert [d.task for d in of(ev, e.DispatchTask)] == ["b"]
    assert (
        "only a paused instance can be resumed" in _rejected_without_change(m, c.ResumeWorkflow(instance=inst)).reason
    )


def test_pause_with_nothing_running_is_pause_at_once() -> None:
    m = _waiting_flow(item("ghost"))
    inst = m.start("down")
    ev = m.send(c.PauseWorkflow(instance=inst))
    assert tags(ev) == ["workflow_state", "timer_cancelled", "task_state", "workflow_state"]
    assert m.wf_state(inst) == "PAUSE"
    assert len(m.state.queue) == 0
    ev = m.send(c.ResumeWorkflow(instance=inst))
    assert tags(ev) == ["workflow_state", "task_state", "dependent_checked", "timer_set"]
    assert m.state.queue.pending_for(inst, "wait") == [DEPENDENT_CHECK]


def test_resume_from_ready_pause_before_the_running_task_ends() -> None:
    m = Master()
    inst = _running(m, shell("a"), shell("b", upstream=["a"]))
    m.send(c.PauseWorkflow(instance=inst))
    ev = m.send(c.ResumeWorkflow(instance=inst))
    assert tags(ev) == ["workflow_state"]
    m.finished(inst, "a")
    assert m.task(inst, "b").state == "DISPATCH"


def test_resumed_dependent_that_succeeds_does_not_finish_the_workflow_early() -> None:
    m = Master()
    inst = _running(m, shell("a"), shell("b", upstream=["a"]), dep("c", item("remote")))
    m.send(c.PauseWorkflow(instance=inst))
    m.finished(inst, "a")
    assert m.wf_state(inst) == "PAUSE"
    m.send(c.UpstreamFinished(workflow="remote", instance="3-1", state="SUCCESS", base_time=T0))
    ev = m.send(c.ResumeWorkflow(instance=inst))
    assert of(ev, e.WorkflowFinished) == []
    assert [d.task for d in of(ev, e.DispatchTask)] == ["b"]
    m.run_ok(inst, "b")
    assert m.wf_state(inst) == "SUCCESS"


def test_pause_cancels_a_retry_wait_and_resume_dispatches_the_next_attempt() -> None:
    m = Master()
    inst = _running(m, shell("a", retry_times=1, retry_interval=30))
    m.finished(inst, "a", exit_code=1)
    ev = m.send(c.PauseWorkflow(instance=inst))
    assert [(t.kind, t.reason) for t in of(ev, e.TimerCancelled)] == [(RETRY, "workflow paused")]
    assert m.wf_state(inst) == "PAUSE"
    assert m.tick(60) == []
    ev = m.send(c.ResumeWorkflow(instance=inst))
    assert [d.attempt for d in of(ev, e.DispatchTask)] == [2]


def test_a_failed_attempt_during_pause_holds_its_retry() -> None:
    m = Master()
    inst = _running(m, shell("a", retry_times=1, retry_interval=30))
    m.send(c.PauseWorkflow(instance=inst))
    ev = m.finished(inst, "a", exit_code=1)
    assert task_states(ev) == ["PAUSE"]
    assert not of(ev, e.TimerSet) and not of(ev, e.DispatchTask)
    assert m.wf_state(inst) == "PAUSE"
    ev = m.send(c.ResumeWorkflow(instance=inst))
    assert [d.attempt for d in of(ev, e.DispatchTask)] == [2]


def test_stop_a_paused_instance() -> None:
    m = _waiting_flow(item("ghost"))
    inst = m.start("down")
    m.send(c.PauseWorkflow(instance=inst))
    ev = m.send(c.StopWorkflow(instance=inst))
    assert tags(ev) == ["workflow_state", "task_state", "workflow_finished"]
    assert of(ev, e.WorkflowFinished)[0].state == "STOP"
    assert (
        "is STOP; only a paused instance can be resumed"
        in _rejected_without_change(m, c.ResumeWorkflow(instance=inst)).reason
    )


# ---- failure strategy ------------------------------------------------------------------


def test_failure_strategy_end_kills_the_siblings() -> None:
    m = Master()
    inst = _running(
        m,
        shell("a"),
        shell("b", timeout=60),
        dep("c", item("ghost")),
        shell("d", upstream=["b"]),
        failure_strategy="END",
    )
    ev = m.finished(inst, "a", exit_code=2)
    assert task_states(ev) == ["FAILURE", "KILL", "KILL"]
    assert [(t.task, t.reason) for t in of(ev, e.TaskStateChanged, state="KILL")] == [
        ("b", "failure strategy END after a failed"),
        ("c", "failure strategy END after a failed"),
    ]
    assert [k.task for k in of(ev, e.KillTaskProcess)] == ["b"]
    assert len(m.state.queue) == 0
    assert m.wf_state(inst) == "RUNNING_EXECUTION"  # until b's process is confirmed gone
    ev = m.finished(inst, "b", exit_code=-15, killed=True)
    assert of(ev, e.WorkflowFinished)[0].state == "FAILURE"
    assert of(m.log, e.DispatchTask, task="d") == []


def test_failure_strategy_continue_lets_other_branches_run() -> None:
    m = Master()
    inst = _running(m, shell("a"), shell("b"), shell("c", upstream=["b"]))
    ev = m.finished(inst, "a", exit_code=2)
    assert task_states(ev) == ["FAILURE"]
    m.finished(inst, "b")
    assert m.task(inst, "c").state == "DISPATCH"
    ev = m.finished(inst, "c")
    assert of(ev, e.WorkflowFinished)[0].state == "FAILURE"


def test_timers_due_in_one_tick_never_act_on_a_task_killed_earlier_in_that_tick() -> None:
    # a times out (FAILED) and, by failure strategy END, kills b and c, whose own timers are
    # due in the same CheckDue: b's retry and c's dependent check must not run.
    m = Master()
    inst = _running(
        m,
        shell("a", timeout=10, timeout_strategy="FAILED"),
        shell("b", retry_times=1, retry_interval=10),
        dep("c", item("ghost"), check_interval=10),
        failure_strategy="END",
    )
    m.finished(inst, "b", exit_code=1)
    assert sorted(m.timers().values()) == [T0 + 10 * SECOND] * 3
    ev = m.tick(10)
    assert [t.task for t in of(ev, e.TimerFired)] == ["a"]
    assert sorted((t.task, t.kind) for t in of(ev, e.TimerCancelled)) == [("b", RETRY), ("c", DEPENDENT_CHECK)]
    assert of(ev, e.DispatchTask) == [] and of(ev, e.DependentChecked) == [] and of(ev, e.TimerSet) == []
    assert m.task(inst, "b").state == "KILL" and m.task(inst, "c").state == "KILL"
    assert len(m.state.queue) == 0


# ---- restarts: lost and adopted processes ----------------------------------------------


def test_task_lost_needs_fault_tolerance_and_runs_a_new_attempt() -> None:
    m = Master()
    inst = _running(m, shell("a", timeout=60))
    m.tick(5)
    ev = m.send(c.TaskLost(instance=inst, task="a", attempt=1, reason="worker restarted; process gone"))
    assert task_states(ev) == ["NEED_FAULT_TOLERANCE", "DISPATCH"]
    assert of(ev, e.TaskStateChanged)[0].reason == "worker restarted; process gone"
    assert of(ev, e.DispatchTask)[0].attempt == 2
    assert of(ev, e.TimerCancelled)[0].reason == "attempt lost"
    assert m.timers() == {(inst, "a", TIMEOUT): m.now + 60 * SECOND}
    ev = m.send(c.TaskLost(instance=inst, task="a", attempt=1, reason="again"))
    assert tags(ev) == ["late_report_ignored"]


def test_task_lost_while_pausing_holds_the_rerun() -> None:
    m = Master()
    inst = _running(m, shell("a"))
    m.send(c.PauseWorkflow(instance=inst))
    ev = m.send(c.TaskLost(instance=inst, task="a", attempt=1, reason="gone"))
    assert task_states(ev) == ["NEED_FAULT_TOLERANCE", "PAUSE"]
    assert of(ev, e.DispatchTask) == []
    assert m.wf_state(inst) == "PAUSE"


def test_task_adopted_is_running_with_its_pid() -> None:
    m = Master()
    m.define(wf("w", shell("a")))
    inst = m.start("w")
    ev = m.send(c.TaskAdopted(instance=inst, task="a", attempt=1, pid=777, worker="w2"))
    assert ev == [
        e.TaskStateChanged(
            instance=inst,
            task="a",
            state="RUNNING_EXECUTION",
            attempt=1,
            task_type="SHELL",
            reason="process adopted after a restart",
            pid=777,
            worker="w2",
        )
    ]
    assert (m.task(inst, "a").pid, m.task(inst, "a").worker) == (777, "w2")
    ev = m.send(c.TaskAdopted(instance=inst, task="a", attempt=2, pid=1))
    assert of(ev, e.LateReportIgnored)[0].reason == "attempt 2 is not the current attempt 1"


# ---- records and sequence --------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc1",  # never used in msgpack
        b"",
        encode({"type": "format_disk", "at": 1}),
        encode({"type": "stop", "at": 1}),  # missing instance
        encode({"type": "check_due", "now": "soon"}),
        encode({"type": "define", "definition": {"name": "w", "tasks": [{"name": "a", "type": "PYTHON"}]}}),
    ],
)
def test_malformed_record_is_rejected_and_the_master_goes_on(payload: bytes) -> None:
    m = Master()
    m.define(wf("w", shell("a")))
    before = m.snapshot_bytes(ignore_clock=True)
    ev = m.send_record(payload)
    assert len(ev) == 1 and isinstance(ev[0], e.CommandRejected)
    assert ev[0].command == "?"
    assert ev[0].reason.startswith("malformed command record: ")
    assert ev[0].reason.endswith("(offset 1)")
    assert m.snapshot_bytes(ignore_clock=True) == before
    assert m.state.last_offset == 1
    ev = m.send_record(encode(c.StartWorkflow(workflow="w", at=T0)))
    assert of(ev, e.WorkflowStarted)[0].instance == "0-2"


def test_step_record_decodes_a_good_record() -> None:
    state = State()
    _, events, tag = step_record(state, encode(c.Heartbeat(worker="w9", at=5)), 0)
    assert (events, tag, state.workers) == ([], "heartbeat", {"w9": 5})


def test_repeated_or_backward_offset_is_a_sequence_error() -> None:
    state = State()
    step(state, c.Heartbeat(worker="w", at=1), 3)
    before = encode(state.snapshot())
    for offset in (3, 2):
        with pytest.raises(SequenceError, match=f"offset {offset} does not follow the last applied offset 3"):
            step(state, c.Heartbeat(worker="x", at=2), offset)
        with pytest.raises(SequenceError):
            step_record(state, encode(c.Heartbeat(worker="x", at=2)), offset)
        with pytest.raises(SequenceError):
            reject_record(state, offset, "corrupt")
    assert encode(state.snapshot()) == before
    step(state, c.Heartbeat(worker="w", at=1), 7)  # gaps forward are fine (compacted or other keys)
    assert state.last_offset == 7


def test_time_never_goes_backwards() -> None:
    m = Master()
    m.send(c.Heartbeat(worker="w", at=T0 + 5000))
    m.send(c.Heartbeat(worker="w", at=T0))
    m.send(c.CheckDue(now=T0 + 1, at=T0 + 1))
    assert m.state.now == T0 + 5000


def test_snapshot_round_trips_through_msgpack() -> None:
    m = Master()
    m.define(UP)
    inst = _running(m, shell("a", timeout=9, retry_times=1), dep("c", item("up")))
    m.finished(inst, "a", exit_code=1)
    raw = encode(m.state.snapshot())
    from easysched_es.core.codec import decode_snapshot

    restored = State.restore(decode_snapshot(raw))
    assert encode(restored.snapshot()) == raw
    assert msgspec.msgpack.decode(raw)["timers"]


def test_pending_effects_after_a_restart_are_the_open_attempts() -> None:
    from easysched_es.core.codec import decode_snapshot
    from easysched_es.core.step import pending_effects

    m = Master()
    inst = _running(m, shell("a"), shell("b"), shell("c"), shell("d", upstream=["a"]))
    m.finished(inst, "c")
    m.send(c.KillTask(instance=inst, task="b"))
    restored = State.restore(decode_snapshot(encode(m.state.snapshot())))
    effects = pending_effects(restored)
    assert [(type(ev).__name__, ev.task, ev.attempt) for ev in effects] == [
        ("DispatchTask", "a", 1),
        ("KillTaskProcess", "b", 1),
    ]
    assert encode(effects[0]) == encode(of(m.log, e.DispatchTask, task="a")[0])  # the same dispatch, again


# ---- workers that stop heartbeating ----------------------------------------------------


def test_a_worker_silent_past_its_timeout_loses_its_tasks_at_the_next_check_due() -> None:
    m = Master()
    m.send(c.Heartbeat(worker="w1", timeout_ms=30 * SECOND))
    inst = _running(m, shell("a", command="sleep 100"), shell("b", command="sleep 100"))
    m.send(c.KillTask(instance=inst, task="b"))  # its kill is still unconfirmed when w1 vanishes
    assert m.task(inst, "b").kill_pending
    assert task_states(m.tick(29)) == []  # within the timeout: nothing happens
    m.send(c.Heartbeat(worker="w2", timeout_ms=30 * SECOND))
    ev = m.tick(2)
    assert task_states(ev, "a") == ["NEED_FAULT_TOLERANCE", "DISPATCH"]
    assert "worker w1 lost" in of(ev, e.TaskStateChanged, task="a")[0].reason
    assert of(ev, e.DispatchTask)[0].attempt == 2
    assert of(ev, e.KillConfirmed, task="b") != [] and not m.task(inst, "b").kill_pending
    assert "w1" not in m.state.worker_timeouts and "w2" in m.state.worker_timeouts
    # A report from the lost attempt that arrives after all is recorded and ignored.
    assert tags(m.finished(inst, "a", attempt=1)) == ["late_report_ignored"]


def test_a_heartbeat_without_timeout_stops_the_watch() -> None:
    m = Master()
    m.send(c.Heartbeat(worker="w1", timeout_ms=SECOND))
    inst = _running(m, shell("a", command="sleep 100"))
    m.send(c.Heartbeat(worker="w1"))
    assert task_states(m.tick(60)) == []
    assert m.task(inst, "a").state == "RUNNING_EXECUTION"


# ---- claims (Kafka workers: the first claim of an attempt wins) -----------------------------


def _claim(m: Master, inst: str, worker: str, attempt: int = 1, task: str = "a") -> list[e.Event]:
    return m.send(c.ClaimAttempt(instance=inst, task=task, attempt=attempt, worker=worker))


def _dispatched(m: Master, *tasks: ShellTask) -> str:
    m.define(wf("etl", *tasks))
    return m.start("etl")


def test_the_first_claim_wins_and_carries_the_dispatch() -> None:
    m = Master()
    inst = _dispatched(m, shell("a", command="echo hi", env={"X": "1"}))
    ev = _claim(m, inst, "wa")
    assert tags(ev) == ["attempt_claimed"]
    claimed = of(ev, e.AttemptClaimed)[0]
    assert (claimed.instance, claimed.task, claimed.attempt, claimed.worker) == (inst, "a", 1, "wa")
    assert encode(claimed.dispatch) == encode(of(m.log, e.DispatchTask, task="a")[0])
    assert m.task(inst, "a").worker == "wa" and m.task(inst, "a").state == "DISPATCH"
    assert msgspec.msgpack.decode(encode(claimed), type=e.Event) == claimed


def test_a_second_claim_is_ignored_and_changes_nothing() -> None:
    m = Master()
    inst = _dispatched(m, shell("a"))
    _claim(m, inst, "wa")
    before = m.snapshot_bytes(ignore_clock=True)
    for worker in ("wb", "wa"):
        ev = _claim(m, inst, worker)
        assert tags(ev) == ["late_report_ignored"]
        ignored = of(ev, e.LateReportIgnored)[0]
        assert ignored.report == "claim_attempt" and "already claimed by worker wa" in ignored.reason
    assert m.snapshot_bytes(ignore_clock=True) == before
    # A claim of a stale attempt, or after the start, is ignored as well.
    assert "not the current attempt" in of(_claim(m, inst, "wb", attempt=7), e.LateReportIgnored)[0].reason
    m.send(c.TaskStarted(instance=inst, task="a", attempt=1, pid=7, worker="wa"))
    assert "RUNNING_EXECUTION" in of(_claim(m, inst, "wb"), e.LateReportIgnored)[0].reason
    assert tags(m.send(c.ClaimAttempt(instance=inst, task="a", attempt=1, worker=""))) == ["command_rejected"]


def test_a_claim_after_a_kill_is_ignored() -> None:
    m = Master()
    inst = _dispatched(m, shell("a"), shell("b"))
    _claim(m, inst, "wa", task="b")
    m.send(c.KillTask(instance=inst, task="a"))
    m.send(c.KillTask(instance=inst, task="b"))
    # b was claimed before the kill: its claimant must confirm the kill; a late claim changes nothing.
    ev = _claim(m, inst, "wb", task="b")
    assert tags(ev) == ["late_report_ignored"] and "task is KILL" in of(ev, e.LateReportIgnored)[0].reason
    assert m.task(inst, "b").kill_pending
    # a was never claimed: no process can exist, so the losing claim confirms its kill.
    ev = _claim(m, inst, "wb", task="a")
    assert tags(ev) == ["late_report_ignored", "kill_confirmed"]
    assert "task is KILL" in of(ev, e.LateReportIgnored)[0].reason
    assert not m.task(inst, "a").kill_pending and m.task(inst, "a").worker is None
    assert of(m.log, e.AttemptClaimed, task="a") == []
    ev = m.finished(inst, "b", exit_code=-15, killed=True)
    assert tags(ev)[0] == "kill_confirmed" and m.wf_state(inst) == "FAILURE"


def test_a_start_from_a_worker_that_is_not_the_claimant_is_ignored() -> None:
    m = Master()
    inst = _dispatched(m, shell("a"))
    _claim(m, inst, "wa")
    for cmd in (c.TaskStarted(instance=inst, task="a", attempt=1, pid=9, worker="wb"),
                c.TaskAdopted(instance=inst, task="a", attempt=1, pid=9, worker="wb")):
        ev = m.send(cmd)
        assert tags(ev) == ["late_report_ignored"]
        assert "claimed by worker wa" in of(ev, e.LateReportIgnored)[0].reason
    assert m.task(inst, "a").state == "DISPATCH" and m.task(inst, "a").pid is None
    ev = m.send(c.TaskStarted(instance=inst, task="a", attempt=1, pid=8, worker="wa"))
    assert task_states(ev) == ["RUNNING_EXECUTION"] and m.task(inst, "a").pid == 8


def test_a_lost_claimant_that_never_started_the_attempt_has_it_rerun() -> None:
    m = Master()
    m.send(c.Heartbeat(worker="wa", timeout_ms=10 * SECOND))
    inst = _dispatched(m, shell("a"))
    _claim(m, inst, "wa")
    m.send(c.Heartbeat(worker="wb", timeout_ms=60 * SECOND))
    ev = m.tick(11)
    assert task_states(ev, "a") == ["NEED_FAULT_TOLERANCE", "DISPATCH"]
    assert "worker wa lost" in of(ev, e.TaskStateChanged, task="a")[0].reason
    assert of(ev, e.DispatchTask)[0].attempt == 2 and m.task(inst, "a").worker is None
    assert tags(_claim(m, inst, "wa", attempt=1)) == ["late_report_ignored"]
    assert of(_claim(m, inst, "wb", attempt=2), e.AttemptClaimed)[0].worker == "wb"
    m.send(c.TaskStarted(instance=inst, task="a", attempt=2, pid=5, worker="wb"))
    m.send(c.TaskFinished(instance=inst, task="a", attempt=2, exit_code=0, worker="wb"))
    assert m.wf_state(inst) == "SUCCESS"
