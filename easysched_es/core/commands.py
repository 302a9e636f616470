"""Commands: everything that enters the scheduler from outside, as one tagged union.

Every command carries `at`, the wall-clock time (epoch milliseconds) stamped by the edge
that appended it. It is part of the log, so a replay sees the same value; the core uses it
as "when this happened" and never reads a clock itself.

Adding a field means giving it a default, so old logs keep decoding.
"""

from __future__ import annotations

import msgspec

from easysched_es.core.definitions import WorkflowDefinition


class _Command(msgspec.Struct, kw_only=True, tag_field="type", omit_defaults=True):
    at: int = 0
    # A client's id for this request: a repeat of it gets the first decision (core/requests.py).
    request_id: str = ""


class DefineWorkflow(_Command, tag="define"):
    """Define a new version of a workflow; `release` puts it ONLINE at once."""

    definition: WorkflowDefinition
    release: bool = True


class SetReleaseState(_Command, tag="release"):
    """Put a workflow ONLINE or OFFLINE; an OFFLINE workflow cannot be started."""

    workflow: str
    online: bool


class StartWorkflow(_Command, tag="start"):
    """START_PROCESS: start an instance of the newest version of a workflow.

    `from_tasks` starts it from those tasks (DolphinScheduler's start nodes) with `scope`
    `post` (TASK_POST: them and everything downstream), `pre` (TASK_PRE: them and everything
    upstream) or `task` (TASK_ONLY: them alone); upstreams outside the run are ignored.
    """

    workflow: str
    params: dict[str, str] = {}
    schedule_time: int | None = None
    # The IANA zone of DS_DATE and the time parameters ("": the workflow's schedule zone, else UTC).
    timezone: str = ""
    from_tasks: list[str] = []
    scope: str = "post"


class StopWorkflow(_Command, tag="stop"):
    """STOP: kill every active task; the instance ends STOP."""

    instance: str


class PauseWorkflow(_Command, tag="pause"):
    """PAUSE: dispatch nothing new; running tasks finish; the instance ends PAUSE."""

    instance: str


class ResumeWorkflow(_Command, tag="resume"):
    """RECOVER_SUSPENDED_PROCESS: continue a paused instance from where it stopped."""

    instance: str


class KillTask(_Command, tag="kill_task"):
    """Kill one task of an instance; it is never retried."""

    instance: str
    task: str


class RerunWorkflow(_Command, tag="rerun"):
    """REPEAT_RUNNING: a finished instance runs all its tasks again; attempt numbers go on."""

    instance: str


class RecoverWorkflow(_Command, tag="recover"):
    """START_FAILURE_TASK_PROCESS: a FAILURE or STOP instance re-runs the tasks that ended FAILURE,
    KILL or NEED_FAULT_TOLERANCE and everything downstream of them; successes are kept."""

    instance: str


class ForceTaskSuccess(_Command, tag="force_success"):
    """Mark a failed or killed task of a finished instance FORCED_SUCCESS (its downstream runs on recover)."""

    instance: str
    task: str


class SkipCommand(_Command, tag="skip"):
    """An operator passes over the command at `offset`, whose application raised (a bug).

    The partition stops at such a command; this one, appended after it, lets the fold go on
    without it. The fold honours the first valid skip of an offset on every replay, so every
    fold decides the same; `reason` is kept in the log for the record.
    """

    offset: int
    reason: str


class TaskStarted(_Command, tag="task_started"):
    """A worker's report: the attempt's process is running."""

    instance: str
    task: str
    attempt: int
    pid: int
    worker: str = ""
    log_path: str = ""
    # The reporting worker's incarnation (Kafka workers, core/fencing.py); 0: a worker that has none.
    incarnation: int = 0


class TaskFinished(_Command, tag="task_finished"):
    """A worker's report: the attempt's process is gone.

    `exit_code` is negative for a death by signal (-15 for SIGTERM). `killed` says the
    worker terminated it because of a kill effect (or never started it because the kill
    came first). `outputs` are the output parameters it set (collected on exit code 0).
    """

    instance: str
    task: str
    attempt: int
    exit_code: int
    killed: bool = False
    worker: str = ""
    detail: str = ""
    # Output parameters the attempt set (`${setValue(k=v)}` lines, `$EASYSCHED_OUTPUT`);
    # the fold checks them against `core/outputs.py`'s limits.
    outputs: dict[str, str] = {}
    # The reporting worker's incarnation (Kafka workers, core/fencing.py); 0: a worker that has none.
    incarnation: int = 0


class TaskAdopted(_Command, tag="task_adopted"):
    """After a restart, a worker found the attempt's process still running and watches it."""

    instance: str
    task: str
    attempt: int
    pid: int
    worker: str = ""
    # The reporting worker's incarnation (Kafka workers, core/fencing.py); 0: a worker that has none.
    incarnation: int = 0


class TaskLost(_Command, tag="task_lost"):
    """After a restart, the attempt's process is gone and its exit code is unknown."""

    instance: str
    task: str
    attempt: int
    reason: str
    worker: str = ""
    # The reporting worker's incarnation (Kafka workers, core/fencing.py); 0: a worker that has none.
    incarnation: int = 0


class ClaimAttempt(_Command, tag="claim_attempt"):
    """A worker asks to run the attempt (Kafka runtime): the first claim of the attempt wins.

    The master answers with `AttemptClaimed` for the winner; only then does the winner spawn
    the process. Any later claim of the same attempt (another worker that re-read the dispatch
    after a rebalance) is recorded as ignored, so a dispatch is run by one worker at most.
    """

    instance: str
    task: str
    attempt: int
    worker: str
    # The reporting worker's incarnation (Kafka workers, core/fencing.py); 0: a worker that has none.
    incarnation: int = 0


class Heartbeat(_Command, tag="heartbeat"):
    """A worker is alive.

    `timeout_ms` > 0 asks the master to declare the worker lost when no heartbeat arrives
    for that long: the first `CheckDue` at or after the deadline marks its running tasks
    NEED_FAULT_TOLERANCE (and reruns them) and confirms its pending kills.
    """

    worker: str
    timeout_ms: int = 0
    # The worker's slots and group (core/capacity.py); None leaves its announcement as it was,
    # -1 withdraws it (the worker sets no limit).
    slots: int | None = None
    group: str = "default"
    # A new value per worker start and per comeback after being declared lost (core/fencing.py):
    # a heartbeat of an incarnation declared lost or superseded is rejected.
    incarnation: int = 0


class CheckDue(_Command, tag="check_due"):
    """The clock's tick: fire every delay-queue entry due at or before `now`."""

    now: int


class UpstreamFinished(_Command, tag="upstream_finished"):
    """A workflow instance finished in another partition (forwarded for DEPENDENT checks)."""

    workflow: str
    instance: str
    state: str
    base_time: int
    task_states: dict[str, str] = {}
    scheduled: bool = False
    # When it finished; 0 = this command's `at` (the forwarder stamps it with the finish time).
    ended: int = 0


class SetSchedule(_Command, tag="schedule_set"):
    """Create or change the cron schedule of a workflow (one schedule per workflow, as in DolphinScheduler).

    `cron` is Quartz (6/7 fields) or 5-field cron; `timezone` an IANA zone. Fires are bounded by
    `start`/`end` (epoch ms, inclusive). `overlap` is SKIP, BUFFER_ONE, BUFFER_ALL, CANCEL_OTHER,
    ALLOW_ALL or a DolphinScheduler execution type (PARALLEL, SERIAL_WAIT, SERIAL_DISCARD,
    SERIAL_PRIORITY). `catchup_window` (ms): 0 runs only the latest missed fire, -1 every
    missed fire, N > 0 the missed fires of the last N ms. `online` None keeps the current
    state (a new schedule is ONLINE). `params` are passed to every instance it starts.
    """

    workflow: str
    cron: str
    timezone: str = "UTC"
    start: int | None = None
    end: int | None = None
    overlap: str = "SKIP"
    catchup_window: int = 0
    online: bool | None = None
    params: dict[str, str] = {}


class SetScheduleState(_Command, tag="schedule_state"):
    """Put a workflow's schedule ONLINE (its next fire is armed) or OFFLINE (the entry is removed)."""

    workflow: str
    online: bool


class DeleteSchedule(_Command, tag="schedule_delete"):
    """Delete a workflow's schedule; its delay-queue entry goes in the same step."""

    workflow: str


class TriggerSchedule(_Command, tag="schedule_trigger"):
    """Fire the schedule once now, as the schedule would (SCHEDULER, overlap policy applied)."""

    workflow: str


class StartBackfill(_Command, tag="backfill"):
    """COMPLEMENT_DATA: run `workflow` once per date of a range, as its schedule would have.

    The dates are the fire times of the workflow's schedule cron in [`from_date`, `to_date`]
    (daily from `from_date`'s time of day if it has no schedule), or the `dates` listed.
    Dates are "YYYY-MM-DD" or "YYYY-MM-DD HH:MM:SS" in `timezone` ("" = the schedule's zone,
    else UTC); a bare `to_date` means the end of that day. `parallel` dates run at a time (1 =
    serial), in ascending order or, with `reverse`, descending. `dependents` also backfills,
    after each date, the workflows whose DEPENDENT tasks name this one (`all_levels`: and
    theirs). Its id is "P-O-backfill"; `stop` of that id stops it and what it started.
    """

    workflow: str = ""
    from_date: str = ""
    to_date: str = ""
    dates: list[str] = []
    parallel: int = 1
    reverse: bool = False
    dependents: bool = False
    all_levels: bool = False
    params: dict[str, str] = {}
    timezone: str = ""


class SetPool(_Command, tag="pool_set"):
    """Create a named pool or change its slot count (Airflow pools): tasks naming it share them.

    `slots` -1 deletes the pool; tasks that name a pool that has no slots wait, visibly.
    """

    pool: str
    slots: int


class AlertSent(_Command, tag="alert_sent"):
    """The runtime's report: attempt `attempt` of alert `key` was delivered (2xx answer, or exit 0)."""

    key: str
    instance: str
    attempt: int


class AlertFailed(_Command, tag="alert_failed"):
    """The runtime's report: attempt `attempt` of alert `key` failed, and why."""

    key: str
    instance: str
    attempt: int
    error: str = ""


class ApplyRetention(_Command, tag="retention"):
    """Apply the retention policy as of `now`: finished instances past it leave the hot state."""

    now: int


Command = (
    DefineWorkflow
    | SetReleaseState
    | StartWorkflow
    | StopWorkflow
    | PauseWorkflow
    | ResumeWorkflow
    | KillTask
    | RerunWorkflow
    | RecoverWorkflow
    | ForceTaskSuccess
    | SkipCommand
    | TaskStarted
    | TaskFinished
    | TaskAdopted
    | TaskLost
    | ClaimAttempt
    | Heartbeat
    | CheckDue
    | UpstreamFinished
    | SetSchedule
    | SetScheduleState
    | DeleteSchedule
    | TriggerSchedule
    | SetPool
    | AlertSent
    | AlertFailed
    | ApplyRetention
    | StartBackfill
)

REPORT_TYPES = (TaskStarted, TaskFinished, TaskAdopted, TaskLost)
