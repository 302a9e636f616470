"""What a client can ask, beside what it can command: status, wait, timers, logs, trace.

Mixed into `Client` (embedded) and `KafkaClient`; each gives `_log_source()`, the log it folds.
Answers have the shapes of the CLI's `--json` output (README "Python client"), and the same
field names as the projection (`started_at`, `ended_at`, `exit_code`, ISO-8601 UTC with ms).

```python
client = es.Client(".easysched")
instance = client.start("etl_daily")
final = client.wait(instance, timeout=600)      # the instance's status once it ended
print(final["state"], client.logs(instance, "load"))
```
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from easysched_es.core.state import State
    from easysched_es.runtime.fold import LogSource

FINAL_STATES = ("SUCCESS", "FAILURE", "STOP", "PAUSE")


class UnknownInstanceError(LookupError):
    """No partition of the log knows this instance (or task, or attempt)."""


class WaitTimeoutError(TimeoutError):
    """`wait(timeout=...)` ran out before the instance ended; `state` is where it stood."""

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state


def _partition(source: LogSource, instance: str) -> int:
    from easysched_es.runtime.fold import instance_partition

    try:
        partition = instance_partition(instance)
    except ValueError as exc:
        raise UnknownInstanceError(str(exc)) from None
    if partition >= source.partitions:
        raise UnknownInstanceError(f"unknown instance {instance!r}")
    return partition


def wait_for_end(source: LogSource, instance: str, timeout: float | None = None,
                 poll: float = 0.1) -> dict[str, Any]:
    """Fold the instance's partition until it is in a final state; its status view then.

    `timeout=None` waits forever; else WaitTimeoutError. The fold goes on from where it was
    (one pass over the log in all), so a long wait costs little.
    """
    from easysched_es.debug.views import status_view

    def view_of(state: State) -> dict[str, Any]:
        view = status_view(state, instance)
        if not view:
            from easysched_es.core.retention import retired

            gone = retired(state, instance)
            if gone is None:
                raise UnknownInstanceError(f"unknown instance {instance!r}")
            # Ended, then retired from the hot state: its end is what the wait was for.
            return {"instance": instance, "workflow": gone[0], "state": gone[1].state, "retired": True}
        return view[0]

    return follow(source, _partition(source, instance), view_of, lambda v: v["state"] in FINAL_STATES,
                  instance, timeout, poll)


def follow(source: LogSource, partition: int, view_of: Callable[[State], dict[str, Any]],
           done: Callable[[dict[str, Any]], bool], what: str, timeout: float | None = None, poll: float = 0.1,
           on_view: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Fold `partition` on and on until `done(view_of(state))`; that view (`wait`, `backfill --wait`).

    WaitTimeoutError naming `what` after `timeout` seconds (None: never); `on_view` sees every view.
    """
    from easysched_es.runtime.fold import fold_through, start_state

    deadline = None if timeout is None else time.monotonic() + timeout
    folded = start_state(source, partition)
    with source.commands() as commands:
        while True:
            fold_through(commands, folded, partition=partition)
            view = view_of(folded)
            if on_view is not None:
                on_view(view)
            if done(view):
                return view
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeoutError(f"{what} still {view['state']} after {timeout:g}s", view["state"])
            time.sleep(poll)


class QueryVerbs:
    """status, wait, timers, logs and trace over the client's log (it folds; no master needed)."""

    def _log_source(self) -> LogSource:
        raise NotImplementedError

    def status(self, instance: str | None = None) -> Any:
        """One instance's status (dict), or every instance's (list), tasks not yet submitted included."""
        from easysched_es.cli.status_columns import add_task_columns
        from easysched_es.debug.views import status_view
        from easysched_es.runtime.fold import load_state, load_states

        source = self._log_source()
        if instance is None:
            states = load_states(source)
            return add_task_columns(status_view(states), states)
        state = load_state(source, partition=_partition(source, instance))
        view = status_view(state, instance)
        if not view:
            raise UnknownInstanceError(f"unknown instance {instance!r}")
        return add_task_columns(view, state)[0]

    def wait(self, instance: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until `instance` ends (SUCCESS, FAILURE, STOP or PAUSE); its status then.

        WaitTimeoutError after `timeout` seconds (None: wait forever).
        """
        return wait_for_end(self._log_source(), instance, timeout)

    def timers(self) -> list[dict[str, Any]]:
        """Every pending delay-queue entry, earliest first: {instance, task, kind, due, due_ms}."""
        from easysched_es.debug.views import timers_view
        from easysched_es.runtime.fold import load_states

        return timers_view(load_states(self._log_source()))

    def trace(self, instance: str, task: str | None = None) -> list[dict[str, Any]]:
        """Every command and event that touched the instance (or the task), in log order."""
        from easysched_es.debug.trace import trace

        entries = trace(self._log_source(), instance, task)
        if not entries:
            raise UnknownInstanceError(f"nothing in the log touched instance {instance!r}")
        return entries

    def logs(self, instance: str, task: str, attempt: int | None = None) -> str:
        """The output of a task attempt (default the latest that started), read from the path its worker reported."""
        started = [e["data"] for e in self.trace(instance, task)
                   if e["kind"] == "command" and e["type"] == "task_started" and (e["data"] or {}).get("task") == task]
        chosen = started[-1] if started and attempt is None else next(
            (d for d in started if d.get("attempt") == attempt), None)
        if chosen is None:
            raise UnknownInstanceError(f"task {task!r} of {instance} has no started attempt"
                                       + (f" {attempt}" if attempt is not None else ""))
        path = Path(chosen.get("log_path") or "")
        if not chosen.get("log_path") or not path.is_file():
            where = chosen.get("log_path") or "no path reported"
            raise UnknownInstanceError(f"the log of attempt {chosen.get('attempt')} is not on this machine "
                                       f"({where}, worker {chosen.get('worker')})")
        return path.read_text(errors="replace")
