"""Slots decided in the fold: waiting, priority order, kills of waiting tasks, lost workers."""

from __future__ import annotations

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.capacity import WAITING
from easysched_es.core.codec import decode_snapshot, encode
from easysched_es.core.state import DISPATCH, KILL, PAUSE, SUBMITTED, State
from easysched_es.core.step import step
from tests.core.helpers import Master, of, shell, wf


def fan(name: str, n: int, **kw: object) -> object:
    return wf(name, *[shell(f"t{i}") for i in range(n)], **kw)


def dispatched(events: list[e.Event]) -> list[str]:
    return [ev.task for ev in of(events, e.DispatchTask)]


def beat(m: Master, slots: int, worker: str = "w1", group: str = "default", timeout_ms: int = 0) -> list[e.Event]:
    return m.send(c.Heartbeat(worker=worker, slots=slots, group=group, timeout_ms=timeout_ms))


def test_without_announced_slots_everything_is_dispatched() -> None:
    m = Master()
    m.define(fan("f", 5))  # type: ignore[arg-type]
    inst = m.start("f")
    assert sorted(dispatched(m.log)) == [f"t{i}" for i in range(5)]
    assert m.state.capacity.waiting_count() == 0
    assert m.state.snapshot().capacity is None, inst


def test_a_task_without_a_free_slot_waits_visibly_and_runs_when_one_frees() -> None:
    m = Master()
    beat(m, 2)
    m.define(fan("f", 5))  # type: ignore[arg-type]
    inst = m.start("f")
    assert dispatched(m.log) == ["t0", "t1"]
    waiting = [ev for ev in of(m.log, e.TaskStateChanged, state=SUBMITTED) if ev.reason]
    assert [ev.task for ev in waiting] == ["t2", "t3", "t4"]
    assert all(ev.reason.startswith(WAITING) and "worker group default (2 of 2 busy" in ev.reason for ev in waiting)
    assert m.task(inst, "t2").state == SUBMITTED
    assert [w.task for w in m.state.capacity.waiting()] == ["t2", "t3", "t4"]
    events = m.run_ok(inst, "t0")
    assert dispatched(events) == ["t2"]
    # A heartbeat raising the slots dispatches at once, in FIFO order.
    assert dispatched(beat(m, 4)) == ["t3", "t4"]


def test_priority_order_task_then_workflow_then_fifo() -> None:
    m = Master()
    beat(m, 1)
    m.define(wf("blocker", shell("b")))
    m.define(wf("low", shell("a"), shell("z", priority="HIGHEST"), priority="LOWEST"))
    m.define(wf("high", shell("a"), shell("m", priority="LOW"), priority="HIGHEST"))
    blocker = m.start("blocker")
    low = m.start("low")
    high = m.start("high")
    order = []
    running = (blocker, "b")
    for _ in range(4):
        events = m.run_ok(*running)
        (d,) = of(events, e.DispatchTask)
        running = (d.instance, d.task)
        order.append((d.instance, d.task))
    # z: task HIGHEST; then the MEDIUM tasks, the HIGHEST workflow first; then m (task LOW).
    assert order == [(low, "z"), (high, "a"), (low, "a"), (high, "m")]


def test_kill_stop_and_pause_take_waiting_tasks_out_of_the_queue_in_the_same_step() -> None:
    m = Master()
    beat(m, 1)
    m.define(fan("f", 4))  # type: ignore[arg-type]
    inst = m.start("f")
    events = m.send(c.KillTask(instance=inst, task="t1"))
    assert m.task(inst, "t1").state == KILL and not m.state.capacity.entry(inst, "t1")
    assert not of(events, e.DispatchTask)
    m.send(c.PauseWorkflow(instance=inst))
    assert m.task(inst, "t2").state == PAUSE and m.state.capacity.waiting_count() == 0
    # Finishing t0 frees the slot; nothing is dispatched while paused.
    assert not dispatched(m.run_ok(inst, "t0"))
    events = m.send(c.ResumeWorkflow(instance=inst))
    assert dispatched(events) == ["t2"] and m.state.capacity.entry(inst, "t3")
    events = m.send(c.StopWorkflow(instance=inst))
    assert m.state.capacity.waiting_count() == 0 and m.task(inst, "t3").state == KILL
    assert not dispatched(events + m.finished(inst, "t2", exit_code=-15, killed=True))
    assert m.wf_state(inst) == "STOP"


def test_a_kill_holds_the_slot_until_the_process_is_gone() -> None:
    m = Master()
    beat(m, 1)
    m.define(fan("f", 2))  # type: ignore[arg-type]
    inst = m.start("f")
    m.started(inst, "t0")
    assert not dispatched(m.send(c.KillTask(instance=inst, task="t0")))
    assert dispatched(m.finished(inst, "t0", exit_code=-15, killed=True)) == ["t1"]


def test_a_lost_worker_takes_its_slots_with_it_and_its_tasks_wait_for_others() -> None:
    m = Master()
    beat(m, 2, worker="w1", timeout_ms=10_000)
    beat(m, 0, worker="w2")
    m.define(fan("f", 2))  # type: ignore[arg-type]
    inst = m.start("f")
    m.started(inst, "t0")
    m.started(inst, "t1")
    m.tick(11)
    assert m.task(inst, "t0").state == SUBMITTED and m.state.capacity.waiting_count() == 2
    assert dispatched(beat(m, 1, worker="w2")) == ["t0"]
    assert m.task(inst, "t0").attempt == 2 and m.task(inst, "t0").state == DISPATCH


def test_groups_count_separately_and_star_serves_groups_without_an_announcer() -> None:
    m = Master()
    beat(m, 1, worker="gpu1", group="gpu")
    beat(m, 1, worker="local", group="*")
    m.define(wf("g", shell("a", worker_group="gpu"), shell("b", worker_group="gpu"), shell("c"), shell("d")))
    inst = m.start("g")
    assert dispatched(m.log) == ["a", "c"]
    ds = {d.task: d.worker_group for d in of(m.log, e.DispatchTask)}
    assert ds == {"a": "gpu", "c": "default"}
    assert dispatched(m.run_ok(inst, "c")) == ["d"]


def test_bad_slot_counts_are_rejected() -> None:
    m = Master()
    (rej,) = beat(m, -2)
    assert isinstance(rej, e.CommandRejected) and "slots=-2" in rej.reason
    assert m.state.workers == {}


def test_a_withdrawn_announcement_lifts_the_limit_for_waiting_tasks_too() -> None:
    m = Master()
    beat(m, 1, group="*")
    m.define(fan("f", 3))  # type: ignore[arg-type]
    m.start("f")
    assert m.state.capacity.waiting_count() == 2
    assert dispatched(beat(m, -1, group="*")) == ["t1", "t2"]
    assert m.state.snapshot().capacity is not None  # the seq counter is kept


def test_snapshot_restore_continues_identically() -> None:
    m = Master()
    beat(m, 2)
    m.define(fan("f", 6, priority="HIGH"))  # type: ignore[arg-type]
    inst = m.start("f")
    m.started(inst, "t0")
    snap = decode_snapshot(encode(m.state.snapshot()))
    restored = State.restore(snap)
    assert encode(restored.snapshot()) == encode(m.state.snapshot())
    cmd = c.TaskFinished(at=m.now, instance=inst, task="t0", attempt=1, exit_code=0)
    _, a = step(m.state, cmd, m.offset + 1)
    _, b = step(restored, cmd, m.offset + 1)
    assert encode(a) == encode(b) and dispatched(a) == ["t2"]
    assert encode(restored.snapshot()) == encode(m.state.snapshot())


def test_pools_are_shared_across_workflows_and_wait_visibly_until_set() -> None:
    m = Master()
    m.define(wf("a", shell("x", pool="db"), shell("y", pool="db")))
    m.define(wf("b", shell("z", pool="db")))
    ia = m.start("a")
    ib = m.start("b")
    assert not of(m.log, e.DispatchTask)
    reasons = {ev.task: ev.reason for ev in of(m.log, e.TaskStateChanged, state=SUBMITTED) if ev.reason}
    assert reasons["z"] == "waiting for a slot: pool db has no slots (easysched pool set db --slots N)"
    events = m.send(c.SetPool(pool="db", slots=2))
    assert of(events, e.PoolSet) and dispatched(events) == ["x", "y"]
    assert dispatched(m.run_ok(ia, "x")) == ["z"]
    assert m.task(ib, "z").state == DISPATCH
    (rej,) = m.send(c.SetPool(pool="nope", slots=-1))
    assert isinstance(rej, e.CommandRejected) and "unknown pool" in rej.reason


def test_max_parallel_tasks_bounds_one_instance_only() -> None:
    m = Master()
    m.define(fan("f", 4, max_parallel_tasks=2))  # type: ignore[arg-type]
    i1 = m.start("f")
    i2 = m.start("f")
    assert sorted((d.instance, d.task) for d in of(m.log, e.DispatchTask)) == sorted(
        [(i1, "t0"), (i1, "t1"), (i2, "t0"), (i2, "t1")]
    )
    assert dispatched(m.run_ok(i2, "t1")) == ["t2"]


def test_max_active_instances_queues_further_starts_in_serial_wait() -> None:
    m = Master()
    m.define(wf("one", shell("s"), max_active_instances=1))
    first = m.start("one")
    second = m.start("one")
    third = m.start("one")
    assert m.wf_state(second) == "SERIAL_WAIT" and not m.state.instances[second].tasks
    (held,) = of(m.log, e.WorkflowStateChanged, instance=second, state="SERIAL_WAIT")
    assert "max_active_instances 1 of workflow one reached (1 active, 1 queued)" in held.reason
    # A stop of a waiting instance ends it at once; the next in line keeps its place.
    m.send(c.StopWorkflow(instance=second))
    assert m.wf_state(second) == "STOP"
    events = m.run_ok(first, "s")
    assert of(events, e.WorkflowStateChanged, instance=third, state="RUNNING_EXECUTION")
    assert [(d.instance, d.task) for d in of(events, e.DispatchTask)] == [(third, "s")]
