"""CONDITIONS and SWITCH in the fold: the branch taken, the branches skipped and what follows them."""

from __future__ import annotations

from typing import Any

import pytest

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.definitions import (
    ConditionDependence,
    ConditionItem,
    ConditionResult,
    ConditionsTask,
    DefinitionError,
    SwitchCase,
    SwitchSpec,
    SwitchTask,
    validate,
)
from easysched_es.core.state import FAILURE, SKIPPED, SUCCESS, WF_FAILURE, WF_SUCCESS
from tests.core.helpers import Master, of, shell, wf


def conditions(name: str, upstream: list[str], items: list[tuple[str, str]], success: list[str],
               failed: list[str], relation: str = "AND") -> ConditionsTask:
    return ConditionsTask(
        name=name,
        upstream=upstream,
        dependence=ConditionDependence(items=[ConditionItem(task=t, state=s) for t, s in items],  # type: ignore[arg-type]
                                       relation=relation),  # type: ignore[arg-type]
        condition_result=ConditionResult(success_node=success, failed_node=failed),
    )


def switch(name: str, upstream: list[str], cases: list[tuple[str, str]], default: str | None = None) -> SwitchTask:
    return SwitchTask(name=name, upstream=upstream,
                      switch=SwitchSpec(cases=[SwitchCase(condition=x, next=n) for x, n in cases], default=default))


def nightly(**kw: Any) -> Any:
    """The issue's example: extract -> check (CONDITIONS) -> route (SWITCH) -> three loads; alert on failure."""
    return wf(
        "nightly",
        shell("extract"),
        conditions("check", ["extract"], [("extract", "SUCCESS")], ["route"], ["alert"]),
        switch("route", ["check"], [("${rows} > 1000000", "big_load"), ("${rows} == 0", "nothing_to_do")],
               default="small_load"),
        shell("big_load", upstream=["route"]),
        shell("nothing_to_do", upstream=["route"]),
        shell("small_load", upstream=["route"]),
        shell("alert", upstream=["check"]),
        shell("report", upstream=["big_load", "small_load"]),
        **kw,
    )


def _finish(m: Master, inst: str, task: str, exit_code: int = 0, outputs: dict[str, str] | None = None,
            attempt: int = 1) -> list[e.Event]:
    m.started(inst, task, attempt)
    return m.send(c.TaskFinished(instance=inst, task=task, attempt=attempt, exit_code=exit_code, worker="w1",
                                 outputs=outputs or {}))


def states(m: Master, inst: str) -> dict[str, str]:
    return {name: t.state for name, t in m.state.instances[inst].tasks.items()}


@pytest.mark.parametrize(
    ("rows", "taken", "not_taken"),
    [("42", "small_load", ["big_load", "nothing_to_do"]), ("5000000", "big_load", ["nothing_to_do", "small_load"]),
     ("0", "nothing_to_do", ["big_load", "small_load"])],
)
def test_success_path_switch_picks_by_the_upstream_output(rows: str, taken: str, not_taken: list[str]) -> None:
    m = Master()
    m.define(nightly())
    inst = m.start("nightly")
    events = _finish(m, inst, "extract", outputs={"rows": rows})
    chosen = of(events, e.BranchChosen)
    assert [(b.task, b.taken) for b in chosen] == [("check", ["route"]), ("route", [taken])]
    assert chosen[0].skipped == ["alert"] and chosen[1].skipped == not_taken
    (d,) = of(events, e.DispatchTask, task=taken)
    assert d.env["rows"] == rows  # the output parameter reached the chosen branch's environment
    got = states(m, inst)
    assert got["check"] == SUCCESS and got["route"] == SUCCESS
    for name in [*not_taken, "alert"]:
        assert got[name] == SKIPPED
        assert m.task(inst, name).note.startswith("not taken: ")
    skipped_reason = of(events, e.TaskStateChanged, task="alert", state=SKIPPED)[0].reason
    assert skipped_reason == "not taken: check chose success_node"
    # `report` waits on big_load and small_load: it runs once the one taken ends, the other being skipped.
    events = _finish(m, inst, taken)
    if taken == "nothing_to_do":
        assert states(m, inst)["report"] == SKIPPED
        assert m.task(inst, "report").note == "all upstream tasks were skipped (big_load, small_load)"
        assert m.wf_state(inst) == WF_SUCCESS
    else:
        assert of(events, e.DispatchTask, task="report")
        _finish(m, inst, "report")
        assert m.wf_state(inst) == WF_SUCCESS


@pytest.mark.parametrize("strategy", ["CONTINUE", "END"])
def test_a_failure_handled_by_conditions_runs_the_failure_branch_and_does_not_fail_the_workflow(strategy: str) -> None:
    m = Master()
    m.define(nightly(failure_strategy=strategy))
    inst = m.start("nightly")
    events = _finish(m, inst, "extract", exit_code=3)
    (chosen,) = of(events, e.BranchChosen)
    assert chosen.branch == "failed_node" and chosen.taken == ["alert"] and chosen.skipped == ["route"]
    assert "extract is FAILURE (expected SUCCESS): does not hold" in chosen.detail
    got = states(m, inst)
    assert got["extract"] == FAILURE and got["route"] == SKIPPED
    for name in ("big_load", "nothing_to_do", "small_load", "report"):
        assert got[name] == SKIPPED, name
    assert not of(events, e.KillTaskProcess)
    _finish(m, inst, "alert")
    assert m.wf_state(inst) == WF_SUCCESS


def test_or_relation_and_failure_expectations() -> None:
    m = Master()
    m.define(wf(
        "p", shell("a"), shell("b"),
        conditions("either_failed", ["a", "b"], [("a", "FAILURE"), ("b", "FAILURE")], ["cleanup"], ["publish"],
                   relation="OR"),
        shell("cleanup", upstream=["either_failed"]), shell("publish", upstream=["either_failed"]),
    ))
    inst = m.start("p")
    _finish(m, inst, "a")
    assert "either_failed" not in m.state.instances[inst].tasks  # waits for every upstream to end
    events = _finish(m, inst, "b", exit_code=1)
    (chosen,) = of(events, e.BranchChosen)
    assert chosen.branch == "success_node" and chosen.taken == ["cleanup"]


def test_switch_unknown_name_fails_the_task_with_the_reason() -> None:
    m = Master()
    m.define(wf("p", shell("a"), switch("s", ["a"], [("${ghost} > 1", "x")], default="y"),
                shell("x", upstream=["s"]), shell("y", upstream=["s"])))
    inst = m.start("p")
    events = _finish(m, inst, "a")
    (failed,) = of(events, e.TaskStateChanged, task="s", state=FAILURE)
    assert failed.reason.startswith("switch.cases[0].condition: unknown name ${ghost} at column 1")
    assert m.wf_state(inst) == WF_FAILURE
    assert not of(events, e.DispatchTask, task="x") and not of(events, e.DispatchTask, task="y")


def test_switch_reads_workflow_parameters_and_fails_without_a_default() -> None:
    m = Master()
    m.define(wf("p", switch("s", [], [("${env} == 'prod'", "x")]), shell("x", upstream=["s"]),
                params={"env": "dev"}))
    inst = m.start("p")
    (failed,) = of(m.log, e.TaskStateChanged, task="s", state=FAILURE)
    assert failed.reason == "no case holds and there is no default branch"
    inst = m.start("p", params={"env": "prod"})
    assert of(m.log, e.DispatchTask, task="x", instance=inst)


def test_a_long_skipped_chain_costs_no_recursion() -> None:
    chain = [shell(f"t{i}", upstream=[f"t{i - 1}" if i else "s"]) for i in range(400)]
    m = Master()
    m.define(wf("p", switch("s", [], [("1 == 2", "t0")], default="other"), shell("other", upstream=["s"]), *chain))
    inst = m.start("p")
    assert all(t.state == SKIPPED for n, t in m.state.instances[inst].tasks.items() if n.startswith("t"))
    assert len(m.state.instances[inst].tasks) == 402


def test_stop_after_a_branch_leaves_skipped_tasks_skipped() -> None:
    m = Master()
    m.define(nightly())
    inst = m.start("nightly")
    _finish(m, inst, "extract", outputs={"rows": "1"})
    m.send(c.StopWorkflow(instance=inst))
    assert states(m, inst)["big_load"] == SKIPPED and states(m, inst)["small_load"] == "KILL"
    assert m.timers() == {}


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([shell("a"), conditions("c", ["a"], [("a", "SUCCESS")], ["ghost"], [])],
         "condition_result names unknown task 'ghost'"),
        ([shell("a"), conditions("c", ["a"], [("a", "SUCCESS")], ["b"], []), shell("b")],
         "condition_result names 'b', which does not list 'c' in its upstream"),
        ([shell("a"), shell("z"), conditions("c", ["a"], [("z", "SUCCESS")], [], [])],
         "dependence.items[0].task 'z' is not in this task's upstream list"),
        ([shell("a"), conditions("c", ["a"], [], [], [])], "dependence.items is empty"),
        ([shell("a"), conditions("c", ["a"], [("a", "SUCCESS")], ["b"], ["b"]), shell("b", upstream=["c"])],
         "names 'b' in both branches"),
        ([switch("s", [], [])], "switch.cases is empty"),
        ([switch("s", [], [("${x} >", "b")]), shell("b", upstream=["s"])],
         "switch.cases[0].condition: the condition ends where a value was expected (column 7)"),
        ([switch("s", [], [("true", "b")], default="ghost"), shell("b", upstream=["s"])],
         "switch names unknown task 'ghost'"),
        ([switch("s", [], [("true", "b")]), shell("b")], "switch names 'b', which does not list 's'"),
    ],
)
def test_definitions_are_checked_at_define(tasks: list[Any], message: str) -> None:
    with pytest.raises(DefinitionError) as info:
        validate(wf("p", *tasks))
    assert message in str(info.value)
    assert "workflow 'p', task " in str(info.value)
    m = Master()
    (rejected,) = of(m.define(wf("p", *tasks)), e.CommandRejected)
    assert message in rejected.reason
