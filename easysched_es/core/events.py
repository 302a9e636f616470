"""Events: what the master decided. Facts for projections and effects for the runtime.

The master writes the events of one command as one `EventBatch`, together with that
command's offset and time. Replaying the commands must reproduce the batches byte for byte.
"""

from __future__ import annotations

import msgspec

from easysched_es.core.definitions import WorkflowDefinition


class _Event(msgspec.Struct, kw_only=True, tag_field="type", omit_defaults=True):
    pass


# ---- facts -------------------------------------------------------------------------------


class WorkflowDefined(_Event, tag="workflow_defined"):
    """A workflow version was stored."""

    workflow: str
    version: int
    online: bool
    definition: WorkflowDefinition


class ReleaseStateChanged(_Event, tag="release_changed"):
    """A workflow went ONLINE or OFFLINE."""

    workflow: str
    online: bool


class CommandRejected(_Event, tag="command_rejected"):
    """The command was malformed or impossible; nothing else changed."""

    command: str
    reason: str
    instance: str = ""
    task: str = ""


class RequestRepeated(_Event, tag="request_repeated"):
    """A command repeated a remembered `request_id`: nothing changed; this is the first decision.

    `first_offset` is the offset of the first command with the id, `instance` the instance it
    concerned (the one it created, for a start) and `rejected` the reason if it was rejected.
    """

    request_id: str
    first_offset: int
    command: str
    instance: str = ""
    rejected: str = ""


class CommandSkipped(_Event, tag="command_skipped"):
    """An operator's `skip` (the command at `skip_offset`) made the fold pass over this command.

    The command at this batch's offset raised while it was applied (a bug); the partition
    stopped there until the skip was appended. It changed nothing.
    """

    command: str
    reason: str
    error: str
    skip_offset: int
    # The instance (and task) the skipped command named, so that `trace` shows the skip there.
    instance: str = ""
    task: str = ""


class SkipRecorded(_Event, tag="skip_recorded"):
    """The `skip` command itself: the command at `offset` was passed over (see CommandSkipped)."""

    offset: int
    reason: str


class WorkflowStarted(_Event, tag="workflow_started"):
    """A new workflow instance exists (`parent`/`parent_task`: the SUB_WORKFLOW task that started it)."""

    instance: str
    workflow: str
    version: int
    base_time: int
    schedule_time: int | None = None
    params: dict[str, str] = {}
    command_type: str = ""  # "" = START_PROCESS; SCHEDULER for a schedule's fire
    zone: str = ""  # the zone its time parameters use ("" = UTC)
    parent: str = ""
    parent_task: str = ""
    # Started from a task (start --from-task): the tasks it runs; [] = all of them.
    only: list[str] = []
    backfill: str = ""  # the backfill that started it (command_type COMPLEMENT_DATA)


class WorkflowStateChanged(_Event, tag="workflow_state"):
    """A workflow instance moved to `state`."""

    instance: str
    state: str
    reason: str = ""


class WorkflowReopened(_Event, tag="workflow_reopened"):
    """A finished instance runs again: `command_type` REPEAT_RUNNING (rerun) or
    START_FAILURE_TASK_PROCESS (recover); `tasks` are the task runs it discarded (they run again,
    their attempt numbers going on), `kept` how many finished tasks it keeps."""

    instance: str
    command_type: str
    tasks: list[str] = []
    kept: int = 0


class WorkflowFinished(_Event, tag="workflow_finished"):
    """A workflow instance reached a final state (SUCCESS, FAILURE, STOP)."""

    instance: str
    workflow: str
    state: str
    base_time: int
    task_states: dict[str, str] = {}
    scheduled: bool = False  # it had a schedule time (DEPENDENT windows pick by it)


class TaskStateChanged(_Event, tag="task_state"):
    """A task instance moved to `state`; `attempt` counts dispatches (0 for logic tasks)."""

    instance: str
    task: str
    state: str
    attempt: int = 0
    task_type: str = ""
    reason: str = ""
    pid: int | None = None
    worker: str | None = None
    exit_code: int | None = None
    # The task's output parameters, once it succeeded with some.
    outputs: dict[str, str] = {}


class TimerSet(_Event, tag="timer_set"):
    """A delay-queue entry was added (or moved to a new due time)."""

    instance: str
    task: str
    kind: str
    due: int


class TimerCancelled(_Event, tag="timer_cancelled"):
    """A delay-queue entry was removed before it fired."""

    instance: str
    task: str
    kind: str
    reason: str = ""


class TimerFired(_Event, tag="timer_fired"):
    """A delay-queue entry came due and was taken out of the queue."""

    instance: str
    task: str
    kind: str
    due: int


class DependentChecked(_Event, tag="dependent_checked"):
    """A DEPENDENT task evaluated its items: SUCCESS, WAITING or FAILED."""

    instance: str
    task: str
    result: str
    detail: str = ""


class BranchChosen(_Event, tag="branch_chosen"):
    """A CONDITIONS or SWITCH task picked `branch`: the tasks in `taken` run, those in `skipped` do not."""

    instance: str
    task: str
    branch: str
    taken: list[str] = []
    skipped: list[str] = []
    detail: str = ""


class TaskTimedOut(_Event, tag="task_timed_out"):
    """A worker task ran past its timeout; `strategy` says what followed."""

    instance: str
    task: str
    attempt: int
    strategy: str


class KillConfirmed(_Event, tag="kill_confirmed"):
    """The worker confirmed the process of a killed attempt is gone."""

    instance: str
    task: str
    attempt: int
    exit_code: int


class LateReportIgnored(_Event, tag="late_report_ignored"):
    """A worker report that no longer matters (killed task, old attempt) was recorded and ignored."""

    instance: str
    task: str
    attempt: int
    report: str
    reason: str


class ScheduleSet(_Event, tag="schedule_set"):
    """A workflow's schedule was created or changed (the fields as they now stand)."""

    workflow: str
    cron: str
    timezone: str
    overlap: str
    catchup_window: int
    online: bool
    start: int | None = None
    end: int | None = None
    params: dict[str, str] = {}


class ScheduleStateChanged(_Event, tag="schedule_state"):
    """A schedule went ONLINE or OFFLINE (or was deleted: `deleted`)."""

    workflow: str
    online: bool
    deleted: bool = False
    reason: str = ""


class ScheduleFired(_Event, tag="schedule_fired"):
    """What became of a nominal fire time (UTC epoch ms): `outcome` STARTED, SKIPPED or BUFFERED.

    A run of skipped fires too long to list is one event: `nominal` the first, `last` the
    last, `count` how many (-1: more than the fold counts, see `schedules.COUNT_LIMIT`).
    """

    workflow: str
    nominal: int
    outcome: str
    instance: str = ""
    reason: str = ""
    last: int | None = None
    count: int = 1


class BackfillStarted(_Event, tag="backfill_started"):
    """A backfill (COMPLEMENT_DATA) was accepted: `total` dates from `first` to `last` in run order
    (UTC epoch ms), at most `parallel` in flight; `dependents` are backfilled after each date."""

    backfill: str
    workflow: str
    total: int
    first: int
    last: int
    parallel: int = 1
    reverse: bool = False
    dependents: list[str] = []
    zone: str = "UTC"


class BackfillDate(_Event, tag="backfill_date"):
    """A date of a backfill ended (all its instances, dependents included): `state` SUCCESS,
    FAILURE or STOP, with the backfill's counts after it."""

    backfill: str
    date: int
    state: str
    succeeded: int
    failed: int
    total: int
    reason: str = ""


class BackfillFinished(_Event, tag="backfill_finished"):
    """A backfill ended: SUCCESS (every date succeeded), FAILURE or STOP (`reason` says why)."""

    backfill: str
    workflow: str
    state: str
    succeeded: int
    failed: int
    total: int
    reason: str = ""


class PoolSet(_Event, tag="pool_set"):
    """A pool got `slots` (-1: the pool was deleted)."""

    pool: str
    slots: int


class InstancesRetired(_Event, tag="instances_retired"):
    """Retention removed these finished instances (and ended backfills) from the hot state (the log
    keeps them), and `upstream_records` DEPENDENT index records older than the index's horizon."""

    now: int
    instances: list[str] = []
    upstream_records: int = 0
    backfills: list[str] = []  # ended backfills past their workflow's retention period


# ---- effects (the runtime acts on these; idempotent by instance, task, attempt) ---------


class DispatchTask(_Event, tag="dispatch"):
    """Run attempt `attempt` of a worker task.

    The process environment is `env` (the instance's parameters and system values, then
    the output parameters of its upstream tasks), then `task_env`, then EASYSCHED_TASK and
    EASYSCHED_ATTEMPT.
    """

    instance: str
    task: str
    attempt: int
    task_type: str
    command: str
    env: dict[str, str] = {}
    task_env: dict[str, str] = {}
    worker_group: str = "default"


class AttemptClaimed(_Event, tag="attempt_claimed"):
    """`worker` won the claim of the attempt: it, and only it, runs `dispatch` (Kafka runtime)."""

    instance: str
    task: str
    attempt: int
    worker: str
    dispatch: DispatchTask
    # The claimant's incarnation (core/fencing.py): only that incarnation may spawn the attempt.
    incarnation: int = 0


class WorkerLost(_Event, tag="worker_lost"):
    """A worker incarnation was silent past its heartbeat timeout: its attempts are rerun.

    The fold accepts nothing more from that incarnation; the worker, when it reads this, kills
    every process it still runs and comes back with a new incarnation (core/fencing.py).
    """

    worker: str
    incarnation: int
    last_seen: int


class KillTaskProcess(_Event, tag="kill_process"):
    """Terminate the process group of an attempt (SIGTERM, then SIGKILL after the grace)."""

    instance: str
    task: str
    attempt: int
    reason: str = ""


class SendAlert(_Event, tag="send_alert"):
    """Effect: send one attempt of an alert (a webhook POST or a script run); `key` is its idempotency key."""

    key: str
    instance: str
    workflow: str
    on: str
    detail: str
    attempt: int
    raised_at: int
    webhook: str = ""
    script: str = ""


class AlertDelivered(_Event, tag="alert_delivered"):
    """The runtime reported an alert attempt delivered: nothing more is sent for its key."""

    key: str
    instance: str
    attempt: int


class AlertAttemptFailed(_Event, tag="alert_attempt_failed"):
    """An alert attempt failed; the next one is due at `retry_at` (an ALERT_RETRY timer)."""

    key: str
    instance: str
    attempt: int
    error: str
    retry_at: int


class AlertGaveUp(_Event, tag="alert_gave_up"):
    """The last allowed attempt of an alert failed: it is not sent again."""

    key: str
    instance: str
    attempts: int
    error: str


Event = (
    WorkflowDefined
    | ReleaseStateChanged
    | CommandRejected
    | RequestRepeated
    | CommandSkipped
    | SkipRecorded
    | WorkflowStarted
    | WorkflowStateChanged
    | WorkflowReopened
    | WorkflowFinished
    | TaskStateChanged
    | TimerSet
    | TimerCancelled
    | TimerFired
    | DependentChecked
    | BranchChosen
    | TaskTimedOut
    | KillConfirmed
    | LateReportIgnored
    | DispatchTask
    | AttemptClaimed
    | WorkerLost
    | KillTaskProcess
    | ScheduleSet
    | ScheduleStateChanged
    | ScheduleFired
    | PoolSet
    | SendAlert
    | AlertDelivered
    | AlertAttemptFailed
    | AlertGaveUp
    | InstancesRetired
    | BackfillStarted
    | BackfillDate
    | BackfillFinished
)

EFFECT_TYPES = (DispatchTask, KillTaskProcess, SendAlert)


class EventBatch(msgspec.Struct, omit_defaults=True):
    """The events caused by the command at `offset` (stamped `at`), as written to the events log."""

    offset: int
    at: int
    command: str
    events: list[Event]
    partition: int = 0
