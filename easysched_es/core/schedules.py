"""Schedules as state: one cron schedule per workflow, its next fire ONE delay-queue entry.

The entry is keyed ("schedule", WORKFLOW, "SCHEDULE") and due at the next nominal fire time.
When a `CheckDue(now)` fires it, the fold knows exactly which nominal times passed since:

- the catch-up window decides which of them still run. `catchup_window` 0 (the default,
  DolphinScheduler's behaviour after a restart) runs only the latest; -1 runs them all; N > 0
  runs those of the last N ms. Older ones are recorded as SKIPPED with the reason.
- the overlap policy decides what a fire does while an instance this schedule started still
  runs: SKIP (default), BUFFER_ONE (keep one fire until it ends), BUFFER_ALL (keep up to
  `BUFFER_LIMIT`), CANCEL_OTHER (stop it, start when it has stopped), ALLOW_ALL (start anyway).
  DolphinScheduler's execution types map onto them: PARALLEL = ALLOW_ALL, SERIAL_WAIT =
  BUFFER_ALL, SERIAL_DISCARD = SKIP, SERIAL_PRIORITY = CANCEL_OTHER.

A fire starts an instance with `schedule_time` = the nominal time (not the tick's time) and
command type SCHEDULER; every fire is a `ScheduleFired` event with its nominal time in UTC,
so a replay under other zone rules diverges visibly in `verify`. Offline, delete and taking
the workflow OFFLINE remove the entry in the same step. At most `FIRES_PER_TICK` fires are
handled per tick; the rest stay due (the entry is re-armed at the next missed one), so a
long catch-up never stalls one step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from easysched_es.core import commands as c
from easysched_es.core import cron, time_params, workflow
from easysched_es.core import events as e
from easysched_es.core.state import WF_FINAL, WF_READY_STOP, Schedule, State, WorkflowInstance
from easysched_es.core.tasks.base import Out
from easysched_es.core.zones import ZoneError
from easysched_es.core.zones import zone as load_zone

SCHEDULE = "SCHEDULE"
SCHEDULE_TIMERS = "schedule"  # the `instance` part of a schedule's delay-queue key
SCHEDULER = "SCHEDULER"  # DolphinScheduler's command type for a cron fire

OVERLAP = ("SKIP", "BUFFER_ONE", "BUFFER_ALL", "CANCEL_OTHER", "ALLOW_ALL")
DS_EXECUTION_TYPES = {
    "PARALLEL": "ALLOW_ALL",
    "SERIAL_WAIT": "BUFFER_ALL",
    "SERIAL_DISCARD": "SKIP",
    "SERIAL_PRIORITY": "CANCEL_OTHER",
}
STARTED, SKIPPED, BUFFERED = "STARTED", "SKIPPED", "BUFFERED"

BUFFER_LIMIT = 1000  # BUFFER_ALL keeps at most this many fires (Temporal's limit too)
FIRES_PER_TICK = 1000  # fires handled by one CheckDue; the rest come at the next tick
LISTED_SKIPS = 100  # skipped fires listed one event each; a longer run is one range event
COUNT_LIMIT = 100_000  # a skipped range is counted up to this many fires (beyond: count -1)


class ScheduleError(ValueError):
    """A schedule command that cannot apply; the message says why."""


# ---- queries the rest of the fold uses -------------------------------------------------


def zone_of(state: State, workflow_name: str) -> str:
    """The zone a workflow's instances use for time parameters: its schedule's, else "" (UTC)."""
    s = state.schedules.get(workflow_name)
    return "" if s is None or s.zone == "UTC" else s.zone


def upcoming(s: Schedule, count: int, after: int) -> list[int]:
    """The next `count` nominal fire times strictly after `after` (bounded by start/end)."""
    out: list[int] = []
    t: int | None = after
    while len(out) < count and t is not None:
        t = _next(s, t)
        if t is not None:
            out.append(t)
    return out


def overlap_policy(name: str) -> str:
    """Our policy name for `name` (ours or a DolphinScheduler execution type). Raises ScheduleError."""
    upper = name.upper()
    if upper in OVERLAP:
        return upper
    if upper in DS_EXECUTION_TYPES:
        return DS_EXECUTION_TYPES[upper]
    names = ", ".join((*OVERLAP, *DS_EXECUTION_TYPES))
    raise ScheduleError(f"overlap: unknown policy {name!r}; use one of {names}")


# ---- arming and cancelling the one entry -----------------------------------------------


def _next(s: Schedule, after: int) -> int | None:
    t = cron.next_fire(s.cron, max(after, (s.start or 0) - 1), s.zone)
    if t is None or (s.end is not None and t > s.end):
        return None
    return t


def _key(s: Schedule) -> tuple[str, str, str]:
    return (SCHEDULE_TIMERS, s.workflow, SCHEDULE)


def _arm(state: State, s: Schedule, at: int | None, out: Out) -> None:
    """Make the entry due at nominal time `at` (None: no entry)."""
    s.next_fire = at
    if at is None:
        return
    state.queue.set(_key(s), at)
    out.append(e.TimerSet(instance=SCHEDULE_TIMERS, task=s.workflow, kind=SCHEDULE, due=at))


def _disarm(state: State, s: Schedule, reason: str, out: Out) -> None:
    """Remove the entry and drop buffered fires, in this step (an offline schedule fires nothing)."""
    if state.queue.cancel(_key(s)):
        out.append(e.TimerCancelled(instance=SCHEDULE_TIMERS, task=s.workflow, kind=SCHEDULE, reason=reason))
    s.next_fire = None
    for nominal in s.buffer:
        out.append(e.ScheduleFired(workflow=s.workflow, nominal=nominal, outcome=SKIPPED, reason=f"buffered; {reason}"))
    s.buffer = []


# ---- command handlers ------------------------------------------------------------------


def _rejected(reason: str) -> ScheduleError:
    return ScheduleError(reason)


def _set(state: State, cmd: c.SetSchedule, offset: int, out: Out) -> None:
    if cmd.workflow not in state.workflows:
        raise _rejected(f"unknown workflow {cmd.workflow!r}: define it before scheduling it")
    reason = cron.validate(cmd.cron)
    if reason:
        raise _rejected(f"cron: {reason}")
    try:
        load_zone(cmd.timezone)
        overlap = overlap_policy(cmd.overlap)
    except (ZoneError, ScheduleError) as exc:
        raise _rejected(f"timezone: {exc}" if isinstance(exc, ZoneError) else str(exc)) from None
    if cmd.start is not None and cmd.end is not None and cmd.end < cmd.start:
        raise _rejected("end is before start")
    if cmd.catchup_window < -1:
        raise _rejected("catchup_window must be -1 (unlimited), 0 (the latest missed fire) or a duration in ms")
    for key, value in cmd.params.items():
        bad = time_params.check(value)
        if bad:
            raise _rejected(f"parameter {key!r}: {bad}")
    old = state.schedules.get(cmd.workflow)
    online = cmd.online if cmd.online is not None else (old.online if old is not None else True)
    s = Schedule(workflow=cmd.workflow, cron=cmd.cron, zone=cmd.timezone, start=cmd.start, end=cmd.end,
                 overlap=overlap, catchup_window=cmd.catchup_window, online=online, params=dict(cmd.params))
    if old is not None:
        s.running, s.buffer = old.running, old.buffer
        if state.queue.cancel(_key(old)):
            out.append(e.TimerCancelled(instance=SCHEDULE_TIMERS, task=s.workflow, kind=SCHEDULE,
                                        reason="schedule changed"))
    state.schedules[cmd.workflow] = s
    out.append(e.ScheduleSet(workflow=s.workflow, cron=s.cron, timezone=s.zone, overlap=s.overlap,
                             catchup_window=s.catchup_window, online=s.online, start=s.start, end=s.end,
                             params=s.params))
    if s.online and state.workflows[s.workflow].online:
        _arm(state, s, _next(s, state.now), out)
    elif not s.online:
        _disarm(state, s, "schedule is OFFLINE", out)


def _schedule(state: State, workflow_name: str) -> Schedule:
    s = state.schedules.get(workflow_name)
    if s is None:
        raise _rejected(f"workflow {workflow_name!r} has no schedule (easysched schedule set {workflow_name} --cron)")
    return s


def _set_state(state: State, cmd: c.SetScheduleState, offset: int, out: Out) -> None:
    s = _schedule(state, cmd.workflow)
    if cmd.online and not state.workflows[cmd.workflow].online:
        raise _rejected(f"workflow {cmd.workflow!r} is OFFLINE: release it before putting its schedule online")
    if s.online == cmd.online:
        raise _rejected(f"the schedule of {cmd.workflow!r} is already {'ONLINE' if s.online else 'OFFLINE'}")
    s.online = cmd.online
    out.append(e.ScheduleStateChanged(workflow=s.workflow, online=s.online))
    if s.online:
        _arm(state, s, _next(s, state.now), out)  # fires while offline are not missed: from now on
    else:
        _disarm(state, s, "schedule put OFFLINE", out)


def _delete(state: State, cmd: c.DeleteSchedule, offset: int, out: Out) -> None:
    s = _schedule(state, cmd.workflow)
    _disarm(state, s, "schedule deleted", out)
    del state.schedules[cmd.workflow]
    out.append(e.ScheduleStateChanged(workflow=s.workflow, online=False, deleted=True))


def _trigger(state: State, cmd: c.TriggerSchedule, offset: int, out: Out) -> None:
    s = _schedule(state, cmd.workflow)
    if not state.workflows[s.workflow].online:
        raise _rejected(f"workflow {s.workflow!r} is OFFLINE: release it before triggering its schedule")
    _fire(state, s, cmd.at // 1000 * 1000, offset, out, "triggered by hand")


def on_release(state: State, workflow_name: str, online: bool, out: Out) -> None:
    """A workflow went OFFLINE: its schedule goes OFFLINE too (DolphinScheduler). ONLINE arms an online
    schedule that has no entry (one set while the workflow was OFFLINE)."""
    s = state.schedules.get(workflow_name)
    if s is not None and online and s.online and s.next_fire is None:
        _arm(state, s, _next(s, state.now), out)
    elif s is not None and not online and s.online:
        s.online = False
        out.append(e.ScheduleStateChanged(workflow=s.workflow, online=False, reason="workflow put OFFLINE"))
        _disarm(state, s, "workflow put OFFLINE", out)


# ---- firing ----------------------------------------------------------------------------


def on_due(state: State, workflow_name: str, due: int, now: int, offset: int, out: Out) -> None:
    """The schedule's entry fired at tick `now`: handle every nominal time in [due, now]."""
    s = state.schedules[workflow_name]
    s.next_fire = None
    out.append(e.TimerFired(instance=SCHEDULE_TIMERS, task=s.workflow, kind=SCHEDULE, due=due))
    if s.catchup_window < 0:
        first_run: int | None = due
    elif s.catchup_window == 0:
        after_due = _next(s, due)
        # The usual case (one fire passed) needs no search; after downtime, find the latest.
        first_run = due if after_due is None or after_due > now else cron.last_fire(s.cron, now, after_due, s.zone)
        if s.end is not None and first_run > s.end:
            first_run = cron.last_fire(s.cron, s.end, due, s.zone)
    else:
        first_run = _next(s, max(now - s.catchup_window, due) - 1)
    window = "the latest missed fire" if s.catchup_window == 0 else f"{s.catchup_window} ms"
    _skip_range(s, due, first_run if first_run is not None and first_run <= now else None, now,
                f"missed: older than the catch-up window ({window})", out)
    t, handled = first_run, 0
    while t is not None and t <= now and handled < FIRES_PER_TICK:
        _fire(state, s, t, offset, out, "")
        handled += 1
        t = _next(s, t)
    if s.workflow in state.schedules and s.online:
        _arm(state, s, t, out)


def _skip_range(s: Schedule, first: int, stop: int | None, now: int, reason: str, out: Out) -> None:
    """Record the fires in [first, stop) (stop None: up to `now`) as skipped."""
    listed: list[int] = []
    t: int | None = first
    while t is not None and (t < stop if stop is not None else t <= now) and len(listed) <= LISTED_SKIPS:
        listed.append(t)
        t = _next(s, t)
    if len(listed) <= LISTED_SKIPS:
        for nominal in listed:
            out.append(e.ScheduleFired(workflow=s.workflow, nominal=nominal, outcome=SKIPPED, reason=reason))
        return
    count, last = len(listed), listed[-1]
    while t is not None and (t < stop if stop is not None else t <= now) and count < COUNT_LIMIT:
        count, last = count + 1, t
        t = _next(s, t)
    more = t is not None and (t < stop if stop is not None else t <= now)
    if more:  # beyond the counting limit: the last one is found without walking there
        last = cron.last_fire(s.cron, (stop - 1) if stop is not None else now, last, s.zone)
    out.append(e.ScheduleFired(workflow=s.workflow, nominal=first, outcome=SKIPPED, reason=reason, last=last,
                               count=-1 if more else count))


def _running(state: State, s: Schedule) -> list[WorkflowInstance]:
    live = [state.instances[i] for i in s.running if i in state.instances]
    return [inst for inst in live if inst.state not in WF_FINAL]


def _fire(state: State, s: Schedule, nominal: int, offset: int, out: Out, why: str) -> None:
    """One nominal fire time: start, skip or buffer it by the overlap policy."""
    if not state.workflows[s.workflow].online:
        out.append(e.ScheduleFired(workflow=s.workflow, nominal=nominal, outcome=SKIPPED,
                                   reason="workflow is OFFLINE"))
        return
    running = _running(state, s)
    if running and s.overlap != "ALLOW_ALL":
        ids = ", ".join(i.id for i in running)
        if s.overlap == "SKIP":
            out.append(e.ScheduleFired(workflow=s.workflow, nominal=nominal, outcome=SKIPPED,
                                       reason=f"overlap SKIP: {ids} still running"))
            return
        limit = 1 if s.overlap in ("BUFFER_ONE", "CANCEL_OTHER") else BUFFER_LIMIT
        if s.overlap == "CANCEL_OTHER":
            for old in s.buffer:
                out.append(e.ScheduleFired(workflow=s.workflow, nominal=old, outcome=SKIPPED,
                                           reason="overlap CANCEL_OTHER: a newer fire replaces it"))
            s.buffer = []
        if len(s.buffer) >= limit:
            out.append(e.ScheduleFired(workflow=s.workflow, nominal=nominal, outcome=SKIPPED,
                                       reason=f"overlap {s.overlap}: buffer full ({limit}) while {ids} runs"))
            return
        s.buffer.append(nominal)
        out.append(e.ScheduleFired(workflow=s.workflow, nominal=nominal, outcome=BUFFERED,
                                   reason=f"overlap {s.overlap}: waits for {ids}"))
        if s.overlap == "CANCEL_OTHER":
            for inst in running:
                if inst.state != WF_READY_STOP:
                    workflow.stop(state, inst, out)
        return
    _start(state, s, nominal, offset, out, why)


def _start(state: State, s: Schedule, nominal: int, offset: int, out: Out, why: str) -> None:
    instance_id = state.new_instance_id(offset)  # several fires (or schedules) in one step: P-O, P-O-1, ...
    out.append(e.ScheduleFired(workflow=s.workflow, nominal=nominal, outcome=STARTED, instance=instance_id,
                               reason=why))
    s.running.append(instance_id)  # before the start: an instance that ends at once unregisters itself
    try:
        workflow.start_instance(state, s.workflow, instance_id, s.params, nominal,
                                "" if s.zone == "UTC" else s.zone, SCHEDULER, out)
    except time_params.TimeExprError as exc:  # nothing changed yet: params resolve first
        s.running.remove(instance_id)
        out[-1] = e.ScheduleFired(workflow=s.workflow, nominal=nominal, outcome=SKIPPED, reason=f"parameter: {exc}")


def _finished(state: State, inst: WorkflowInstance, out: Out) -> None:
    """An instance ended: if a schedule started it, start the next buffered fire."""
    if inst.command_type != SCHEDULER:
        return
    s = state.schedules.get(inst.workflow)
    if s is None or inst.id not in s.running:
        return
    s.running.remove(inst.id)
    if s.buffer and not _running(state, s):
        _start(state, s, s.buffer.pop(0), state.last_offset, out, "from the buffer")


def _reopened(state: State, inst: WorkflowInstance) -> None:
    """A rerun or recover of an instance this schedule started: it counts for the overlap policy again."""
    s = state.schedules.get(inst.workflow) if inst.command_type == SCHEDULER else None
    if s is not None and inst.id not in s.running:
        s.running.append(inst.id)


workflow.FINISHED.append(_finished)
workflow.REOPENED.append(_reopened)

HANDLERS: dict[type, Callable[[State, Any, int, Out], None]] = {
    c.SetSchedule: _set,
    c.SetScheduleState: _set_state,
    c.DeleteSchedule: _delete,
    c.TriggerSchedule: _trigger,
}
