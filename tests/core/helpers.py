"""Builders and a driver for core tests: definitions in one line, commands stepped in order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.codec import decode_command, decode_snapshot, encode
from easysched_es.core.definitions import (
    Dependence,
    DependentTask,
    DependItem,
    ShellTask,
    TaskDef,
    WorkflowDefinition,
)
from easysched_es.core.state import State
from easysched_es.core.step import step, step_record

E = TypeVar("E", bound=e.Event)

SECOND = 1000
T0 = 1_709_546_400_000  # 2024-03-04T10:00:00Z, a Monday


def shell(name: str, command: str = "true", **kw: Any) -> ShellTask:
    return ShellTask(name=name, command=command, **kw)


def dep(
    name: str,
    *items: DependItem,
    relation: str = "AND",
    check_interval: float = 10.0,
    failure_policy: str = "FAIL",
    failure_waiting_time: float = 0.0,
    **kw: Any,
) -> DependentTask:
    return DependentTask(
        name=name,
        dependence=Dependence(
            items=list(items),
            relation=relation,  # type: ignore[arg-type]
            check_interval=check_interval,
            failure_policy=failure_policy,  # type: ignore[arg-type]
            failure_waiting_time=failure_waiting_time,
        ),
        **kw,
    )


def item(workflow: str, task: str | None = None, cycle: str = "DAY", date_value: str = "today") -> DependItem:
    return DependItem(workflow=workflow, task=task, cycle=cycle, date_value=date_value)  # type: ignore[arg-type]


def wf(name: str, *tasks: TaskDef, **kw: Any) -> WorkflowDefinition:
    return WorkflowDefinition(name=name, tasks=list(tasks), **kw)


def of(events: Iterable[e.Event], cls: type[E], **match: Any) -> list[E]:
    """The events of one type whose fields equal `match`."""
    return [ev for ev in events if isinstance(ev, cls) and all(getattr(ev, k) == v for k, v in match.items())]


def tags(events: Iterable[e.Event]) -> list[str]:
    return [type(ev).__struct_config__.tag for ev in events]  # type: ignore[attr-defined]


def task_states(events: Iterable[e.Event], task: str | None = None) -> list[str]:
    return [ev.state for ev in of(events, e.TaskStateChanged) if task is None or ev.task == task]


class Master:
    """Steps commands through the core at consecutive offsets, stamping `at` with a clock."""

    def __init__(self, now: int = T0) -> None:
        self.state = State()
        self.offset = -1
        self.now = now
        self.log: list[e.Event] = []

    def send(self, cmd: c.Command) -> list[e.Event]:
        if cmd.at == 0:
            cmd.at = self.now
        # Through the codec, as from the log (a float field given an int comes back a float).
        cmd = decode_command(encode(cmd))
        self.offset += 1
        _, events = step(self.state, cmd, self.offset)
        self.log.extend(events)
        return events

    def send_record(self, payload: bytes) -> list[e.Event]:
        self.offset += 1
        _, events, _tag = step_record(self.state, payload, self.offset)
        self.log.extend(events)
        return events

    # -- shortcuts ---------------------------------------------------------------------------
    def define(self, definition: WorkflowDefinition, release: bool = True) -> list[e.Event]:
        return self.send(c.DefineWorkflow(definition=definition, release=release))

    def start(self, workflow: str, **kw: Any) -> str:
        events = self.send(c.StartWorkflow(workflow=workflow, **kw))
        started = of(events, e.WorkflowStarted)
        assert started, events
        return started[0].instance

    def tick(self, seconds: float) -> list[e.Event]:
        """Advance the clock and deliver the CheckDue the ticker would append."""
        self.now += round(seconds * SECOND)
        return self.send(c.CheckDue(now=self.now))

    def started(self, inst: str, task: str, attempt: int = 1, pid: int = 4242) -> list[e.Event]:
        return self.send(c.TaskStarted(instance=inst, task=task, attempt=attempt, pid=pid, worker="w1"))

    def finished(
        self, inst: str, task: str, attempt: int = 1, exit_code: int = 0, killed: bool = False
    ) -> list[e.Event]:
        return self.send(
            c.TaskFinished(instance=inst, task=task, attempt=attempt, exit_code=exit_code, killed=killed, worker="w1")
        )

    def run_ok(self, inst: str, task: str, attempt: int = 1) -> list[e.Event]:
        return self.started(inst, task, attempt) + self.finished(inst, task, attempt)

    # -- views -------------------------------------------------------------------------------
    def task(self, inst: str, task: str) -> Any:
        return self.state.instances[inst].tasks[task]

    def wf_state(self, inst: str) -> str:
        return self.state.instances[inst].state

    def timers(self) -> dict[tuple[str, str, str], int]:
        return {(t.instance, t.task, t.kind): t.due for t in self.state.queue.entries()}

    def snapshot_bytes(self, *, ignore_clock: bool = False) -> bytes:
        snap = decode_snapshot(encode(self.state.snapshot()))
        if ignore_clock:
            snap.last_offset = 0
            snap.now = 0
        return encode(snap)
