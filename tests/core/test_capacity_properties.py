"""Slots are never exceeded and never left idle, across random sequences.

A hypothesis state machine drives the fold with fan-out workflows in two worker groups (one
through a `*` worker), a pool and `max_parallel_tasks`/`max_active_instances`, heartbeats and
pool changes that change capacity, workers lost by heartbeat timeout,
worker reports, kills, stops, pauses and resumes. After every step, recounting from the task
states alone:
- a resource a dispatch of this step needed is within its limit (for a tick, the limit before
  it: the tick may lose a worker after its timers dispatched);
  (a lowered limit kills nothing: what already runs goes on; heartbeats may withdraw a limit);
- no waiting task could take its slots (the drain is work-conserving);
- every waiting task is SUBMITTED_SUCCESS in a running instance, every SUBMITTED SHELL task
  of a running instance waits.
At the end the log is replayed from scratch and from a snapshot, byte for byte.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from easysched_es.core import capacity
from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.codec import decode_snapshot, encode
from easysched_es.core.definitions import ShellTask
from easysched_es.core.state import DISPATCH, RUNNING, SUBMITTED, WF_FINAL, WF_RUNNING, WF_SERIAL_WAIT, State
from easysched_es.core.step import step_record
from easysched_es.core.tasks.base import version
from tests.core.helpers import T0, shell, wf

DEFINITIONS = [
    wf("fan", *[shell(f"t{i}", priority=p) for i, p in enumerate(["HIGH", "LOW", "MEDIUM", "HIGHEST", "LOWEST"])]),
    wf(
        "mixed",
        shell("g1", worker_group="gpu", retry_times=1),
        shell("g2", worker_group="gpu"),
        shell("c1", worker_group="cpu", retry_times=1, retry_interval=2.0),
        shell("after", upstream=["g1", "c1"]),
        priority="HIGH",
    ),
    wf("chain", shell("a", retry_times=2), shell("b", upstream=["a"]), failure_strategy="END"),
    wf(
        "pooled",
        *[shell(f"p{i}", pool="db" if i % 2 else None, priority="LOW" if i == 3 else "MEDIUM") for i in range(4)],
        max_parallel_tasks=2,
        max_active_instances=2,
    ),
]
WORKERS = {"w_gpu": "gpu", "w_gpu2": "gpu", "w_all": "*"}


def recount(state: State) -> dict[str, int]:
    counts: dict[str, int] = {}
    for inst in state.instances.values():
        if inst.state in WF_FINAL:
            continue
        for ti in inst.tasks.values():
            if ti.type == "SHELL" and (ti.kill_pending or ti.state in (DISPATCH, RUNNING)):
                tdef = version(state, inst).task(ti.name)
                assert isinstance(tdef, ShellTask)
                for r in capacity.resources(state, inst, tdef):
                    counts[r] = counts.get(r, 0) + 1
    return counts


def limits(state: State, counts: dict[str, int]) -> dict[str, int | None]:
    return {r: capacity.limit(state, r) for r in set(counts) | {"g:gpu", "g:*", "p:db"}}


class SlotMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = State()
        self.now = T0
        self.records: list[bytes] = []
        self.batches: list[bytes] = []
        self.instances: list[str] = []

    def send(self, cmd: c.Command) -> list[e.Event]:
        cmd.at = self.now
        payload = encode(cmd)
        limits_before = limits(self.state, recount(self.state))
        _, events, _tag = step_record(self.state, payload, len(self.records))
        self.records.append(payload)
        self.batches.append(encode(events))
        after = recount(self.state)
        limits_after = limits(self.state, after)
        needed: set[str] = set()
        for ev in events:
            if isinstance(ev, e.DispatchTask):
                inst = self.state.instances[ev.instance]
                tdef = version(self.state, inst).task(ev.task)
                assert isinstance(tdef, ShellTask)
                needed.update(capacity.resources(self.state, inst, tdef))
        for r in needed:
            bound = (limits_before if isinstance(cmd, c.CheckDue) else limits_after).get(r)
            assert bound is None or after.get(r, 0) <= bound, (r, after, bound, cmd)
        return events

    @initialize()
    def define(self) -> None:
        for d in DEFINITIONS:
            self.send(c.DefineWorkflow(definition=d))
        for worker, group in WORKERS.items():
            self.send(c.Heartbeat(worker=worker, group=group, slots=1))

    @rule(workflow=st.sampled_from([d.name for d in DEFINITIONS]))
    def start(self, workflow: str) -> None:
        for ev in self.send(c.StartWorkflow(workflow=workflow)):
            if isinstance(ev, e.WorkflowStarted):
                self.instances.append(ev.instance)

    @rule(worker=st.sampled_from(sorted(WORKERS)), slots=st.integers(-1, 4), watched=st.booleans())
    def heartbeat(self, worker: str, slots: int, watched: bool) -> None:
        self.send(c.Heartbeat(worker=worker, group=WORKERS[worker], slots=slots, timeout_ms=5_000 if watched else 0))

    @rule(slots=st.integers(-1, 2))
    def set_pool(self, slots: int) -> None:
        self.send(c.SetPool(pool="db", slots=slots))

    @rule(delta=st.sampled_from([0, 1_000, 3_000, 6_000]))
    def tick(self, delta: int) -> None:
        self.now += delta
        self.send(c.CheckDue(now=self.now))

    def _attempts(self, *states: str) -> list[tuple[str, str, int, bool]]:
        return [
            (i, t.name, t.attempt, t.kill_pending)
            for i, inst in self.state.instances.items()
            for t in inst.tasks.values()
            if t.type == "SHELL" and (t.state in states or t.kill_pending)
        ]

    @precondition(lambda self: self._attempts(DISPATCH))
    @rule(data=st.data())
    def started(self, data: st.DataObject) -> None:
        inst, task, attempt, _ = data.draw(st.sampled_from(self._attempts(DISPATCH)))
        self.send(c.TaskStarted(instance=inst, task=task, attempt=attempt, pid=7, worker="w_all"))

    @precondition(lambda self: self._attempts(DISPATCH, RUNNING))
    @rule(data=st.data(), code=st.sampled_from([0, 0, 1]))
    def finished(self, data: st.DataObject, code: int) -> None:
        inst, task, attempt, killed = data.draw(st.sampled_from(self._attempts(DISPATCH, RUNNING)))
        self.send(c.TaskFinished(instance=inst, task=task, attempt=attempt, exit_code=-15 if killed else code,
                                 killed=killed, worker="w_all"))

    @precondition(lambda self: self.instances)
    @rule(data=st.data(), action=st.sampled_from(["stop", "pause", "resume", "kill"]))
    def control(self, data: st.DataObject, action: str) -> None:
        inst = data.draw(st.sampled_from(self.instances))
        if action == "kill":
            names = sorted(self.state.instances[inst].tasks)
            if names:
                self.send(c.KillTask(instance=inst, task=data.draw(st.sampled_from(names))))
            return
        cls = {"stop": c.StopWorkflow, "pause": c.PauseWorkflow, "resume": c.ResumeWorkflow}[action]
        self.send(cls(instance=inst))

    @invariant()
    def max_active_instances_hold(self) -> None:
        states = [i.state for i in self.state.instances.values() if i.workflow == "pooled"]
        active = sum(s not in WF_FINAL and s != WF_SERIAL_WAIT for s in states)
        assert active <= 2 or WF_SERIAL_WAIT not in states, states
        assert active >= 2 or WF_SERIAL_WAIT not in states, ("an instance waits with a free place", states)
        assert capacity.active_instances(self.state, "pooled") == active

    @invariant()
    def waiting_is_exact_and_work_conserving(self) -> None:
        cap = self.state.capacity
        for w in cap.waiting():
            inst = self.state.instances[w.instance]
            assert inst.state == WF_RUNNING and inst.tasks[w.task].state == SUBMITTED, w
            assert capacity.blocked(self.state, tuple(w.resources)), ("idle slot while waiting", w)
        for inst in self.state.instances.values():
            if inst.state == WF_RUNNING:
                for ti in inst.tasks.values():
                    if ti.type == "SHELL" and ti.state == SUBMITTED:
                        assert cap.entry(inst.id, ti.name) is not None, (inst.id, ti.name)

    def teardown(self) -> None:
        for cut in (0, len(self.records) // 2):
            replayed = State()
            batches: list[bytes] = []
            for offset, payload in enumerate(self.records):
                _, events, _tag = step_record(replayed, payload, offset)
                batches.append(encode(events))
                if offset == cut:
                    replayed = State.restore(decode_snapshot(encode(replayed.snapshot())))
            assert batches == self.batches
            assert encode(replayed.snapshot()) == encode(self.state.snapshot())


TestSlots = SlotMachine.TestCase
TestSlots.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
