"""The schedule verbs both Python clients share (embedded `Client` and `KafkaClient`).

Each verb builds one command and hands it to the client's `_submit_schedule`, which routes it
(embedded: the one log; Kafka: the schedule's owner partition, see `schedule_partition`).
"""

from __future__ import annotations

import zlib
from typing import Any

from easysched_es.backfill_verbs import BackfillVerbs
from easysched_es.core import commands as c


def schedule_partition(workflow: str, partitions: int) -> int:
    """The one partition a workflow's schedule lives in on Kafka (stable: crc32 of the name).

    Definitions and release changes reach every partition, but a schedule must fire in one
    only, so its commands all go to this partition and only its master arms the entry.
    """
    return zlib.crc32(workflow.encode("utf-8")) % partitions


class ScheduleVerbs(BackfillVerbs):
    """`set_schedule`, `schedule_online`, `schedule_offline`, `delete_schedule`, `trigger_schedule`
    (and the backfill verbs, `backfill_verbs.py`)."""

    def _submit_schedule(self, command: c.Command) -> Any:
        raise NotImplementedError

    def set_schedule(self, workflow: str, cron: str, *, timezone: str = "UTC", start: int | None = None,
                     end: int | None = None, overlap: str = "SKIP", catchup_window: int = 0,
                     online: bool | None = None, params: dict[str, str] | None = None) -> Any:
        """Create or change a workflow's schedule (see `commands.SetSchedule`); returns the verdict."""
        return self._submit_schedule(c.SetSchedule(
            workflow=workflow, cron=cron, timezone=timezone, start=start, end=end, overlap=overlap,
            catchup_window=catchup_window, online=online, params=params or {}))

    def schedule_online(self, workflow: str) -> Any:
        """Put a workflow's schedule ONLINE: its next fire is armed."""
        return self._submit_schedule(c.SetScheduleState(workflow=workflow, online=True))

    def schedule_offline(self, workflow: str) -> Any:
        """Put a workflow's schedule OFFLINE: its pending fire is removed in the same step."""
        return self._submit_schedule(c.SetScheduleState(workflow=workflow, online=False))

    def delete_schedule(self, workflow: str) -> Any:
        """Delete a workflow's schedule."""
        return self._submit_schedule(c.DeleteSchedule(workflow=workflow))

    def trigger_schedule(self, workflow: str) -> Any:
        """Fire the schedule once now, as the schedule would (SCHEDULER; overlap policy applies)."""
        return self._submit_schedule(c.TriggerSchedule(workflow=workflow))
