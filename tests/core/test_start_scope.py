"""`start --from-task T --scope task|pre|post` in the fold (DolphinScheduler TASK_ONLY, TASK_PRE, TASK_POST)."""

from __future__ import annotations

from easysched_es.core import commands as c
from easysched_es.core import events as e
from tests.core.helpers import Master, of, shell, wf

# a -> b -> c, a -> d, and an unrelated x
FLOW = wf("etl", shell("a"), shell("b", upstream=["a"]), shell("c", upstream=["b"]), shell("d", upstream=["a"]),
          shell("x", timeout=60))


def _start(m: Master, *tasks: str, scope: str = "post") -> tuple[str, list[e.Event]]:
    ev = m.send(c.StartWorkflow(workflow="etl", from_tasks=list(tasks), scope=scope))
    (started,) = of(ev, e.WorkflowStarted)
    return started.instance, ev


def _dispatched(events: list[e.Event]) -> list[str]:
    return [d.task for d in of(events, e.DispatchTask)]


def test_post_runs_the_task_and_its_downstream_only() -> None:
    m = Master()
    m.define(FLOW)
    i, ev = _start(m, "b")
    assert of(ev, e.WorkflowStarted)[0].only == ["b", "c"]
    assert _dispatched(ev) == ["b"]  # a did not run: outside the run, it counts as absent
    assert _dispatched(m.run_ok(i, "b")) == ["c"]
    done = m.run_ok(i, "c")
    (fin,) = of(done, e.WorkflowFinished)
    assert fin.state == "SUCCESS" and fin.task_states == {"b": "SUCCESS", "c": "SUCCESS"}


def test_pre_runs_the_task_after_its_upstreams_and_nothing_below() -> None:
    m = Master()
    m.define(FLOW)
    i, ev = _start(m, "c", scope="pre")
    assert _dispatched(ev) == ["a"]
    assert _dispatched(m.run_ok(i, "a")) == ["b"]  # d is downstream of a but not upstream of c
    assert _dispatched(m.run_ok(i, "b")) == ["c"]
    assert of(m.run_ok(i, "c"), e.WorkflowFinished, state="SUCCESS")


def test_task_only_and_several_start_tasks() -> None:
    m = Master()
    m.define(FLOW)
    i, ev = _start(m, "b", scope="TASK_ONLY")
    assert _dispatched(ev) == ["b"]
    assert of(m.run_ok(i, "b"), e.WorkflowFinished, state="SUCCESS")
    j, ev = _start(m, "d", "x", scope="task")
    assert sorted(_dispatched(ev)) == ["d", "x"]
    m.run_ok(j, "d")
    assert of(m.run_ok(j, "x"), e.WorkflowFinished, state="SUCCESS")


def test_impossible_starts_are_refused() -> None:
    m = Master()
    m.define(FLOW)
    (rej,) = of(m.send(c.StartWorkflow(workflow="etl", from_tasks=["nope"])), e.CommandRejected)
    assert "has no task 'nope'" in rej.reason
    (rej,) = of(m.send(c.StartWorkflow(workflow="etl", from_tasks=["b"], scope="sideways")), e.CommandRejected)
    assert "not one of task, pre, post" in rej.reason
    assert m.state.instances == {}


def test_stop_of_a_run_from_a_task_keeps_section_6_and_rerun_keeps_the_scope() -> None:
    m = Master()
    m.define(FLOW)
    i, ev = _start(m, "x", scope="task")
    assert m.timers() == {(i, "x", "TIMEOUT"): m.now + 60_000}
    m.started(i, "x")
    ev = m.send(c.StopWorkflow(instance=i))
    assert of(ev, e.KillTaskProcess, task="x") and m.timers() == {}
    assert not _dispatched(m.tick(120))
    m.finished(i, "x", killed=True, exit_code=-15)
    assert m.wf_state(i) == "STOP"
    ev = m.send(c.RerunWorkflow(instance=i))
    assert _dispatched(ev) == ["x"]
    assert of(m.run_ok(i, "x", attempt=2), e.WorkflowFinished, state="SUCCESS")
