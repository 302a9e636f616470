"""What each page shows, as plain JSON-able values read from the DuckDB projection.

Pages are rendered from these dicts on the server and the page's script polls the same
shapes from /api/..., so a test can check the data without a browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from projections.queries import LocalReader, plain, records

RECENT = 50
TRACE_LIMIT = 500

# Task states grouped for colours and counts.
ACTIVE_TASK_STATES = ("SUBMITTED_SUCCESS", "DISPATCH", "RUNNING_EXECUTION", "DELAY_EXECUTION")
FINAL_INSTANCE_STATES = ("SUCCESS", "FAILURE", "STOP")


def rows(reader: LocalReader, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """A read-only query's rows as {column: JSON value} (timestamps as ISO-8601 UTC strings)."""
    found: list[dict[str, Any]] = plain({"rows": records(reader.run(sql, list(params)))})["rows"]
    return found


def _one(reader: LocalReader, sql: str, params: Sequence[Any] = ()) -> Any:
    found = rows(reader, sql, params)
    return next(iter(found[0].values())) if found else None


def overview(reader: LocalReader) -> dict[str, Any]:
    """The overview: instances by state, running now, failed today, timers, slots, fold lag, recent instances."""
    by_state = {r["state"]: r["n"] for r in rows(
        reader, "SELECT state, count(*) AS n FROM workflow_instances GROUP BY state ORDER BY state")}
    # The last decided command of each partition is in the projection's bookkeeping (no scan of events).
    lag = rows(reader, """
        WITH decided AS (SELECT partition, last_command_offset AS o FROM projection_offsets WHERE stream = 'events')
        SELECT count(*) AS records, epoch_ms(now() AT TIME ZONE 'UTC') - epoch_ms(min(c.time)) AS ms
        FROM commands c LEFT JOIN decided d ON c.partition = d.partition
        WHERE c.command_offset > coalesce(d.o, -1)""")[0]
    status = reader._status()  # the projector's own progress (pending bytes per stream)
    counts = rows(reader, """SELECT
        (SELECT count(*) FROM running_now WHERE phase = 'running') AS running_tasks,
        (SELECT count(*) FROM running_now WHERE phase = 'killing') AS killing_tasks,
        (SELECT count(*) FROM failed_today) AS failed_today,
        (SELECT count(*) FROM timers) AS timers_pending""")[0]
    return {
        "instances_by_state": by_state,
        "instances_total": sum(by_state.values()),
        **counts,
        # A slot is in use while an attempt may have a live process (running or being killed).
        "slots_used": counts["running_tasks"] + counts["killing_tasks"],
        "fold_lag": {
            "records": lag["records"],
            "seconds": round((lag["ms"] or 0) / 1000, 3) if lag["records"] else 0.0,
            "projection_pending_bytes": sum(s["pending"] for s in status["streams"]),
        },
        "recent": rows(reader, """
            SELECT instance, workflow, version, state, started_at, ended_at, duration_ms
            FROM workflow_instances ORDER BY started_at DESC, instance DESC LIMIT $1""", [RECENT]),
        "running": rows(reader, """
            SELECT workflow, instance, task, attempt, state, phase, started_at, worker, pid
            FROM running_now ORDER BY started_at LIMIT $1""", [RECENT]),
    }


def workflows(reader: LocalReader) -> list[dict[str, Any]]:
    """Every workflow with its release state and instance counts."""
    return rows(reader, """
        SELECT w.workflow, w.latest_version, w.online, w.updated_at, d.description, d.task_count,
               count(i.instance) AS instances,
               count(i.instance) FILTER (WHERE i.state = 'SUCCESS') AS succeeded,
               count(i.instance) FILTER (WHERE i.state = 'FAILURE') AS failed,
               max(i.started_at) AS last_started
        FROM workflows w
        LEFT JOIN workflow_definitions d ON d.workflow = w.workflow AND d.version = w.latest_version
        LEFT JOIN workflow_instances i ON i.workflow = w.workflow
        GROUP BY ALL ORDER BY w.workflow""")


def workflow(reader: LocalReader, name: str) -> dict[str, Any] | None:
    """One workflow: its versions (with the YAML of each), release state, schedule and recent instances."""
    head = rows(reader, "SELECT * FROM workflows WHERE workflow = $1", [name])
    if not head:
        return None
    versions = rows(reader, """
        SELECT version, defined_at, description, task_count, definition
        FROM workflow_definitions WHERE workflow = $1 ORDER BY version DESC""", [name])
    for v in versions:
        v["yaml"] = yaml.safe_dump(v.pop("definition"), sort_keys=False, allow_unicode=True)
    return {
        "workflow": head[0],
        "versions": versions,
        "schedules": rows(reader, "SELECT * FROM schedules WHERE workflow = $1", [name]),
        "recent": rows(reader, """
            SELECT instance, version, state, started_at, ended_at, duration_ms
            FROM workflow_instances WHERE workflow = $1 ORDER BY started_at DESC, instance DESC LIMIT $2""",
            [name, RECENT]),
    }


def instance(reader: LocalReader, instance_id: str, with_trace: bool = True) -> dict[str, Any] | None:
    """One instance: its row, its definition, every attempt, the current state of each task, timers, trace."""
    head = rows(reader, "SELECT * FROM workflow_instances WHERE instance = $1", [instance_id])
    if not head:
        return None
    inst = head[0]
    definition = _one(reader, "SELECT definition FROM workflow_definitions WHERE workflow = $1 AND version = $2",
                      [inst["workflow"], inst["version"]]) or {"tasks": []}
    attempts = rows(reader, """
        SELECT task, attempt, task_type, state, started_at, ended_at, duration_ms, exit_code, reason, worker, pid,
               kill_requested_at, kill_confirmed_at, epoch_ms(started_at) AS start_ms,
               epoch_ms(coalesce(ended_at, now() AT TIME ZONE 'UTC')) AS end_ms
        FROM task_instances WHERE instance = $1 ORDER BY started_at, task, attempt""", [instance_id])
    current: dict[str, dict[str, Any]] = {}
    for a in attempts:
        if a["task"] not in current or a["attempt"] >= current[a["task"]]["attempt"]:
            current[a["task"]] = a
    outputs = _outputs(reader, instance_id)
    tasks = []
    for t in definition.get("tasks", []):
        now = current.get(t["name"], {})
        tasks.append({
            "name": t["name"], "type": t.get("type", "SHELL"), "upstream": list(t.get("upstream", [])),
            "state": now.get("state", "SUBMITTED_SUCCESS" if inst["state"] not in FINAL_INSTANCE_STATES else "NOT_RUN"),
            "attempt": now.get("attempt"), "exit_code": now.get("exit_code"), "reason": now.get("reason"),
            "outputs": outputs.get(t["name"], {}),
        })
    return {
        "instance": inst,
        "tasks": tasks,
        "attempts": attempts,
        "timers": rows(reader, "SELECT task, kind, due, set_at FROM timers WHERE instance = $1 ORDER BY due",
                       [instance_id]),
        "trace": trace(reader, instance_id) if with_trace else [],
        "offsets": [r["o"] for r in rows(reader, """
            SELECT DISTINCT command_offset AS o FROM events WHERE command_offset >= $2 AND instance = $1 ORDER BY 1""",
            [instance_id, start_offset(instance_id)])],
    }


def start_offset(instance_id: str) -> int:
    """The offset of an instance's StartWorkflow (its id is PARTITION-OFFSET): nothing about it is older.

    Queries filter on it so that DuckDB's zone maps skip the log before the instance began.
    """
    _, _, tail = instance_id.partition("-")
    return int(tail) if tail.isdigit() else 0


def _partition(instance_id: str) -> int:
    head, _, _ = instance_id.partition("-")
    return int(head) if head.isdigit() else -1


def _outputs(reader: LocalReader, instance_id: str) -> dict[str, dict[str, Any]]:
    # Output parameters travel in the finished report (a command), not in an event.
    found: dict[str, dict[str, Any]] = {}
    for r in rows(reader, """
            SELECT task, payload->'outputs' AS outputs FROM commands
            WHERE command_offset >= $2 AND instance = $1 AND type = 'task_finished'
              AND json_type(payload->'outputs') = 'OBJECT'
            ORDER BY command_offset""", [instance_id, start_offset(instance_id)]):
        found.setdefault(r["task"], {}).update(r["outputs"] or {})
    return found


def trace(reader: LocalReader, instance_id: str, limit: int = TRACE_LIMIT) -> list[dict[str, Any]]:
    """The instance's commands and events in log order, with offsets and times (as `easysched trace`).

    At most `limit` entries (the first ones); each payload is its JSON text.
    """
    return rows(reader, """
        SELECT * FROM (
            SELECT command_offset AS "offset", 0 AS seq, 'command' AS kind, type, task, time,
                   CAST(payload AS VARCHAR) AS payload
            FROM commands WHERE command_offset >= $3
                AND (instance = $1 OR (command_offset = $3 AND partition = $4))
            UNION ALL
            SELECT command_offset, seq + 1, 'event', type, task, time, CAST(payload AS VARCHAR)
            FROM events WHERE command_offset >= $3 AND instance = $1)
        ORDER BY "offset", seq LIMIT $2""", [instance_id, limit, start_offset(instance_id), _partition(instance_id)])
