"""A deterministic random workload driven through the real core, as the master would run it.

`Simulation` plays clients, workers and the clock: it picks plausible commands (start, stop,
pause, resume, kill, worker reports answering the dispatch and kill effects, CheckDue ticks),
appends each to the commands stream, folds it with `step` and appends the resulting
`EventBatch` to the events stream. Same seed, same logs. Tests and `bench/projection.py`
project what it wrote and compare with `sim.state`, the master's own fold.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.codec import encode
from easysched_es.core.definitions import (
    Dependence,
    DependentTask,
    DependItem,
    ShellTask,
    WorkflowDefinition,
)
from easysched_es.core.state import WF_PAUSE, WF_READY_PAUSE, State
from easysched_es.core.step import step
from easysched_es.log.base import Stream
from projections.model import tag_of

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z

ETL = WorkflowDefinition(
    name="etl_daily",
    description="extract, transform, load",
    tasks=[
        ShellTask(name="extract", command="echo extract", retry_times=2, retry_interval=5.0),
        ShellTask(name="transform", command="echo transform", upstream=["extract"], timeout=30.0,
                  timeout_strategy="FAILED"),
        ShellTask(name="load", command="echo load", upstream=["transform"], retry_times=1),
    ],
)
REPORT = WorkflowDefinition(
    name="report",
    tasks=[
        DependentTask(
            name="wait_etl",
            dependence=Dependence(items=[DependItem(workflow="etl_daily")], check_interval=10.0,
                                  failure_policy="WAIT", failure_waiting_time=60.0),
        ),
        ShellTask(name="render", command="echo render", upstream=["wait_etl"]),
    ],
)
DEFINITIONS = (ETL, REPORT)

Attempt = tuple[str, str, int]


class Simulation:
    """Drives `step` with random commands; writes both logs when streams are given.

    Without a commands stream, command offsets are those an empty embedded log would assign
    (8-byte header + payload each), so the caller can append the commands in bulk later.
    """

    def __init__(
        self,
        seed: int = 0,
        commands: Stream | None = None,
        events: Stream | None = None,
        start_ms: int = T0,
        max_active: int = 6,
        dependent_share: float = 0.5,
        record: bool = True,
    ) -> None:
        self.rng = random.Random(seed)
        self.commands_stream = commands
        self.events_stream = events
        self.state = State(0)
        self.now = start_ms
        self.max_active = max_active
        self.dependent_share = dependent_share
        self.active: dict[str, None] = {}  # instances not final, in start order
        self.record = record
        self.batches: list[e.EventBatch] = []  # every batch, when `record`
        self._next_offset = 0
        self.dispatched: dict[Attempt, None] = {}  # dispatched, not started yet (insertion order)
        self.running: dict[Attempt, int] = {}  # started: pid
        self.to_kill: dict[Attempt, None] = {}  # kill effect seen, process not confirmed gone
        self._pid = 1000

    # ------------------------------------------------------------------ applying

    def submit(self, command: c.Command) -> e.EventBatch:
        """Append one command, fold it, append its batch and react to its effects."""
        payload = encode(command)
        if self.commands_stream is not None:
            (offset,) = self.commands_stream.append([payload])
        else:
            offset = self._next_offset
            self._next_offset += 8 + len(payload)
        _, out = step(self.state, command, offset)
        batch = e.EventBatch(offset=offset, at=command.at, command=tag_of(type(command)), events=out)
        if self.events_stream is not None:
            self.events_stream.append([encode(batch)])
        if self.record:
            self.batches.append(batch)
        for ev in out:
            if isinstance(ev, (e.WorkflowStarted, e.WorkflowReopened)):
                self.active[ev.instance] = None
            elif isinstance(ev, e.WorkflowFinished):
                self.active.pop(ev.instance, None)
            elif isinstance(ev, e.DispatchTask):
                self.dispatched[(ev.instance, ev.task, ev.attempt)] = None
            elif isinstance(ev, e.KillTaskProcess):
                key = (ev.instance, ev.task, ev.attempt)
                if key in self.dispatched or key in self.running:
                    self.to_kill[key] = None
        return batch

    def definition_commands(self) -> list[c.Command]:
        """The commands defining every workflow of the workload (released)."""
        return [c.DefineWorkflow(at=self._tick(), definition=d) for d in DEFINITIONS]

    def define_all(self) -> None:
        """Submit `definition_commands()`."""
        for command in self.definition_commands():
            self.submit(command)

    # ------------------------------------------------------------------ choosing

    def run(self, n: int) -> None:
        """Submit `n` random commands (after defining the workflows, if not done yet)."""
        if not self.state.workflows:
            self.define_all()
        for _ in range(n):
            self.submit(self.random_command())

    def random_command(self) -> c.Command:
        """One plausible next command, given what the workers and clients know."""
        rng = self.rng
        at = self._tick()
        active = self.active
        roll = rng.random()
        if self.to_kill and roll < 0.5:
            key = self._pick(self.to_kill)
            del self.to_kill[key]
            self.dispatched.pop(key, None)
            self.running.pop(key, None)
            return c.TaskFinished(at=at, instance=key[0], task=key[1], attempt=key[2], exit_code=-15, killed=True)
        if self.dispatched and roll < 0.45:
            key = self._pick(self.dispatched)
            del self.dispatched[key]
            self._pid += 1
            self.running[key] = self._pid
            return c.TaskStarted(at=at, instance=key[0], task=key[1], attempt=key[2], pid=self._pid,
                                 worker=f"worker-{self._pid % 3}")
        if self.running and roll < 0.75:
            key = self._pick(self.running)
            del self.running[key]
            self.to_kill.pop(key, None)
            code = 0 if rng.random() < 0.8 else rng.choice((1, 2, 127))
            return c.TaskFinished(at=at, instance=key[0], task=key[1], attempt=key[2], exit_code=code)
        if roll < 0.82 and len(active) < self.max_active:
            wf = (REPORT if rng.random() < self.dependent_share else ETL).name
            if not self.state.workflows[wf].online:
                return c.SetReleaseState(at=at, workflow=wf, online=True)
            return c.StartWorkflow(at=at, workflow=wf)
        if roll < 0.90:
            due = self.state.queue.earliest()
            now = at if due is None else max(at, due)
            self.now = now
            return c.CheckDue(at=now, now=now)
        if active and roll < 0.975:
            inst = self.state.instances[rng.choice(list(active))]
            choice = rng.random()
            if inst.state in (WF_PAUSE, WF_READY_PAUSE):
                return c.ResumeWorkflow(at=at, instance=inst.id)
            if choice < 0.35:
                return c.StopWorkflow(at=at, instance=inst.id)
            if choice < 0.6:
                return c.PauseWorkflow(at=at, instance=inst.id)
            task = rng.choice(list(inst.tasks) or ["extract"])
            return c.KillTask(at=at, instance=inst.id, task=task)
        if roll < 0.985:
            if self.running:
                key = self._pick(self.running)
                del self.running[key]
                return c.TaskLost(at=at, instance=key[0], task=key[1], attempt=key[2], reason="worker restarted")
            return c.Heartbeat(at=at, worker="worker-0")
        if roll < 0.99:
            return c.DefineWorkflow(at=at, definition=ETL)  # a new version of the same workflow
        return c.Heartbeat(at=at, worker=f"worker-{rng.randrange(3)}")

    def _pick(self, keys: dict[Attempt, object]) -> Attempt:
        # Mostly the oldest (a worker answers in order), sometimes any: reports can interleave.
        if self.rng.random() < 0.7:
            return next(iter(keys))
        return self.rng.choice(list(keys))

    def _tick(self) -> int:
        self.now += self.rng.randrange(0, 3000)
        return self.now


def event_count(batches: Sequence[e.EventBatch]) -> int:
    """Total events in `batches`."""
    return sum(len(b.events) for b in batches)
