"""Built-in time parameters and `$[...]` expressions through the fold: computed at start, passed as env."""

from __future__ import annotations

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.definitions import ShellTask, WorkflowDefinition
from easysched_es.core.state import State
from easysched_es.core.step import step
from tests.core.helpers import T0

SCHEDULED = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def _define(state: State, definition: WorkflowDefinition, offset: int = 0) -> list[e.Event]:
    return step(state, c.DefineWorkflow(at=T0, definition=definition), offset)[1]


def _dispatch(events: list[e.Event]) -> e.DispatchTask:
    return next(ev for ev in events if isinstance(ev, e.DispatchTask))


def test_a_shell_task_gets_the_builtin_time_parameters_and_resolved_expressions() -> None:
    state = State()
    wf = WorkflowDefinition(
        name="etl",
        params={"DAY": "$[yyyy-MM-dd-1]", "MONTH": "$[add_months(yyyyMM,-1)]", "REF": "biz=${system.biz.date}"},
        tasks=[ShellTask(name="load", command="echo $DAY", env={"HOUR": "$[HH+1/24]"})],
    )
    assert not any(isinstance(ev, e.CommandRejected) for ev in _define(state, wf))
    _, events = step(state, c.StartWorkflow(at=T0, workflow="etl", schedule_time=SCHEDULED), 1)
    started = next(ev for ev in events if isinstance(ev, e.WorkflowStarted))
    assert started.params == {"DAY": "2023-11-13", "MONTH": "202310", "REF": "biz=20231113"}
    d = _dispatch(events)
    assert d.env["system_biz_date"] == "20231113"
    assert d.env["system_biz_curdate"] == "20231114"
    assert d.env["system_datetime"] == "20231114221320"
    assert d.env["DAY"] == "2023-11-13"
    assert d.task_env == {"HOUR": "23"}


def test_a_start_parameter_with_a_bad_expression_is_refused() -> None:
    state = State()
    _define(state, WorkflowDefinition(name="etl", tasks=[ShellTask(name="t", command="true")]))
    _, events = step(state, c.StartWorkflow(at=T0, workflow="etl", params={"X": "$[add_months(yyyy)]"}), 1)
    assert isinstance(events[0], e.CommandRejected)
    assert "add_months takes two arguments" in events[0].reason
    assert not state.instances


def test_a_definition_with_a_bad_expression_is_refused_naming_the_field() -> None:
    state = State()
    bad_param = WorkflowDefinition(name="a", params={"X": "$[qq]"}, tasks=[ShellTask(name="t", command="true")])
    bad_env = WorkflowDefinition(name="b", tasks=[ShellTask(name="t", command="true", env={"Y": "$[yyyy+]"})])
    (r1,) = _define(state, bad_param, 0)
    (r2,) = _define(state, bad_env, 1)
    assert isinstance(r1, e.CommandRejected) and "parameter 'X'" in r1.reason and "'q'" in r1.reason
    assert isinstance(r2, e.CommandRejected) and "task 't': env 'Y'" in r2.reason
