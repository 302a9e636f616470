"""Retention removes finished instances from the hot state while every decision stays the same.

Two folds see the same random workload (upstream instances succeeding or failing, DEPENDENT
instances checking date windows over them, clock ticks over several simulated days); one of
them gets `ApplyRetention` commands where the other gets a no-op heartbeat. Apart from those
steps, every batch of events must be byte-identical, DEPENDENT decisions included, while the
first fold's hot state really loses instances.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.codec import encode
from easysched_es.core.retention import due_for_retirement
from easysched_es.core.state import DISPATCH, RUNNING, WF_FINAL, State
from easysched_es.core.step import step
from tests.core.helpers import T0, Master, dep, item, of, shell, wf

HOUR = 3_600_000
DEFINITIONS = [
    wf("up", shell("a"), retention_days=1.0),
    wf("down", dep("wait", item("up", cycle="DAY", date_value="today"), item("up", "a", cycle="DAY",
                   date_value="last1Days"), relation="OR", check_interval=1800.0), shell("after", upstream=["wait"]),
       retention_days=0.5),
]

actions = st.lists(
    st.tuples(st.sampled_from(["start_up", "start_down", "finish", "tick", "retain"]), st.integers(0, 10),
              st.booleans()),
    min_size=5, max_size=60,
)


def active_attempts(state: State) -> list[tuple[str, str, int]]:
    return sorted((i.id, t.name, t.attempt) for i in state.instances.values() if i.state not in WF_FINAL
                  for t in i.tasks.values() if t.type == "SHELL" and t.state in (DISPATCH, RUNNING))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions)
def test_retention_changes_no_decision(plan: list[tuple[str, int, bool]]) -> None:
    kept, retired = State(), State()
    now = T0
    offset = -1
    removed = 0

    def both(a: c.Command, b: c.Command | None = None) -> tuple[list[e.Event], list[e.Event]]:
        nonlocal offset
        offset += 1
        _, ea = step(retired, a, offset)
        _, eb = step(kept, b or a, offset)
        return ea, eb

    for d in DEFINITIONS:
        both(c.DefineWorkflow(at=now, definition=d))
    for action, n, flag in plan:
        if action == "start_up":
            ea, eb = both(c.StartWorkflow(at=now, workflow="up", schedule_time=now - (HOUR * 30 if flag else 0)))
        elif action == "start_down":
            ea, eb = both(c.StartWorkflow(at=now, workflow="down"))
        elif action == "finish":
            attempts = active_attempts(kept)
            if not attempts:
                continue
            inst, task, attempt = attempts[n % len(attempts)]
            ea, eb = both(c.TaskFinished(at=now, instance=inst, task=task, attempt=attempt, exit_code=0 if flag else 1))
        elif action == "tick":
            now += HOUR * (n + 1)
            ea, eb = both(c.CheckDue(at=now, now=now))
        else:
            expected = due_for_retirement(retired, now)
            ea, eb = both(c.ApplyRetention(at=now, now=now), c.Heartbeat(at=now, worker="noop"))
            (ev,) = ea
            assert isinstance(ev, e.InstancesRetired) and ev.instances == expected and eb == []
            removed += len(expected)
            continue
        assert encode(ea) == encode(eb), (action, ea, eb)
    assert set(retired.instances) <= set(kept.instances)
    assert len(kept.instances) - len(retired.instances) == removed
    for inst_id, inst in retired.instances.items():
        assert encode(inst) == encode(kept.instances[inst_id])


def test_a_finished_instance_leaves_after_its_workflows_retention_and_running_ones_stay() -> None:
    m = Master()
    m.define(wf("w", shell("a"), retention_days=1.0))
    m.define(wf("v", shell("a")))
    done = m.start("w")
    m.run_ok(done, "a")
    other = m.start("v")
    m.run_ok(other, "a")
    running = m.start("w")
    m.now += 86_400_000
    (ev,) = m.send(c.ApplyRetention(now=m.now))
    assert isinstance(ev, e.InstancesRetired) and ev.instances == [done]
    assert set(m.state.instances) == {other, running}
    assert done in m.state.upstream["w"]  # the DEPENDENT index keeps the record
    m.now += 30 * 86_400_000
    (ev,) = m.send(c.ApplyRetention(now=m.now))
    assert ev.instances == [other] and set(m.state.instances) == {running}
    m.now += 93 * 86_400_000
    (ev,) = m.send(c.ApplyRetention(now=m.now))
    assert ev.upstream_records == 2 and set(m.state.upstream["w"]) == {running}
    assert of(m.send(c.StopWorkflow(instance=done)), e.CommandRejected)
