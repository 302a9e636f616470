"""Backfill: instances/s of a backfill through a real `easysched run`, against a plain `start` loop.

    python bench/backfill.py [-n 3650] [--parallel 8] [--slots 64] [--skip-run] [--skip-fold]

1. Run (embedded log, real `easysched run --no-projections`): a 3-task `true` chain workflow.
   a. `backfill --from D --to D+n-1 --parallel P`: one command; the fold takes the next date in
      the step where a date's instance ends. Measured from the backfill command's append to the
      `backfill_finished` event (both in the log, stamped by the same clock).
   b. Baseline in the same run: a client loop of plain `start` commands for the same n dates
      (`schedule_time` = the date), keeping P instances in flight as the backfill does: it
      appends a start whenever it reads that one of its instances ended.
   Printed: instances/s of both and the ratio (> 1: the backfill is faster).
2. Fold only (in process, no workers): the same backfill with every task's report applied at
   once, against the same n instances started by `start` commands: the fold's cost per
   instance (start + 3 tasks + end), and the state's size after it (only the dates in flight).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.codec import decode_batch, encode
from easysched_es.core.definitions import ShellTask, WorkflowDefinition
from easysched_es.core.state import State
from easysched_es.core.step import step
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.embedded.local_run import start_run, stop_run, wait_for
from easysched_es.runtime.fold import records

FIRST = date(2016, 1, 1)


def _flow(name: str) -> WorkflowDefinition:
    return WorkflowDefinition(name=name, tasks=[ShellTask(name="a", command="true"),
                                                ShellTask(name="b", command="true", upstream=["a"]),
                                                ShellTask(name="c", command="true", upstream=["b"])])


def _ms(d: date) -> int:
    return (d - date(1970, 1, 1)).days * 86_400_000


class Events:
    """Reads the events log incrementally (where it stopped last time)."""

    def __init__(self, data: DataDir) -> None:
        self.stream = data.events()
        self.pos = 0

    def new(self) -> list[tuple[int, e.Event]]:
        out = []
        for record in records(self.stream, start=self.pos):
            batch = decode_batch(record.payload)
            out.extend((batch.at, ev) for ev in batch.events)
            self.pos = record.next
        return out


def _run(n: int, parallel: int, slots: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="easysched-bench-backfill-"))
    try:
        data = DataDir(root)
        now = int(time.time() * 1000)
        with data.commands() as commands:
            commands.append([encode(c.DefineWorkflow(at=now, definition=_flow("bf"))),
                             encode(c.DefineWorkflow(at=now, definition=_flow("loop")))])
        with open(root / "run.log", "wb") as log:
            run = start_run(root, log, "--no-projections", "--slots", str(slots))
        events = Events(data)
        try:
            last = FIRST + timedelta(days=n - 1)
            t0 = int(time.time() * 1000)
            with data.commands() as commands:
                commands.append([encode(c.StartBackfill(at=t0, workflow="bf", from_date=str(FIRST), to_date=str(last),
                                                        parallel=parallel))])
            finished: list[int] = []

            def backfill_done() -> bool:
                finished.extend(at for at, ev in events.new() if isinstance(ev, e.BackfillFinished))
                return bool(finished)

            wait_for("the backfill to finish", backfill_done, timeout=3600, every=0.2)
            backfill_s = (finished[0] - t0) / 1000

            # Baseline: the same dates through plain starts, P in flight, in the same run.
            days = [FIRST + timedelta(days=i) for i in range(n)]
            mine: set[str] = set()
            in_flight = done = 0
            t1 = int(time.time() * 1000)
            ended_at = t1
            with data.commands() as commands:
                while done < n:
                    batch = []
                    while days and in_flight + len(batch) < parallel:
                        batch.append(encode(c.StartWorkflow(at=int(time.time() * 1000), workflow="loop",
                                                            schedule_time=_ms(days.pop(0)))))
                    if batch:
                        commands.append(batch)
                        in_flight += len(batch)
                    for at, ev in events.new():
                        if isinstance(ev, e.WorkflowStarted) and ev.workflow == "loop":
                            mine.add(ev.instance)
                        elif isinstance(ev, e.WorkflowFinished) and ev.instance in mine:
                            in_flight, done, ended_at = in_flight - 1, done + 1, at
                    time.sleep(0.005)
            loop_s = (ended_at - t1) / 1000
        finally:
            stop_run(run)
            events.stream.close()
        print(f"{n} dates of a 3-task `true` chain, {parallel} in flight, real run --no-projections --slots {slots}:")
        print(f"  backfill (one command): {backfill_s:.1f} s, {n / backfill_s:.1f} instances/s")
        print(f"  plain start loop, {parallel} in flight: {loop_s:.1f} s, {n / loop_s:.1f} instances/s")
        print(f"  backfill / start loop: {(n / backfill_s) / (n / loop_s):.2f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _finish_all(state: State, offset: int, at: int, started: list[str]) -> int:
    """Report every task of the given instances started and finished (the chain, in order)."""
    todo = list(started)
    while todo:
        inst = todo.pop(0)
        for task in ("a", "b", "c"):
            offset += 1
            step(state, c.TaskStarted(at=at, instance=inst, task=task, attempt=1, pid=1, worker="w"), offset)
            offset += 1
            _, out = step(state, c.TaskFinished(at=at, instance=inst, task=task, attempt=1, exit_code=0,
                                                worker="w"), offset)
            todo.extend(ev.instance for ev in out if isinstance(ev, e.WorkflowStarted))
    return offset


def _fold_backfill(n: int, parallel: int) -> tuple[float, State]:
    at = 1_800_000_000_000
    state = State()
    step(state, c.DefineWorkflow(at=at, definition=_flow("bf")), 0)
    t0 = time.perf_counter()
    _, out = step(state, c.StartBackfill(at=at, workflow="bf", from_date=str(FIRST),
                                         to_date=str(FIRST + timedelta(days=n - 1)), parallel=parallel), 1)
    _finish_all(state, 1, at, [ev.instance for ev in out if isinstance(ev, e.WorkflowStarted)])
    elapsed = time.perf_counter() - t0
    (bf,) = state.backfills.values()
    assert bf.state == "SUCCESS" and bf.succeeded == n, bf
    return elapsed, state


def _fold_starts(n: int) -> float:
    at = 1_800_000_000_000
    base = State()
    step(base, c.DefineWorkflow(at=at, definition=_flow("bf")), 0)
    t0 = time.perf_counter()
    offset = 0
    for i in range(n):
        offset += 1
        _, out = step(base, c.StartWorkflow(at=at, workflow="bf", schedule_time=_ms(FIRST + timedelta(days=i))),
                      offset)
        offset = _finish_all(base, offset, at, [ev.instance for ev in out if isinstance(ev, e.WorkflowStarted)])
    return time.perf_counter() - t0


def _fold(n: int, parallel: int) -> None:
    # Alternated, best of two each: the machine is shared and the first pass warms the caches.
    start_s = backfill_s = float("inf")
    for _ in range(2):
        start_s = min(start_s, _fold_starts(n))
        elapsed, state = _fold_backfill(n, parallel)
        backfill_s = min(backfill_s, elapsed)
    (bf,) = state.backfills.values()
    print(f"fold only, {n} dates (3 tasks each, reports applied at once, no workers; best of 2):")
    print(f"  backfill: {n / backfill_s:,.0f} instances/s ({backfill_s / n * 1e6:.0f} us each); "
          f"plain starts: {n / start_s:,.0f} instances/s ({start_s / n * 1e6:.0f} us each); "
          f"backfill / starts {start_s / backfill_s:.2f}x")
    print(f"  the backfill's own state when done: {len(encode(bf))} B (a cursor and counts; its finished instances "
          f"are the fold's as usual: snapshot {len(encode(state.snapshot())) / 1e6:.1f} MB for "
          f"{len(state.instances)} of them)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=3650, help="days to backfill (3650 = ten years)")
    parser.add_argument("--parallel", type=int, default=8, help="dates in flight (backfill --parallel)")
    parser.add_argument("--slots", type=int, default=64, help="task slots of the run (its --slots)")
    parser.add_argument("--skip-run", action="store_true", help="only the in-process fold part")
    parser.add_argument("--skip-fold", action="store_true", help="only the real run")
    args = parser.parse_args()
    if not args.skip_fold:
        _fold(args.n, args.parallel)
    if not args.skip_run:
        _run(args.n, args.parallel, args.slots)


if __name__ == "__main__":
    main()
