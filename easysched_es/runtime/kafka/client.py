"""The Python client on Kafka: produce commands, read the master's verdict from the events topic.

```python
import easysched_es as es
client = es.KafkaClient("127.0.0.1:9092")
client.define(es.load_flow("flows/etl.yaml"))    # to every partition
instance = client.start("etl_daily")             # e.g. "2-17": partition 2, offset 17
client.stop(instance)                            # produced to partition 2
```

Routing: a definition (or release change) goes to every partition, so every master knows it; a
start goes to one partition (`partition=`, else round-robin over the topic); any command about an
instance goes to the partition in its id, so an instance's commands stay in order. Produces use
acks=all (idempotent producer). The verdict is the `EventBatch` the owning master writes for
the command's (partition, offset); if none comes within `timeout`, `NoMasterError` says so.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

from easysched_es.core import commands as c
from easysched_es.core.codec import encode
from easysched_es.core.definitions import WorkflowDefinition
from easysched_es.core.events import WorkflowDefined
from easysched_es.core.slots import share
from easysched_es.log.base import LogError
from easysched_es.log.kafka import KafkaSettings, KafkaStream, ensure_topics
from easysched_es.query_verbs import QueryVerbs
from easysched_es.runtime.clock import wall_ms
from easysched_es.runtime.fold import PartitionHalted, load_state
from easysched_es.runtime.kafka.query_log import QueryLog
from easysched_es.runtime.kafka.verdicts import VerdictReader
from easysched_es.runtime.requests import partition_for, rejection, started_instance
from easysched_es.runtime.verdict import CommandRejectedError, Verdict, instance_partition
from easysched_es.schedule_verbs import ScheduleVerbs, schedule_partition

__all__ = ["KafkaClient", "NoMasterError", "instance_partition"]


class NoMasterError(LogError):
    """The command is in the log, but no master decided it in time."""


class KafkaClient(ScheduleVerbs, QueryVerbs):
    """Produces commands to `<prefix>.commands` and waits for the verdicts."""

    def __init__(self, bootstrap: str | KafkaSettings, *, timeout: float = 30.0) -> None:
        self.settings = bootstrap if isinstance(bootstrap, KafkaSettings) else KafkaSettings.from_env(bootstrap)
        self.timeout = timeout
        # One consumer looks the topics up and reads the verdicts (runtime/kafka/verdicts.py); the
        # admin client that creates missing topics is only paid for when they are missing.
        self._verdicts = VerdictReader(self.settings)
        counts = [self._verdicts.partition_count(s) for s in ("commands", "events")]
        if None in counts:
            created = ensure_topics(self.settings)
            counts = [created[self.settings.topic(s)] for s in ("commands", "events")]
        self.commands = KafkaStream(self.settings, "commands", partitions=counts[0])
        self.events = KafkaStream(self.settings, "events", partitions=counts[1])
        self._next = itertools.count(int(time.time()))
        self._query: QueryLog | None = None

    def _log_source(self) -> QueryLog:
        """What `status`, `wait`, `timers`, `logs` and `trace` fold: each partition's newest snapshot and its tail."""
        if self._query is None:
            self._query = QueryLog(self.settings)
        self._query.forget()  # each query starts from the newest snapshots
        return self._query

    def close(self) -> None:
        """Close the producer and consumers."""
        self.commands.close()
        self.events.close()
        self._verdicts.close()
        if self._query is not None:
            self._query.close()

    def __enter__(self) -> KafkaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- producing ---------------------------------------------------------------------

    def submit(self, command: c.Command, partition: int) -> Verdict:
        """Produce one command to `partition` and return the master's verdict (raises on rejection)."""
        return self.submit_many(command, [partition])[0]

    def submit_many(self, command: c.Command, partitions: Sequence[int]) -> list[Verdict]:
        """Produce the same command to several partitions; wait for every verdict."""
        if not command.at:
            command.at = wall_ms()
        payload = encode(command)
        # Seek the events partitions to their ends BEFORE producing: the verdicts come after.
        self._verdicts.seek_to_end(partitions)
        offsets = {p: self.commands.append([payload], p)[0] for p in partitions}
        found = self._verdicts.wait_for(offsets, self.timeout)
        for p in partitions:
            if p not in found:
                raise self._undecided(p, offsets[p])
        verdicts = [Verdict(offsets[p], found[p]) for p in partitions]
        for v in verdicts:
            reason = rejection(v.events)  # a repeat of a rejected request is rejected the same way
            if reason is not None:
                raise CommandRejectedError(reason, v.offset)
        return verdicts

    def route(self, command: c.Command) -> list[int]:
        """The partitions a command goes to (see the module docstring; a start with a request id
        goes to the partition its id hashes to, so that a retry meets the first decision)."""
        n = self.commands.partitions
        if isinstance(command, (c.DefineWorkflow, c.SetReleaseState)):
            return list(range(n))
        if isinstance(command, c.StartWorkflow):
            if command.request_id:
                return [partition_for(command.request_id, n)]
            return [next(self._next) % n]
        return [instance_partition(str(getattr(command, "instance", "")))]

    def send(self, command: c.Command) -> list[tuple[int, int]]:
        """Produce a command without waiting for its verdict; returns (partition, offset) per copy."""
        if not command.at:
            command.at = wall_ms()
        payload = encode(command)
        return [(p, self.commands.append([payload], p)[0]) for p in self.route(command)]

    def _undecided(self, partition: int, offset: int) -> LogError:
        """Why a command was not decided in time: its partition is stopped at a command that raised
        (folding it says so, with the `skip` that lets it go on), or no master runs."""
        try:
            load_state(self._log_source(), partition=partition)
        except PartitionHalted as halted:
            return halted
        except LogError:
            pass  # the broker went away meanwhile: say what is known
        return NoMasterError(
            f"command at offset {offset} of partition {partition} of {self.settings.topic('commands')} "
            f"was not decided within {self.timeout:.0f}s: is a master running "
            f"(easysched --kafka {self.settings.bootstrap} master)? The command stays in the log and "
            "is decided when one starts."
        )

    # ---- the API (same as Client) --------------------------------------------------------

    def define(self, definition: WorkflowDefinition, *, release: bool = True, request_id: str = "") -> int:
        """Define (and by default release) a workflow in every partition; returns its version (partition 0).

        A repeat of `request_id` returns the newest version (the fold did not define it again).
        """
        verdicts = self.submit_many(c.DefineWorkflow(definition=definition, release=release, request_id=request_id),
                                    range(self.commands.partitions))
        for ev in verdicts[0].events:
            if isinstance(ev, WorkflowDefined):
                return ev.version
        return self._latest_version(definition.name)

    def release(self, workflow: str, online: bool) -> None:
        """Put a workflow ONLINE or OFFLINE in every partition."""
        self.submit_many(c.SetReleaseState(workflow=workflow, online=online), range(self.commands.partitions))

    def _submit_schedule(self, command: c.Command) -> Verdict:
        workflow = getattr(command, "workflow", "")
        return self.submit(command, schedule_partition(workflow, self.commands.partitions))

    def start(self, workflow: str, params: dict[str, str] | None = None, schedule_time: int | None = None,
              *, partition: int | None = None, request_id: str = "", timezone: str = "",
              from_tasks: list[str] | None = None, scope: str = "post") -> str:
        """Start an instance (on `partition`, else by request id, else round-robin); returns its id.

        With `request_id`, a retry returns the instance the first start created. `from_tasks` starts
        it from those tasks, `scope` post, pre or task (see `commands.StartWorkflow`).
        """
        command = c.StartWorkflow(workflow=workflow, params=params or {}, schedule_time=schedule_time,
                                  request_id=request_id, timezone=timezone, from_tasks=from_tasks or [], scope=scope)
        verdict = self.submit(command, self.route(command)[0] if partition is None else partition)
        return started_instance(verdict.events)

    def set_pool(self, pool: str, slots: int) -> list[Verdict]:
        """Set a pool's slots in every partition, split between them (-1 deletes the pool)."""
        n = self.commands.partitions
        return [self.submit(c.SetPool(pool=pool, slots=slots if slots < 0 else share(slots, n, p)), p)
                for p in range(n)]

    def stop(self, instance: str, *, request_id: str = "") -> Verdict:
        """Stop an instance: every active task is killed."""
        return self.submit(c.StopWorkflow(instance=instance, request_id=request_id), instance_partition(instance))

    def pause(self, instance: str, *, request_id: str = "") -> Verdict:
        """Pause an instance."""
        return self.submit(c.PauseWorkflow(instance=instance, request_id=request_id), instance_partition(instance))

    def resume(self, instance: str, *, request_id: str = "") -> Verdict:
        """Resume a paused instance."""
        return self.submit(c.ResumeWorkflow(instance=instance, request_id=request_id), instance_partition(instance))

    def skip(self, offset: int, reason: str, partition: int = 0) -> Verdict:
        """Pass over the command at `offset` of `partition`, on which that partition stopped (it raised).

        The verdict comes once the partition's master has folded again past the skipped command.
        """
        if not reason.strip():
            # Refused at the door: a reasonless skip in the log would be rejected by the fold.
            raise CommandRejectedError("a skip needs a reason: it stays in the log for the record", -1)
        if not 0 <= partition < self.commands.partitions:
            raise CommandRejectedError(
                f"the commands topic has partitions 0..{self.commands.partitions - 1}, not {partition}", -1)
        return self.submit(c.SkipCommand(offset=offset, reason=reason), partition)

    def kill_task(self, instance: str, task: str, *, request_id: str = "") -> Verdict:
        """Kill one task of an instance."""
        return self.submit(c.KillTask(instance=instance, task=task, request_id=request_id),
                           instance_partition(instance))

    def _latest_version(self, workflow: str) -> int:
        entry = load_state(self._log_source(), partition=0).workflows.get(workflow)
        return entry.versions[-1].version if entry is not None else 0

    def rerun(self, instance: str, *, request_id: str = "") -> Verdict:
        """REPEAT_RUNNING: a finished instance runs all its tasks again (attempt numbers go on)."""
        return self.submit(c.RerunWorkflow(instance=instance, request_id=request_id), instance_partition(instance))

    def recover(self, instance: str, *, request_id: str = "") -> Verdict:
        """START_FAILURE_TASK_PROCESS: re-run the failed and killed tasks and what follows them."""
        return self.submit(c.RecoverWorkflow(instance=instance, request_id=request_id), instance_partition(instance))

    def force_success(self, instance: str, task: str, *, request_id: str = "") -> Verdict:
        """Mark a failed or killed task of a finished instance FORCED_SUCCESS."""
        command = c.ForceTaskSuccess(instance=instance, task=task, request_id=request_id)
        return self.submit(command, instance_partition(instance))
