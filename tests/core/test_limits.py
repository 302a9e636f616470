"""Limits at the door: names, parameters, environment size, definition size, retry floor."""

from __future__ import annotations

import pytest

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core import limits
from easysched_es.core.definitions import DefinitionError, validate
from tests.core.helpers import Master, of, shell, wf


def refused(definition: object) -> str:
    with pytest.raises(DefinitionError) as exc:
        validate(definition)  # type: ignore[arg-type]
    return str(exc.value)


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        (wf("w", shell("x" * 5000)), "the task name is 5000 characters long; at most 256"),
        (wf("w" * 300, shell("a")), "the workflow name is 300 characters long"),
        (wf("w", shell("a"), params={"BIG": "x" * 1_000_000}), "parameter 'BIG' is 1,000,005 bytes"),
        (wf("w", shell("a", env={"E": "é" * 70_000})), "env 'E' is 140,003 bytes"),
        (wf("w", shell("a"), params={f"P{i}": "" for i in range(1001)}), "parameter: 1001 entries; at most 1000"),
        (wf("w", shell("a"), params={"EASYSCHED_INSTANCE": "x"}), "parameter 'EASYSCHED_INSTANCE' would be replaced"),
        (wf("w", shell("a", env={"DS_DATE": "2020-01-01"})), "env 'DS_DATE' would be replaced"),
        (wf("w", shell("a", "echo " + "x" * 140_000)), "the command is 140,"),
        (wf("w", shell("a", retry_times=1, retry_interval=0.01)), "retry_interval must be 0 (retry at once) or >= 0.1"),
        (wf("w", shell("a", retry_times=5000)), "retry_times is 5000; at most 1000"),
        (wf("w", shell("a", pool="p" * 300)), "pool is 300 characters long"),
        (wf("w", *[shell(f"t{i}", env={f"E{j}": "x" * 1000 for j in range(30)}) for i in range(3)],
            params={f"P{i}": "y" * 100_000 for i in range(11)}), "-byte environment; at most 1,048,576"),
        (wf("w", *[shell(f"t{i}", "x" * 100_000) for i in range(50)]), "the definition is 5,"),
    ],
)
def test_definitions_beyond_the_runtime_are_refused_naming_the_field(definition: object, expected: str) -> None:
    assert expected in refused(definition)


def test_parameters_may_override_inherited_variables_and_builtin_time_values() -> None:
    validate(wf("w", shell("a", env={"PATH": "/opt/bin:/usr/bin"}), params={"system_biz_date": "20240101"}))


def test_a_start_with_a_one_megabyte_parameter_is_rejected_naming_the_key() -> None:
    m = Master()
    m.define(wf("w", shell("a")))
    (rej,) = m.send(c.StartWorkflow(workflow="w", params={"PAYLOAD": "x" * 1_000_000}))
    assert isinstance(rej, e.CommandRejected) and "parameter 'PAYLOAD' is 1,000,009 bytes" in rej.reason
    (rej,) = m.send(c.StartWorkflow(workflow="w", params={f"P{i}": "y" * 100_000 for i in range(11)}))
    assert isinstance(rej, e.CommandRejected) and "with these parameters, task 'a'" in rej.reason
    assert not m.state.instances
    assert of(m.send(c.StartWorkflow(workflow="w", params={"OK": "1"})), e.WorkflowStarted)


def test_limits_are_what_linux_takes() -> None:
    # MAX_ARG_STRLEN is 32 pages of 4 KiB including the NUL; ARG_MAX is at least twice MAX_ENV_TOTAL.
    assert limits.MAX_ENV_STRING == 131_071
    assert limits.MAX_ENV_TOTAL * 2 <= 2 * 1024 * 1024
