"""Rerun (REPEAT_RUNNING), recover (START_FAILURE_TASK_PROCESS) and force-success, through the fold.

Time moves only by the CheckDue times the tests choose (`Master.tick`).
"""

from __future__ import annotations

from easysched_es.core import commands as c
from easysched_es.core import events as e
from tests.core.helpers import Master, of, shell, wf


def _dispatched(events: list[e.Event]) -> list[tuple[str, int]]:
    return [(d.task, d.attempt) for d in of(events, e.DispatchTask)]


def _rejected(events: list[e.Event]) -> str:
    (rej,) = of(events, e.CommandRejected)
    return rej.reason


def test_rerun_runs_every_task_again_and_attempt_numbers_go_on() -> None:
    m = Master()
    m.define(wf("etl", shell("a"), shell("b", upstream=["a"])))
    i = m.start("etl")
    m.run_ok(i, "a")
    m.run_ok(i, "b")
    assert m.wf_state(i) == "SUCCESS"
    ev = m.send(c.RerunWorkflow(instance=i))
    (reopened,) = of(ev, e.WorkflowReopened)
    assert reopened.command_type == "REPEAT_RUNNING" and reopened.tasks == ["a", "b"] and reopened.kept == 0
    assert m.wf_state(i) == "RUNNING_EXECUTION"
    assert _dispatched(ev) == [("a", 2)]
    # A late report of the old run's attempt changes nothing.
    late = m.finished(i, "a", attempt=1, exit_code=1)
    assert of(late, e.LateReportIgnored) and m.task(i, "a").state == "DISPATCH"
    assert _dispatched(m.run_ok(i, "a", attempt=2)) == [("b", 2)]
    done = m.run_ok(i, "b", attempt=2)
    assert of(done, e.WorkflowFinished, state="SUCCESS")
    assert m.state.upstream["etl"][i].state == "SUCCESS"


def test_retries_count_afresh_after_a_rerun() -> None:
    m = Master()
    m.define(wf("etl", shell("a", retry_times=1, retry_interval=30)))
    i = m.start("etl")
    m.finished(i, "a", attempt=1, exit_code=1)
    assert _dispatched(m.tick(30)) == [("a", 2)]
    m.finished(i, "a", attempt=2, exit_code=1)
    assert m.wf_state(i) == "FAILURE"
    assert _dispatched(m.send(c.RerunWorkflow(instance=i))) == [("a", 3)]
    ev = m.finished(i, "a", attempt=3, exit_code=1)
    assert "retry 1 of 1" in of(ev, e.TaskStateChanged)[-1].reason
    assert m.timers() == {(i, "a", "RETRY"): m.now + 30_000}
    assert not _dispatched(m.tick(29))
    assert _dispatched(m.tick(1)) == [("a", 4)]
    assert of(m.finished(i, "a", attempt=4, exit_code=1), e.WorkflowFinished, state="FAILURE")
    assert m.timers() == {}


def test_recover_reruns_failed_tasks_and_their_downstream_keeping_successes() -> None:
    m = Master()
    m.define(wf("etl", shell("a"), shell("b", upstream=["a"]), shell("c", upstream=["b"]), shell("d")))
    i = m.start("etl")
    m.run_ok(i, "d")
    m.run_ok(i, "a")
    m.finished(i, "b", exit_code=2)
    assert m.wf_state(i) == "FAILURE" and "c" not in m.state.instances[i].tasks
    ev = m.send(c.RecoverWorkflow(instance=i))
    (reopened,) = of(ev, e.WorkflowReopened)
    assert reopened.command_type == "START_FAILURE_TASK_PROCESS" and reopened.tasks == ["b"] and reopened.kept == 2
    assert _dispatched(ev) == [("b", 2)]
    assert m.task(i, "a").state == "SUCCESS" and m.task(i, "d").state == "SUCCESS"
    assert _dispatched(m.run_ok(i, "b", attempt=2)) == [("c", 1)]
    assert of(m.run_ok(i, "c"), e.WorkflowFinished, state="SUCCESS")


def test_recover_reruns_killed_tasks_and_what_follows_a_failure() -> None:
    m = Master()
    m.define(wf("etl", shell("a"), shell("b"), shell("c", upstream=["a"]), shell("e", upstream=["b"]),
                failure_strategy="END"))
    i = m.start("etl")
    m.started(i, "a")
    m.run_ok(i, "b")
    m.started(i, "e")
    m.finished(i, "e", exit_code=1)  # END: a is killed
    assert m.task(i, "a").state == "KILL"
    m.finished(i, "a", killed=True, exit_code=-15)
    assert m.wf_state(i) == "FAILURE"
    ev = m.send(c.RecoverWorkflow(instance=i))
    assert of(ev, e.WorkflowReopened)[0].tasks == ["a", "e"]
    assert sorted(_dispatched(ev)) == [("a", 2), ("e", 2)]
    assert m.task(i, "b").attempt == 1 and m.task(i, "b").state == "SUCCESS"


def test_force_success_lets_recover_run_the_downstream() -> None:
    m = Master()
    m.define(wf("etl", shell("a"), shell("b", upstream=["a"])))
    i = m.start("etl")
    m.finished(i, "a", exit_code=1)
    assert m.wf_state(i) == "FAILURE"
    ev = m.send(c.ForceTaskSuccess(instance=i, task="a"))
    assert of(ev, e.TaskStateChanged, task="a", state="FORCED_SUCCESS")
    assert not _dispatched(ev) and m.wf_state(i) == "FAILURE"
    assert m.state.upstream["etl"][i].task_states["a"] == "FORCED_SUCCESS"
    again = m.send(c.ForceTaskSuccess(instance=i, task="a"))
    assert "is FORCED_SUCCESS" in _rejected(again)
    ev = m.send(c.RecoverWorkflow(instance=i))
    assert of(ev, e.WorkflowReopened)[0].tasks == [] and _dispatched(ev) == [("b", 1)]
    assert of(m.run_ok(i, "b"), e.WorkflowFinished, state="SUCCESS")


def test_recover_of_a_forced_leaf_finishes_at_once() -> None:
    m = Master()
    m.define(wf("etl", shell("a")))
    i = m.start("etl")
    m.finished(i, "a", exit_code=1)
    m.send(c.ForceTaskSuccess(instance=i, task="a"))
    ev = m.send(c.RecoverWorkflow(instance=i))
    assert of(ev, e.WorkflowFinished, state="SUCCESS") and not _dispatched(ev)


def test_what_cannot_run_again_is_refused_with_a_reason() -> None:
    m = Master()
    m.define(wf("etl", shell("a"), shell("b", upstream=["a"])))
    i = m.start("etl")
    assert "only a finished instance" in _rejected(m.send(c.RerunWorkflow(instance=i)))
    assert "only a finished instance" in _rejected(m.send(c.RecoverWorkflow(instance=i)))
    assert "only a finished instance" in _rejected(m.send(c.ForceTaskSuccess(instance=i, task="a")))
    assert "unknown instance" in _rejected(m.send(c.RerunWorkflow(instance="0-999")))
    m.run_ok(i, "a")
    m.run_ok(i, "b")
    assert "nothing to recover" in _rejected(m.send(c.RecoverWorkflow(instance=i)))
    assert "is SUCCESS" in _rejected(m.send(c.ForceTaskSuccess(instance=i, task="a")))
    assert "does not exist" in _rejected(m.send(c.ForceTaskSuccess(instance=i, task="zz")))
    m.send(c.SetReleaseState(workflow="etl", online=False))
    assert "OFFLINE" in _rejected(m.send(c.RerunWorkflow(instance=i)))
    assert m.wf_state(i) == "SUCCESS"


def test_max_active_instances_refuses_a_rerun_while_full() -> None:
    m = Master()
    m.define(wf("etl", shell("a"), max_active_instances=1))
    i = m.start("etl")
    m.run_ok(i, "a")
    j = m.start("etl")
    assert "max_active_instances 1" in _rejected(m.send(c.RerunWorkflow(instance=i)))
    m.run_ok(j, "a")
    assert _dispatched(m.send(c.RerunWorkflow(instance=i))) == [("a", 2)]
    k = m.start("etl")
    assert m.wf_state(k) == "SERIAL_WAIT"  # the rerun counts as active


def test_stop_after_recover_keeps_section_6() -> None:
    m = Master()
    m.define(wf("etl", shell("a", timeout=60, retry_times=2, retry_interval=5)))
    i = m.start("etl")
    m.finished(i, "a", exit_code=1)
    m.tick(5)
    m.finished(i, "a", attempt=2, exit_code=1)
    m.tick(5)
    m.finished(i, "a", attempt=3, exit_code=1)
    assert m.wf_state(i) == "FAILURE" and m.timers() == {}
    ev = m.send(c.RecoverWorkflow(instance=i))
    assert _dispatched(ev) == [("a", 4)]
    assert m.timers() == {(i, "a", "TIMEOUT"): m.now + 60_000}
    m.started(i, "a", attempt=4)
    ev = m.send(c.StopWorkflow(instance=i))
    assert of(ev, e.KillTaskProcess, task="a", attempt=4)
    assert m.timers() == {} and m.wf_state(i) == "READY_STOP"
    assert not _dispatched(m.tick(3600))
    m.finished(i, "a", attempt=4, killed=True, exit_code=-15)
    assert m.wf_state(i) == "STOP"
    # A stopped instance recovers its killed task, with fresh retries.
    assert _dispatched(m.send(c.RecoverWorkflow(instance=i))) == [("a", 5)]
    m.finished(i, "a", attempt=5, exit_code=1)
    assert m.timers() == {(i, "a", "RETRY"): m.now + 5_000}
    m.send(c.KillTask(instance=i, task="a"))
    assert m.timers() == {} and not _dispatched(m.tick(60)) and m.wf_state(i) == "FAILURE"


def test_replay_of_a_recover_is_byte_identical() -> None:
    def run() -> bytes:
        m = Master()
        m.define(wf("etl", shell("a"), shell("b", upstream=["a"])))
        i = m.start("etl")
        m.finished(i, "a", exit_code=1)
        m.send(c.RecoverWorkflow(instance=i))
        m.run_ok(i, "a", attempt=2)
        m.send(c.KillTask(instance=i, task="b"))
        m.send(c.RerunWorkflow(instance=i))
        return m.snapshot_bytes()

    assert run() == run()
