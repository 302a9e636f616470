"""The backfill verbs both Python clients share (mixed in through `ScheduleVerbs`).

A backfill goes where its workflow's schedule lives (embedded: the one log; Kafka: the
schedule's owner partition, `schedule_partition`), since its dates come from that schedule's
cron; its id ("P-O-backfill") then routes `stop` there like an instance id.

```python
bf = client.backfill("etl_daily", "2026-11-01", "2026-11-30", parallel=4)
client.backfill_wait(bf)["state"]              # SUCCESS, FAILURE or STOP
client.stop(bf)                                # the backfill and every instance it started
```
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from easysched_es.core import commands as c

if TYPE_CHECKING:
    from easysched_es.core.state import State
    from easysched_es.runtime.fold import LogSource

FINAL = ("SUCCESS", "FAILURE", "STOP")


class BackfillVerbs:
    """`backfill`, `backfill_status` and `backfill_wait`."""

    def _submit_schedule(self, command: c.Command) -> Any:
        raise NotImplementedError

    def _log_source(self) -> LogSource:
        raise NotImplementedError

    def backfill(self, workflow: str, from_date: str = "", to_date: str = "", *, dates: list[str] | None = None,
                 parallel: int = 1, reverse: bool = False, dependents: bool = False, all_levels: bool = False,
                 params: dict[str, str] | None = None, timezone: str = "", request_id: str = "") -> str:
        """Start a backfill (COMPLEMENT_DATA, see `commands.StartBackfill`); returns its id."""
        from easysched_es.core.events import BackfillStarted, RequestRepeated

        verdict = self._submit_schedule(c.StartBackfill(
            workflow=workflow, from_date=from_date, to_date=to_date, dates=dates or [], parallel=parallel,
            reverse=reverse, dependents=dependents, all_levels=all_levels, params=params or {},
            timezone=timezone, request_id=request_id))
        for ev in verdict.events:
            if isinstance(ev, BackfillStarted):
                return ev.backfill
            if isinstance(ev, RequestRepeated) and ev.instance:
                return ev.instance
        raise ValueError("the verdict holds no started backfill")

    def backfill_status(self, backfill: str) -> dict[str, Any]:
        """Where a backfill stands: state, total, done, succeeded, failed, running (dates) and more."""
        from easysched_es.runtime.fold import load_state

        return progress_of(load_state(self._log_source(), partition=backfill_partition(self._log_source(), backfill)),
                           backfill)

    def backfill_wait(self, backfill: str, timeout: float | None = None,
                      on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Block until the backfill ends (SUCCESS, FAILURE or STOP; its last instances finished too)."""
        return wait_backfill(self._log_source(), backfill, timeout, on_progress)


class UnknownBackfillError(LookupError):
    """No partition knows this backfill id."""


def backfill_partition(source: LogSource, backfill: str) -> int:
    """The partition in a backfill's id (P-O-backfill)."""
    head, _, _ = backfill.partition("-")
    if not head.isdigit() or int(head) >= source.partitions:
        raise UnknownBackfillError(f"unknown backfill {backfill!r} (ids look like 0-42-backfill)")
    return int(head)


def progress_of(state: State, backfill: str) -> dict[str, Any]:
    """The `status <backfill-id>` view of one backfill in a folded state."""
    from easysched_es.core.backfill import progress
    from easysched_es.debug.views import iso

    bf = state.backfills.get(backfill)
    if bf is None:
        raise UnknownBackfillError(f"unknown backfill {backfill!r}")
    return {**progress(bf), "created_at": iso(bf.created), "ended_at": iso(bf.ended)}


def wait_backfill(source: LogSource, backfill: str, timeout: float | None = None,
                  on_progress: Callable[[dict[str, Any]], None] | None = None, poll: float = 0.2) -> dict[str, Any]:
    """Fold the backfill's partition until it ended and nothing it started still runs (one pass in all)."""
    from easysched_es.query_verbs import follow

    return follow(source, backfill_partition(source, backfill), lambda state: progress_of(state, backfill),
                  lambda view: view["state"] in FINAL and not view["running"], backfill, timeout, poll, on_progress)
