"""Ready-made views for the common questions. Recreated on every start, so changing one needs
no rebuild. All times are UTC; "today" is the current UTC day.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class View:
    """A named query over the projection tables."""

    name: str
    doc: str
    sql: str

    def ddl(self) -> str:
        """The CREATE OR REPLACE VIEW statement."""
        return f"CREATE OR REPLACE VIEW {self.name} AS\n{self.sql}"


_NOW_UTC = "(now() AT TIME ZONE 'UTC')"

RUNNING_NOW = View(
    "running_now",
    "Attempts that may have a live process or are being evaluated: dispatched, running, or killed "
    "with the kill not yet confirmed by the worker (phase = 'killing').",
    f"""SELECT w.workflow, t.instance, t.task, t.attempt, t.task_type, t.state,
       CASE WHEN t.state IN ('DISPATCH', 'RUNNING_EXECUTION') THEN 'running' ELSE 'killing' END AS phase,
       t.started_at, t.worker, t.pid, t.kill_requested_at,
       epoch_ms({_NOW_UTC}) - epoch_ms(t.started_at) AS running_ms
FROM task_instances t LEFT JOIN workflow_instances w USING (instance)
WHERE t.state IN ('DISPATCH', 'RUNNING_EXECUTION')
   OR (t.kill_requested_at IS NOT NULL AND t.kill_confirmed_at IS NULL)""",
)

FAILED_TODAY = View(
    "failed_today",
    "Attempts that failed since the start of the current UTC day; retried = a retry followed.",
    f"""SELECT w.workflow, t.instance, t.task, t.attempt, t.state, t.state = 'DELAY_EXECUTION' AS retried,
       t.started_at, t.ended_at, t.duration_ms, t.exit_code, t.reason, t.worker
FROM task_instances t LEFT JOIN workflow_instances w USING (instance)
WHERE t.state IN ('FAILURE', 'DELAY_EXECUTION')
  AND t.ended_at >= date_trunc('day', {_NOW_UTC})""",
)

KILL_LATENCY = View(
    "kill_latency",
    "Every process kill: from the command that asked for it (stop, kill_task, a timeout's check_due) to "
    "the task's KILL state (same step) and to the worker's confirmation that the process is gone.",
    """SELECT w.workflow, t.instance, t.task, t.attempt, t.kill_command, t.kill_reason,
       t.kill_requested_at, CASE WHEN t.state = 'KILL' THEN t.ended_at END AS killed_at,
       t.kill_confirmed_at,
       epoch_ms(t.kill_confirmed_at) - epoch_ms(t.kill_requested_at) AS latency_ms,
       t.exit_code
FROM task_instances t LEFT JOIN workflow_instances w USING (instance)
WHERE t.kill_requested_at IS NOT NULL""",
)

WORKFLOW_STATS = View(
    "workflow_stats",
    "Per workflow: instance counts by outcome and p50/p95 duration of finished instances.",
    """SELECT workflow,
       count(*) AS instances,
       count(*) FILTER (WHERE state = 'SUCCESS') AS success,
       count(*) FILTER (WHERE state = 'FAILURE') AS failure,
       count(*) FILTER (WHERE state = 'STOP') AS stopped,
       count(*) FILTER (WHERE ended_at IS NULL) AS active,
       quantile_cont(duration_ms, 0.5) AS p50_ms,
       quantile_cont(duration_ms, 0.95) AS p95_ms
FROM workflow_instances
GROUP BY workflow""",
)

TASK_STATS = View(
    "task_stats",
    "Per workflow and task: attempt counts by outcome and p50/p95 duration of ended attempts. "
    "failure counts failed attempts, retried ones (DELAY_EXECUTION) included.",
    """SELECT w.workflow, t.task,
       count(*) AS attempts,
       count(*) FILTER (WHERE t.state IN ('SUCCESS', 'FORCED_SUCCESS')) AS success,
       count(*) FILTER (WHERE t.state IN ('FAILURE', 'DELAY_EXECUTION')) AS failure,
       count(*) FILTER (WHERE t.state = 'KILL') AS killed,
       count(*) FILTER (WHERE t.ended_at IS NULL) AS active,
       quantile_cont(t.duration_ms, 0.5) AS p50_ms,
       quantile_cont(t.duration_ms, 0.95) AS p95_ms
FROM task_instances t LEFT JOIN workflow_instances w USING (instance)
GROUP BY w.workflow, t.task""",
)

VIEWS: tuple[View, ...] = (RUNNING_NOW, FAILED_TODAY, KILL_LATENCY, WORKFLOW_STATS, TASK_STATS)
