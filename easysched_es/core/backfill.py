"""Backfill (DolphinScheduler's COMPLEMENT_DATA): ONE command with an id and a lazy cursor.

`StartBackfill` is checked whole at the door (the dates, their number, the parallelism, the
parameters); the fold then takes dates one at a time from the expansion, never listing it:
the state holds the cursor and the dates in flight only (`core/backfill_state.py`).

- Dates: the fire times of the workflow's ONLINE schedule's cron in [from, to] (DolphinScheduler's
  `CronUtils.getSelfFireDateList`), daily from `from`'s time of day if it has no schedule (DS:
  "loop by day"), or the distinct dates of `dates`. An empty expansion, from > to, more than
  `MAX_DATES` dates or a parallelism outside 1..`MAX_PARALLEL` is refused, naming the field.
- Each date starts an instance with `schedule_time` = the date and command type
  COMPLEMENT_DATA, so the built-in time parameters are those of the date.
- `parallel` dates are in flight at a time (1 = RUN_MODE_SERIAL); the next date starts in the
  step where one ends. Ascending order, or descending with `reverse` (DS's DESC_ORDER).
- A failed date: the backfill goes on with the next one when the workflow's failure strategy
  is CONTINUE, and takes no further date under END (what DS's master does,
  `WorkflowSuccessLifecycleListener`); the dates in flight finish. It ends FAILURE.
- `dependents` (DS's ComplementDependentMode.ALL_DEPENDENT): after a date's instance finished,
  the workflows whose DEPENDENT tasks name it with the schedule's cycle (`core/cron_cycle.py`;
  DAY for a daily expansion) run for the same date, started from those
  DEPENDENT tasks with TASK_POST as DS does; `all_levels` follows their dependents in turn. A
  date is in flight (it holds a slot of `parallel`) until its last level finished.
- max_active_instances still holds: a date's instance beyond it waits (SERIAL_WAIT), holding
  its slot of the backfill.
- `stop <id>` stops the backfill and every instance it started, in the same step; nothing is
  started afterwards (DESIGN.md section 6).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from easysched_es.core import commands as c
from easysched_es.core import (
    cron,
    cron_cycle,
    limits,
    schedules,
    spawn_rules,
    start_scope,
    time_params,
    workflow,
    zones,
)
from easysched_es.core import events as e
from easysched_es.core.backfill_state import (
    BF_FAILURE,
    BF_RUNNING,
    BF_STOP,
    BF_SUCCESS,
    CRON,
    DAILY,
    LIST,
    Backfill,
    DateRun,
)
from easysched_es.core.definitions import DependentTask
from easysched_es.core.state import WF_FINAL, WF_READY_STOP, WF_SUCCESS, State, WorkflowEntry, WorkflowInstance
from easysched_es.core.tasks.base import Out

COMPLEMENT_DATA = "COMPLEMENT_DATA"  # DolphinScheduler's command type for a backfill
# Dates one backfill may expand to (or list). The door counts a cron expansion exactly by walking
# it (about 0.1 ms a fire), so this bounds what one command can cost the partition to about 1 s.
MAX_DATES = 10_000
MAX_PARALLEL = 1_000  # dates in flight at most
MAX_TIME = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, as step.MAX_TIME
SUFFIX = "-backfill"  # a backfill's id is "P-O-backfill" (the partition and offset of its command)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Backfills whose dates are being taken right now, by (id of the State, backfill id): an instance
# that ends inside its own start (a DEPENDENT decided at once) completes its date without taking
# the next one from inside the taking loop, so a long run of such dates costs no recursion. Keyed
# by the State too, so that two folds of one partition in two threads never see each other's.
# Empty between steps.
_FILLING: set[tuple[int, str]] = set()


class BackfillError(ValueError):
    """A backfill command that cannot apply; the message names the field and says why."""


def is_backfill(identifier: str) -> bool:
    """Whether an id names a backfill (P-O-backfill) rather than an instance."""
    return identifier.endswith(SUFFIX)


# ---- the door ----------------------------------------------------------------------------


def _local_ms(moment: datetime, zone: tzinfo) -> int:
    return (moment.replace(tzinfo=zone) - _EPOCH) // timedelta(milliseconds=1)


def _parse(text: str, field: str, zone: tzinfo, end_of_day: bool) -> tuple[datetime, int]:
    """A date or date-time in `zone` as (its local wall time, epoch ms); a bare end date is its last ms."""
    raw = text.strip()
    try:
        if len(raw) == 10:
            moment = datetime.combine(date.fromisoformat(raw), time(23, 59, 59, 999000) if end_of_day else time())
        else:
            moment = datetime.fromisoformat(raw)
    except ValueError:
        raise BackfillError(f"{field}: {text!r} is not a date (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS)") from None
    if moment.tzinfo is not None:
        raise BackfillError(f"{field}: {text!r} carries a UTC offset; give a local time and --timezone instead")
    try:
        ms = _local_ms(moment, zone)
    except OverflowError:
        ms = -1
    if not 0 <= ms <= MAX_TIME:
        raise BackfillError(f"{field}: {text!r} is out of range (years 1970 to 9999)")
    return moment, ms


def _levels(state: State, name: str, all_levels: bool, cycle: str) -> list[list[str]]:
    """The ONLINE workflows whose DEPENDENT tasks name `name` with the same `cycle`, level by level
    (DS's lineage, each level checked against the first workflow's cycle, as DS does)."""
    levels: list[list[str]] = []
    seen, frontier = {name}, {name}
    while frontier:
        found = sorted(other for other, entry in state.workflows.items()
                       if other not in seen and entry.online and _dependent_tasks(entry, frontier, cycle))
        if not found:
            break
        levels.append(found)
        seen.update(found)
        frontier = set(found)
        if not all_levels:
            break
    return levels


def _dependent_tasks(entry: WorkflowEntry, upstream: set[str], cycle: str) -> list[str]:
    """The DEPENDENT tasks of a workflow with an item on one of `upstream` of that cycle ("" = any)."""
    return [t.name for t in entry.latest.definition.tasks
            if isinstance(t, DependentTask) and any(i.workflow in upstream and (not cycle or i.cycle == cycle)
                                                   for i in t.dependence.items)]


def _expand(state: State, cmd: c.StartBackfill, bf: Backfill, zone: tzinfo) -> None:
    """Fill in the expansion's bounds and its exact number of dates (refusing an empty or huge one)."""
    if cmd.dates:
        if cmd.from_date or cmd.to_date:
            raise BackfillError("dates: give either --dates or --from/--to, not both")
        if len(cmd.dates) > MAX_DATES:
            raise BackfillError(f"dates: {len(cmd.dates)} dates listed; at most {MAX_DATES} per backfill")
        listed = sorted({_parse(d, "dates", zone, False)[1] for d in cmd.dates}, reverse=bf.reverse)
        bf.mode, bf.dates, bf.total = LIST, listed, len(listed)
        return
    if not cmd.from_date or not cmd.to_date:
        raise BackfillError("from_date/to_date: give --from and --to (or --dates)")
    start_local, start = _parse(cmd.from_date, "from_date", zone, False)
    end_local, end = _parse(cmd.to_date, "to_date", zone, True)
    if start > end:
        raise BackfillError(f"from_date: {cmd.from_date!r} is after to_date {cmd.to_date!r}")
    sched = state.schedules.get(cmd.workflow)
    if sched is None or not sched.online:
        days = (end_local.date() - start_local.date()).days + (end_local.time() >= start_local.time())
        if days > MAX_DATES:
            raise BackfillError(f"from_date/to_date: {days} daily dates; at most {MAX_DATES} per backfill")
        if days <= 0:
            raise BackfillError("from_date/to_date: the range holds no date (daily at the time of --from)")
        bf.mode, bf.total = DAILY, days
        bf.low = start_local.date().toordinal()
        bf.high = (start_local - datetime.combine(start_local.date(), time())) // timedelta(milliseconds=1)
        return
    first = cron.next_fire(sched.cron, start - 1, sched.zone)
    if first is None or first > end:
        raise BackfillError(f"from_date/to_date: the schedule's cron {sched.cron!r} ({sched.zone}) "
                            f"does not fire between {cmd.from_date} and {cmd.to_date}")
    count, last, t = 1, first, cron.next_fire(sched.cron, first, sched.zone)
    while t is not None and t <= end:
        count, last = count + 1, t
        if count > MAX_DATES:
            raise BackfillError(f"from_date/to_date: the schedule's cron {sched.cron!r} fires more than "
                                f"{MAX_DATES} times in the range; at most {MAX_DATES} dates per backfill")
        t = cron.next_fire(sched.cron, t, sched.zone)
    bf.mode, bf.cron, bf.low, bf.high, bf.total = CRON, sched.cron, first, last, count


def _start(state: State, cmd: c.StartBackfill, offset: int, out: Out) -> None:
    entry = state.workflows.get(cmd.workflow)
    if not cmd.workflow or entry is None:
        raise BackfillError(f"workflow: unknown workflow {cmd.workflow!r}: define it first (easysched define FILE)")
    if not entry.online:
        raise BackfillError(f"workflow: {cmd.workflow!r} is OFFLINE: release it before backfilling it")
    if not 1 <= cmd.parallel <= MAX_PARALLEL:
        raise BackfillError(f"parallel: {cmd.parallel} is out of range (1 = serial, at most {MAX_PARALLEL})")
    if problem := spawn_rules.env_problem("parameter", cmd.params) or limits.start_problem(
            entry.latest.definition, cmd.params):
        raise BackfillError(f"params: {problem}")
    for key, value in cmd.params.items():
        if bad := time_params.check(value):
            raise BackfillError(f"params: parameter {key!r}: {bad}")
    sched = state.schedules.get(cmd.workflow)
    if sched is not None and not sched.online:
        sched = None  # DolphinScheduler expands by the released (ONLINE) schedules only
    zone_name = cmd.timezone or (sched.zone if sched is not None else "UTC")
    try:
        zone = zones.zone(zone_name)
    except zones.ZoneError as exc:
        raise BackfillError(f"timezone: {exc}") from None
    bf = Backfill(id=f"{state.partition}-{offset}{SUFFIX}", workflow=cmd.workflow, mode=DAILY,
                  zone=sched.zone if sched is not None and not cmd.dates else zone_name, total=0,
                  parallel=cmd.parallel, reverse=cmd.reverse, params=dict(cmd.params), created=state.now)
    _expand(state, cmd, bf, zone)
    if bf.total == 0:
        raise BackfillError("dates: no date given")
    if cmd.dependents:
        # DS backfills the dependents whose cycle is the schedule's (getMaxCycle); daily is DAY. A
        # cron DS gives no cycle to matches no dependent.
        bf.cycle = (cron_cycle.cycle_of(bf.cron) or "NONE") if bf.mode == CRON else "DAY"
        bf.levels = _levels(state, cmd.workflow, cmd.all_levels, bf.cycle)
    state.backfills[bf.id] = bf
    out.append(e.BackfillStarted(backfill=bf.id, workflow=bf.workflow, total=bf.total, first=_date_at(bf, 0),
                                 last=_date_at(bf, bf.total - 1), parallel=bf.parallel, reverse=bf.reverse,
                                 dependents=[w for level in bf.levels for w in level], zone=bf.zone))
    _fill(state, bf, offset, out)


# ---- the cursor --------------------------------------------------------------------------


def _day(bf: Backfill, k: int) -> int:
    """DAILY: the k-th date of the range in ascending order (local wall time in the backfill's zone)."""
    moment = datetime.combine(date.fromordinal(bf.low + k), time()) + timedelta(milliseconds=bf.high)
    return _local_ms(moment, zones.zone(bf.zone))


def _date_at(bf: Backfill, i: int) -> int:
    """The i-th date in run order (for the first and the last; CRON walks with the cursor)."""
    if bf.mode == LIST:
        return bf.dates[i]
    if bf.mode == DAILY:
        return _day(bf, bf.total - 1 - i if bf.reverse else i)
    first, last = (bf.high, bf.low) if bf.reverse else (bf.low, bf.high)
    return first if i == 0 else last


def _take(bf: Backfill) -> int:
    """The next date in run order (the caller checked that one is left)."""
    i = bf.taken
    if bf.mode == CRON:
        if bf.cursor is None:
            d = bf.high if bf.reverse else bf.low
        elif bf.reverse:
            d = cron.last_fire(bf.cron, bf.cursor - 1, bf.low, bf.zone)
        else:
            d = cron.next_fire(bf.cron, bf.cursor, bf.zone) or bf.high  # never None inside [low, high]
        bf.cursor = d
    else:
        d = _date_at(bf, i)
    bf.taken = i + 1
    return d


def _fill(state: State, bf: Backfill, offset: int, out: Out) -> None:
    """Take dates while fewer than `parallel` are in flight and some are left."""
    key = (id(state), bf.id)
    if key in _FILLING:
        return
    _FILLING.add(key)
    try:
        while bf.state == BF_RUNNING and not bf.halted and bf.taken < bf.total and len(bf.inflight) < bf.parallel:
            if not state.workflows[bf.workflow].online:
                bf.halted = f"workflow {bf.workflow} is OFFLINE"
                break
            run = DateRun(date=_take(bf), level=0, instances=[])
            bf.inflight.append(run)
            _start_level(state, bf, run, offset, out)
    finally:
        _FILLING.discard(key)
    _maybe_finish(state, bf, out)


def _start_level(state: State, bf: Backfill, run: DateRun, offset: int, out: Out) -> None:
    """Start the instances of the date's current level; a level with none left goes on at once."""
    level = run.level
    names = [bf.workflow] if level == 0 else bf.levels[level - 1]
    upstream = {bf.workflow} if level <= 1 else set(bf.levels[level - 2])
    todo: list[tuple[str, str, dict[str, bool] | None]] = []
    for name in names:
        entry = state.workflows.get(name)
        if entry is None or not entry.online:
            continue  # a dependent taken OFFLINE since the backfill began is passed over
        only = None
        if level:
            tasks = _dependent_tasks(entry, upstream, bf.cycle)
            chosen = start_scope.select(entry.latest, tasks, "post") if tasks else "no DEPENDENT task names it now"
            if not isinstance(chosen, dict) or not chosen:
                continue  # redefined since the backfill began: it no longer depends on the upstream
            only = chosen
        todo.append((name, state.new_instance_id(offset), only))
    # Every id is registered before any starts: one that ends at once must not end the level.
    run.instances = [iid for _, iid, _ in todo]
    for name, iid, only in todo:
        zone = bf.zone if level == 0 else schedules.zone_of(state, name) or bf.zone
        try:
            workflow.start_instance(state, name, iid, bf.params, run.date, "" if zone == "UTC" else zone,
                                    COMPLEMENT_DATA, out, only=only, backfill=bf.id)
        except time_params.TimeExprError:  # nothing changed: params resolve first
            run.instances.remove(iid)
            run.failed = True
    if not run.instances and run.level == level and any(r is run for r in bf.inflight):
        _advance(state, bf, run, offset, out)


def _advance(state: State, bf: Backfill, run: DateRun, offset: int, out: Out) -> None:
    """The date's level ended: start the next level, or end the date."""
    if bf.state == BF_RUNNING and run.level < len(bf.levels):
        run.level += 1
        _start_level(state, bf, run, offset, out)
        return
    bf.inflight.remove(run)
    if bf.state != BF_RUNNING:
        return  # stopped: the backfill's end is already recorded
    if run.failed:
        bf.failed += 1
        strategy = state.workflows[bf.workflow].latest.definition.failure_strategy
        if strategy == "END" and not bf.halted:
            bf.halted = f"a date failed and workflow {bf.workflow}'s failure strategy is END"
    else:
        bf.succeeded += 1
    out.append(e.BackfillDate(backfill=bf.id, date=run.date, state=BF_FAILURE if run.failed else BF_SUCCESS,
                              succeeded=bf.succeeded, failed=bf.failed, total=bf.total))
    _fill(state, bf, offset, out)


def _maybe_finish(state: State, bf: Backfill, out: Out) -> None:
    if bf.state != BF_RUNNING or bf.inflight or (bf.taken < bf.total and not bf.halted):
        return
    bf.state = BF_SUCCESS if not bf.failed and not bf.halted else BF_FAILURE
    bf.ended = state.now
    reason = bf.halted or (f"{bf.failed} of {bf.total} dates failed" if bf.failed else "")
    out.append(e.BackfillFinished(backfill=bf.id, workflow=bf.workflow, state=bf.state, succeeded=bf.succeeded,
                                  failed=bf.failed, total=bf.total, reason=reason))


def _finished(state: State, inst: WorkflowInstance, out: Out) -> None:
    """An instance ended: if a backfill's date holds it, that date's level may be over."""
    if not inst.backfill:
        return
    bf = state.backfills.get(inst.backfill)
    run = None if bf is None else next((r for r in bf.inflight if inst.id in r.instances), None)
    if bf is None or run is None:
        return  # a rerun of an instance whose date already ended
    run.instances.remove(inst.id)
    if inst.state != WF_SUCCESS:
        run.failed = True
    if not run.instances:
        _advance(state, bf, run, state.last_offset, out)


workflow.FINISHED.append(_finished)


# ---- stop ----------------------------------------------------------------------------------


def stop(state: State, backfill_id: str, out: Out) -> None:
    """Stop a backfill and every instance it started that still runs, in this step."""
    bf = state.backfills.get(backfill_id)
    if bf is None:
        raise BackfillError(f"unknown backfill {backfill_id!r}")
    if bf.state != BF_RUNNING:
        raise BackfillError(f"backfill {backfill_id} is already {bf.state}; nothing to stop")
    bf.state, bf.ended = BF_STOP, state.now
    out.append(e.BackfillFinished(backfill=bf.id, workflow=bf.workflow, state=BF_STOP, succeeded=bf.succeeded,
                                  failed=bf.failed, total=bf.total, reason="stopped by user"))
    for run in list(bf.inflight):
        for iid in list(run.instances):
            inst = state.instances.get(iid)
            if inst is not None and inst.state not in WF_FINAL and inst.state != WF_READY_STOP:
                workflow.stop(state, inst, out)


def progress(bf: Backfill) -> dict[str, Any]:
    """Where a backfill stands, for `status <backfill-id>` (counts of dates)."""
    running = [i for r in bf.inflight for i in r.instances]
    return {"backfill": bf.id, "workflow": bf.workflow, "state": bf.state, "total": bf.total,
            "done": bf.succeeded + bf.failed, "succeeded": bf.succeeded, "failed": bf.failed,
            "running": len(bf.inflight), "running_instances": running, "taken": bf.taken,
            "parallel": bf.parallel, "reverse": bf.reverse,
            "dependents": [w for level in bf.levels for w in level], "halted": bf.halted or None}


HANDLERS: dict[type, Callable[[State, Any, int, Out], None]] = {c.StartBackfill: _start}
"""The backfill command's handler (merged into step.py's table)."""
