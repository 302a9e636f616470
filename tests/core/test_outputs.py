"""Output parameters: parsing, bounds decided by the fold, and the flow to downstream tasks."""

from __future__ import annotations

import pytest

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core import outputs
from easysched_es.core.state import FAILURE, SUCCESS
from tests.core.helpers import Master, of, shell, wf


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("${setValue(rows=42)}", [("rows", "42")]),
        ("echo: ${setValue(a=1)} and ${setValue(b=x=y)}", [("a", "1"), ("b", "x=y")]),
        ("${setValue( spaced =v )}", [("spaced", "v ")]),
        ("${setValue(empty=)}", [("empty", "")]),
        ("${setValue(noequals)}", [("noequals", "")]),
        ("${setValue(p=(a))}", [("p", "(a)")]),
        ("setValue(a=1)", []),
        ("${setvalue(a=1)}", []),
        ("", []),
    ],
)
def test_set_value_lines(line: str, expected: list[tuple[str, str]]) -> None:
    assert outputs.from_output_line(line) == expected


def test_output_file_lines() -> None:
    text = "# comment\n\na=1\n  b = two words\nc==\n"
    assert outputs.from_output_file(text) == [("a", "1"), ("b", " two words"), ("c", "=")]


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"ok": "1", "_x9": ""}, ""),
        ({"9lives": "1"}, "not a valid name"),
        ({"a-b": "1"}, "not a valid name"),
        ({"": "1"}, "not a valid name"),
        ({"__import__('os')": "1"}, "not a valid name"),
        ({"EASYSCHED_TASK": "x"}, "reserved prefix"),
        ({"n" * (outputs.MAX_NAME + 1): "1"}, "longer than"),
        ({"v": "x" * (outputs.MAX_VALUE + 1)}, "value longer than"),
        ({f"k{i}": "" for i in range(outputs.MAX_OUTPUTS + 1)}, "more than 64 output parameters"),
        ({f"k{i}": "x" * outputs.MAX_VALUE for i in range(10)}, "characters in all"),
    ],
)
def test_the_fold_decides_the_limits(values: dict[str, str], reason: str) -> None:
    found = outputs.problem(values)
    assert (reason in found) if reason else found == ""


def test_the_collector_stays_bounded_yet_shows_the_excess() -> None:
    col = outputs.Collector()
    col.add((f"k{i}", "v") for i in range(10_000))
    assert len(col.values) == outputs.MAX_OUTPUTS + 1
    assert "more than" in outputs.problem(col.values)
    col = outputs.Collector()
    col.add([("big", "x" * 10_000_000)])
    assert len(col.values["big"]) == outputs.MAX_VALUE + 1
    col = outputs.Collector()
    col.add((f"k{i}", "x" * outputs.MAX_VALUE) for i in range(60))
    assert sum(len(k) + len(v) for k, v in col.values.items()) <= outputs.MAX_TOTAL + outputs.MAX_NAME + 1
    assert "in all" in outputs.problem(col.values)
    col = outputs.Collector()
    col.add([("a", "1"), ("a", "2")])
    assert col.values == {"a": "2"}


def _finish(m: Master, inst: str, task: str, outs: dict[str, str], attempt: int = 1) -> list[e.Event]:
    m.started(inst, task, attempt)
    return m.send(c.TaskFinished(instance=inst, task=task, attempt=attempt, exit_code=0, worker="w1", outputs=outs))


def test_outputs_reach_downstream_environments_along_paths() -> None:
    m = Master()
    m.define(wf("p", shell("a"), shell("b", upstream=["a"]), shell("c", upstream=["b"]), shell("side"),
                params={"rows": "param", "keep": "k"}))
    inst = m.start("p")
    events = _finish(m, inst, "a", {"rows": "42"})
    assert of(events, e.TaskStateChanged, task="a", state=SUCCESS)[0].outputs == {"rows": "42"}
    (d,) = of(events, e.DispatchTask, task="b")
    assert d.env["rows"] == "42" and d.env["keep"] == "k"
    (d,) = of(_finish(m, inst, "b", {"more": "1"}), e.DispatchTask, task="c")
    assert d.env["rows"] == "42" and d.env["more"] == "1"
    # A task that is not downstream sees the workflow's parameter only.
    side = of(m.log, e.DispatchTask, task="side")[0]
    assert side.env["rows"] == "param"
    assert m.task(inst, "c").inputs == {"rows": "42", "more": "1"}


def test_two_upstreams_setting_one_name_the_first_to_end_wins() -> None:
    m = Master()
    m.define(wf("p", shell("a"), shell("b"), shell("join", upstream=["a", "b"])))
    inst = m.start("p")
    _finish(m, inst, "b", {"x": "from_b", "only_b": "1"})
    m.now += 1000
    (d,) = of(_finish(m, inst, "a", {"x": "from_a"}), e.DispatchTask, task="join")
    assert d.env["x"] == "from_b" and d.env["only_b"] == "1"


def test_outputs_over_the_limits_fail_the_attempt_with_the_reason() -> None:
    m = Master()
    m.define(wf("p", shell("a", retry_times=1), shell("b", upstream=["a"])))
    inst = m.start("p")
    events = _finish(m, inst, "a", {"bad-name": "1"})
    (delayed,) = of(events, e.TaskStateChanged, task="a", state="DELAY_EXECUTION")
    assert "exit code 0, but output parameter name 'bad-name' is not a valid name" in delayed.reason
    (d,) = of(events, e.DispatchTask, task="a")
    events = _finish(m, inst, "a", {f"k{i}": "" for i in range(100)}, attempt=d.attempt)
    (changed,) = of(events, e.TaskStateChanged, task="a", state=FAILURE)
    assert changed.reason == "exit code 0, but it set more than 64 output parameters"
    assert m.task(inst, "a").outputs == {}


def test_outputs_survive_replay_and_snapshots() -> None:
    m = Master()
    m.define(wf("p", shell("a"), shell("b", upstream=["a"])))
    inst = m.start("p")
    _finish(m, inst, "a", {"rows": "7"})
    from easysched_es.core.codec import decode_snapshot, encode
    from easysched_es.core.state import State
    from easysched_es.core.step import pending_effects

    restored = State.restore(decode_snapshot(encode(m.state.snapshot())))
    (d,) = [x for x in pending_effects(restored) if isinstance(x, e.DispatchTask)]
    assert d.task == "b" and d.env["rows"] == "7"
