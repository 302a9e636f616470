"""DEPENDENT index records share their task_states dicts; a change to one record never reaches another."""

from __future__ import annotations

from easysched_es.core import commands as c
from easysched_es.core.codec import decode_snapshot, encode
from easysched_es.core.state import State
from tests.core.helpers import Master, shell, wf


def test_equal_task_states_are_one_dict_and_force_success_copies() -> None:
    m = Master()
    m.define(wf("etl", shell("a"), shell("b", upstream=["a"])))
    failed = [m.start("etl") for _ in range(3)]
    for i in failed:
        m.finished(i, "a", exit_code=1)
    ok = m.start("etl")
    m.run_ok(ok, "a")
    m.run_ok(ok, "b")
    records = m.state.upstream["etl"]
    first, second, third = (records[i].task_states for i in failed)
    assert first is second is third and first == {"a": "FAILURE"}
    assert records[ok].task_states == {"a": "SUCCESS", "b": "SUCCESS"}

    m.send(c.ForceTaskSuccess(instance=failed[0], task="a"))
    assert records[failed[0]].task_states == {"a": "FORCED_SUCCESS"}
    assert records[failed[1]].task_states == {"a": "FAILURE"}  # the others keep theirs
    assert records[failed[2]].task_states is records[failed[1]].task_states

    restored = State.restore(decode_snapshot(encode(m.state.snapshot())))
    again = restored.upstream["etl"]
    assert again[failed[1]].task_states is again[failed[2]].task_states  # shared again after a restore
    assert {i: r.task_states for i, r in again.items()} == {i: r.task_states for i, r in records.items()}
    assert encode(restored.snapshot()) == encode(m.state.snapshot())
