"""The Python client: append commands to the log and learn the master's verdict.

```python
import easysched_es as es
client = es.Client(".easysched")
client.define(es.load_flow("flows/etl.yaml"))
instance = client.start("etl_daily", params={"TARGET": "dev"})
client.stop(instance)
```

A command returns once it is durable in the log and decided. While `easysched run` runs, the
client reads the master's decision for its own offset from the events log's tail (O(1) in the
log's length: `verdicts.py`); when no master runs, it folds the log itself (snapshot + tail):
the fold is deterministic, so a rejection is reported at once either way, and the command
waits in the log for `easysched run`.
"""

from __future__ import annotations

from pathlib import Path

from easysched_es.core import commands as c
from easysched_es.core.codec import UnencodableError, encode
from easysched_es.core.definitions import WorkflowDefinition
from easysched_es.core.events import Event, WorkflowDefined
from easysched_es.log.base import LogError, Record
from easysched_es.query_verbs import QueryVerbs
from easysched_es.runtime.clock import wall_ms
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.embedded.verdicts import await_decision, master_pid
from easysched_es.runtime.fold import load_state
from easysched_es.runtime.requests import rejection, started_instance
from easysched_es.runtime.verdict import CommandRejectedError, Verdict
from easysched_es.schedule_verbs import ScheduleVerbs


def _judged(verdict: Verdict) -> Verdict:
    reason = rejection(verdict.events)  # a repeat of a rejected request is rejected the same way
    if reason is not None:
        raise CommandRejectedError(reason, verdict.offset)
    return verdict


class Client(ScheduleVerbs, QueryVerbs):
    """Produces commands to an embedded data directory."""

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.data = DataDir(data_dir)

    def _log_source(self) -> DataDir:
        """What `status`, `wait`, `timers`, `logs` and `trace` fold (QueryVerbs)."""
        return self.data

    def submit(self, command: c.Command) -> Verdict:
        """Append one command (stamped with the wall clock) and return the master's verdict.

        Raises CommandRejectedError when the master rejects it (it stays in the log, recorded
        as rejected).
        """
        if not command.at:
            command.at = wall_ms()
        try:
            payload = encode(command)
        except UnencodableError as exc:
            raise CommandRejectedError(f"the command cannot be written to the log: {exc}", -1) from None
        pid = master_pid(self.data)
        if self.data.halted.exists():
            pid = None  # the master is stopped at a failed command: fold, and say so, at once
        events = self.data.events() if pid is not None else None
        try:
            start = events.end() if events is not None else 0
            with self.data.commands() as commands:
                offset = commands.append([payload])[0]
            decided = None
            if events is not None and pid:
                decided = await_decision(events, offset, start, pid, halted=self.data.halted)
        finally:
            if events is not None:
                events.close()
        verdict = Verdict(offset, by_master=decided is not None)
        if decided is not None:
            verdict.events = decided
            return _judged(verdict)
        seen = False

        def sink(record: Record, events: list[Event], tag: str) -> None:
            nonlocal seen
            if record.offset == offset:
                verdict.events, seen = events, True

        load_state(self.data, until=offset, sink=sink)
        if not seen:
            # Never acknowledge what the fold cannot read (the log's tail is healed under the
            # append lock, so this means damage behind it).
            raise LogError(
                f"the command was written at offset {offset} but the log cannot be read up to it; "
                "run `easysched verify` and check the disk"
            )
        return _judged(verdict)

    def send(self, command: c.Command) -> list[tuple[int, int]]:
        """Append a command without computing its verdict; returns [(partition 0, offset)]."""
        if not command.at:
            command.at = wall_ms()
        try:
            payload = encode(command)
        except UnencodableError as exc:
            raise CommandRejectedError(f"the command cannot be written to the log: {exc}", -1) from None
        with self.data.commands() as commands:
            return [(0, commands.append([payload])[0])]

    def define(self, definition: WorkflowDefinition, *, release: bool = True, request_id: str = "") -> int:
        """Define (and by default release) a workflow; returns its version (the newest, for a repeat)."""
        verdict = self.submit(c.DefineWorkflow(definition=definition, release=release, request_id=request_id))
        for ev in verdict.events:
            if isinstance(ev, WorkflowDefined):
                return ev.version
        entry = load_state(self.data).workflows.get(definition.name)
        return entry.versions[-1].version if entry is not None else 0

    def release(self, workflow: str, online: bool = True) -> Verdict:
        """Put a workflow ONLINE (released) or OFFLINE (its schedule goes OFFLINE too)."""
        return self.submit(c.SetReleaseState(workflow=workflow, online=online))

    def _submit_schedule(self, command: c.Command) -> Verdict:
        return self.submit(command)

    def start(self, workflow: str, params: dict[str, str] | None = None, schedule_time: int | None = None,
              *, request_id: str = "", timezone: str = "", from_tasks: list[str] | None = None,
              scope: str = "post") -> str:
        """Start an instance; returns its id (with `request_id`, a retry returns the first start's).

        `timezone` (IANA) is the zone of DS_DATE (default UTC). `from_tasks` starts it from those
        tasks, `scope` post, pre or task (see `commands.StartWorkflow`).
        """
        verdict = self.submit(c.StartWorkflow(workflow=workflow, params=params or {}, schedule_time=schedule_time,
                                              request_id=request_id, timezone=timezone, from_tasks=from_tasks or [],
                                              scope=scope))
        return started_instance(verdict.events)

    def skip(self, offset: int, reason: str) -> Verdict:
        """Pass over the command at `offset`, on which the partition stopped (its application raised)."""
        if not reason.strip():
            # Refused at the door: a reasonless skip in the log would be rejected by the fold.
            raise CommandRejectedError("a skip needs a reason: it stays in the log for the record", -1)
        return self.submit(c.SkipCommand(offset=offset, reason=reason))

    def set_pool(self, pool: str, slots: int) -> list[Verdict]:
        """Set a pool's slot count (-1 deletes it); tasks naming the pool share its slots."""
        return [self.submit(c.SetPool(pool=pool, slots=slots))]

    def stop(self, instance: str, *, request_id: str = "") -> Verdict:
        """Stop an instance: every active task is killed."""
        return self.submit(c.StopWorkflow(instance=instance, request_id=request_id))

    def pause(self, instance: str, *, request_id: str = "") -> Verdict:
        """Pause an instance."""
        return self.submit(c.PauseWorkflow(instance=instance, request_id=request_id))

    def resume(self, instance: str, *, request_id: str = "") -> Verdict:
        """Resume a paused instance."""
        return self.submit(c.ResumeWorkflow(instance=instance, request_id=request_id))

    def kill_task(self, instance: str, task: str, *, request_id: str = "") -> Verdict:
        """Kill one task of an instance."""
        return self.submit(c.KillTask(instance=instance, task=task, request_id=request_id))

    def rerun(self, instance: str, *, request_id: str = "") -> Verdict:
        """REPEAT_RUNNING: a finished instance runs all its tasks again (attempt numbers go on)."""
        return self.submit(c.RerunWorkflow(instance=instance, request_id=request_id))

    def recover(self, instance: str, *, request_id: str = "") -> Verdict:
        """START_FAILURE_TASK_PROCESS: re-run the failed and killed tasks and what follows them."""
        return self.submit(c.RecoverWorkflow(instance=instance, request_id=request_id))

    def force_success(self, instance: str, task: str, *, request_id: str = "") -> Verdict:
        """Mark a failed or killed task of a finished instance FORCED_SUCCESS."""
        return self.submit(c.ForceTaskSuccess(instance=instance, task=task, request_id=request_id))
