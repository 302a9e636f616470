"""Definition validation names what is wrong; topological order keeps definition order on ties."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import msgspec
import pytest

from easysched_es.core.definitions import (
    DefinitionError,
    WorkflowDefinition,
    find_cycle,
    topological_order,
    validate,
)
from tests.core.helpers import dep, item, shell, wf


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        (wf("", shell("a")), "workflow name is empty"),
        (wf("   ", shell("a")), "workflow name is empty"),
        (wf("w"), "workflow 'w' has no tasks"),
        (wf("w", shell("")), "workflow 'w': a task has an empty name"),
        (wf("w", shell("a"), shell("b"), shell("a")), "workflow 'w': duplicate task name 'a'"),
        (wf("w", shell("a"), shell("b", upstream=["nope"])), "workflow 'w', task 'b': unknown upstream task 'nope'"),
        (wf("w", shell("a", upstream=["a"])), "task 'a': a task cannot be its own upstream"),
        (wf("w", shell("a", command="")), "workflow 'w', task 'a': SHELL command is empty"),
        (wf("w", shell("a", command=" \n\t")), "task 'a': SHELL command is empty"),
        (wf("w", shell("a", retry_times=-1)), "task 'a': retry_times and retry_interval must be >= 0"),
        (wf("w", shell("a", retry_interval=-0.5)), "task 'a': retry_times and retry_interval must be >= 0"),
        (wf("w", shell("a", timeout=0)), "task 'a': timeout must be > 0 seconds"),
        (wf("w", dep("d")), "task 'd': dependence has no items"),
        (wf("w", dep("d", item("up"), check_interval=0)), "task 'd': check_interval must be >= 0.05 seconds"),
        (wf("w", dep("d", item("up"), check_interval=0.001)), "task 'd': check_interval must be >= 0.05 seconds"),
        (
            wf("w", dep("d", item("up"), failure_waiting_time=-1)),
            "task 'd': failure_waiting_time must be >= 0",
        ),
        (
            wf("w", dep("d", item("up", cycle="DAY", date_value="thisWeek"))),
            "task 'd': date_value 'thisWeek' is not valid for cycle DAY; use one of today, last1Days",
        ),
        (
            wf("w", dep("d", item("up", cycle="HOUR", date_value="today"))),
            "date_value 'today' is not valid for cycle HOUR",
        ),
        (
            wf("w", dep("d", item("up", cycle="MONTH", date_value="bogus"))),
            "date_value 'bogus' is not valid for cycle MONTH",
        ),
        (wf("w", shell("a", timeout=float("nan"))), "task 'a': timeout must be a finite number of seconds"),
        (wf("w", shell("a", timeout=1e300)), "task 'a': timeout must be a finite number of seconds up to 315360000"),
        (wf("w", shell("a", retry_interval=float("inf"))), "task 'a': retry_interval must be a finite number"),
        (wf("w", shell("a", retry_interval=float("nan"), retry_times=1)), "retry_interval must be a finite number"),
        (wf("w", dep("d", item("up"), check_interval=float("inf"))), "task 'd': check_interval must be a finite"),
        (wf("w", dep("d", item("up"), check_interval=float("nan"))), "task 'd': check_interval must be a finite"),
        (wf("w", dep("d", item("up"), failure_waiting_time=float("nan"))), "failure_waiting_time must be a finite"),
    ],
)
def test_validation_names_the_problem(definition: WorkflowDefinition, message: str) -> None:
    with pytest.raises(DefinitionError) as info:
        validate(definition)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("tasks", "cycle_text"),
    [
        ([shell("a", upstream=["b"]), shell("b", upstream=["a"])], "a -> b -> a"),
        ([shell("a", upstream=["c"]), shell("b", upstream=["a"]), shell("c", upstream=["b"])], "a -> c -> b -> a"),
        # A cycle behind a healthy prefix: the message shows only the cycle.
        (
            [shell("root"), shell("x", upstream=["root", "z"]), shell("y", upstream=["x"]), shell("z", upstream=["y"])],
            "x -> z -> y -> x",
        ),
    ],
)
def test_cycle_is_refused_with_its_path(tasks: list[Any], cycle_text: str) -> None:
    definition = wf("loop", *tasks)
    with pytest.raises(DefinitionError) as info:
        validate(definition)
    assert str(info.value) == f"workflow 'loop': tasks form a cycle: {cycle_text}"
    path = find_cycle(definition)
    assert path[0] == path[-1]
    upstream = {t.name: t.upstream for t in tasks}
    for down, up in pairwise(path):
        assert up in upstream[down], "each step of the path is a real upstream edge"


def test_no_cycle() -> None:
    assert find_cycle(wf("w", shell("a"), shell("b", upstream=["a"]), shell("c", upstream=["a", "b"]))) == []


@pytest.mark.parametrize(
    ("tasks", "order"),
    [
        ([shell("a"), shell("b"), shell("c")], ["a", "b", "c"]),
        ([shell("c", upstream=["b"]), shell("b", upstream=["a"]), shell("a")], ["a", "b", "c"]),
        (
            [shell("load", upstream=["x", "y"]), shell("y"), shell("x"), shell("z", upstream=["y"])],
            ["y", "x", "load", "z"],
        ),
        (
            [dep("wait", item("up")), shell("b", upstream=["wait"]), shell("a")],
            ["wait", "a", "b"],
        ),
    ],
)
def test_topological_order(tasks: list[Any], order: list[str]) -> None:
    definition = wf("w", *tasks)
    validate(definition)
    assert topological_order(definition) == order


def test_topological_order_refuses_a_cycle() -> None:
    with pytest.raises(DefinitionError, match="cycle"):
        topological_order(wf("w", shell("a", upstream=["b"]), shell("b", upstream=["a"])))


def test_valid_definition_passes() -> None:
    validate(
        wf(
            "etl",
            dep("wait", item("up", "publish"), item("other", cycle="WEEK", date_value="lastWeek"), relation="OR"),
            shell("load", upstream=["wait"], retry_times=2, retry_interval=1.5, timeout=30, timeout_strategy="FAILED"),
        )
    )


# ---- decoding (what `define FILE` does before validate) ----------------------------------


def convert(data: dict[str, Any]) -> WorkflowDefinition:
    return msgspec.convert(data, WorkflowDefinition)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"name": "w", "tasks": [{"name": "a", "type": "PYTHON", "command": "x"}]},
            "Invalid value 'PYTHON' - at `$.tasks[0].type`",
        ),
        ({"name": "w", "tasks": [{"name": "a", "command": "x"}]}, "missing required field `type` - at `$.tasks[0]`"),
        (
            {"name": "w", "tasks": [{"name": "a", "type": "SHELL"}]},
            "missing required field `command` - at `$.tasks[0]`",
        ),
        (
            {"name": "w", "tasks": [{"name": "a", "type": "SHELL", "command": "x", "comand": 1}]},
            "unknown field `comand`",
        ),
        (
            {
                "name": "w",
                "tasks": [{"name": "d", "type": "DEPENDENT", "dependence": {"items": [], "relation": "XOR"}}],
            },
            "at `$.tasks[0].dependence.relation`",
        ),
        (
            {
                "name": "w",
                "tasks": [
                    {"name": "d", "type": "DEPENDENT", "dependence": {"items": [{"workflow": "u", "cycle": "YEAR"}]}}
                ],
            },
            "at `$.tasks[0].dependence.items[0].cycle`",
        ),
        (
            {"name": "w", "tasks": [{"name": "a", "type": "SHELL", "command": "x", "timeout_strategy": "KILL"}]},
            "timeout_strategy",
        ),
        ({"name": "w", "failure_strategy": "ABORT", "tasks": []}, "at `$.failure_strategy`"),
    ],
)
def test_decoding_errors_name_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        convert(data)
    assert message in str(info.value)


def test_decoding_a_good_definition() -> None:
    definition = convert(
        {
            "name": "etl_daily",
            "tasks": [
                {
                    "name": "wait_upstream",
                    "type": "DEPENDENT",
                    "dependence": {
                        "relation": "AND",
                        "check_interval": 10,
                        "failure_policy": "FAIL",
                        "items": [{"workflow": "upstream", "task": "publish", "cycle": "DAY", "date_value": "today"}],
                    },
                },
                {"name": "load", "type": "SHELL", "command": "echo loading $DS_DATE", "upstream": ["wait_upstream"]},
            ],
        }
    )
    validate(definition)
    assert definition == wf(
        "etl_daily",
        dep("wait_upstream", item("upstream", "publish")),
        shell("load", command="echo loading $DS_DATE", upstream=["wait_upstream"]),
    )
