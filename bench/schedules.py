"""Schedules: fire lateness through a real `easysched run`, and the cost of many pending schedules.

    python bench/schedules.py [--schedules 10000] [--pending 100000] [--skip-run]

1. Lateness (embedded log, real `easysched run --no-projections`): N workflows of one SHELL
   `true` task, each with a Quartz schedule firing once a minute at second i % 60, so the
   fires are spread over the minute (N/60 per second). For every fire of the measured minute:
   `tick` = the CheckDue that fired it (its `at`, the ticker's wall clock) - the nominal time,
   and `running` = the worker's started report - the nominal time (spawn included). Baseline in
   the same run: plain `start` commands, append -> started report. Target p99 < 50 ms (tick).
2. Memory (pure fold, in process): `--pending` workflows with one online schedule each, against
   the same workflows without schedules (the baseline): state memory (tracemalloc) and snapshot
   size, and the fold's cost per fire with 1,000 pending entries vs `--pending` (O(log n)).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.codec import decode_batch, decode_command, encode
from easysched_es.core.definitions import ShellTask, WorkflowDefinition
from easysched_es.core.state import State
from easysched_es.core.step import step
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.embedded.local_run import start_run, stop_run, wait_for
from easysched_es.runtime.fold import records


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def line(name: str, values: list[float]) -> str:
    return (f"{name}: n={len(values)} p50 {statistics.median(values):.1f} ms, p99 {pct(values, 0.99):.1f} ms, "
            f"max {max(values):.1f} ms")


def _flow(name: str) -> WorkflowDefinition:
    return WorkflowDefinition(name=name, tasks=[ShellTask(name="t", command="true")])


def _events(data: DataDir) -> list[tuple[int, list[e.Event]]]:
    with data.events() as stream:
        return [(b.at, b.events) for b in (decode_batch(r.payload) for r in records(stream))]


def lateness(n: int, slots: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="easysched-bench-sched-"))
    try:
        data = DataDir(root)
        now = int(time.time() * 1000)
        # First fires a whole minute after everything is appended and the run is up.
        start = (now // 60_000 + 2) * 60_000
        payloads = [encode(c.DefineWorkflow(at=now, definition=_flow(f"wf{i}"))) for i in range(n)]
        payloads += [encode(c.SetSchedule(at=now, workflow=f"wf{i}", cron=f"{i % 60} * * * * ?", start=start,
                                          end=start + 59_999)) for i in range(n)]
        with data.commands() as commands:
            for k in range(0, len(payloads), 500):  # appends of a bounded size, like many clients
                commands.append(payloads[k : k + 500])
        with open(root / "run.log", "wb") as log:
            run = start_run(root, log, "--no-projections", "--slots", str(slots))
        try:
            # Baseline, before the measured minute: plain starts, append -> started report, same run.
            with data.commands() as commands:
                for i in range(50):
                    commands.append([encode(c.StartWorkflow(at=int(time.time() * 1000), workflow=f"wf{i}"))])
                    time.sleep(0.05)
            wait_for("the measured minute to pass", lambda: time.time() * 1000 > start + 70_000,
                     timeout=(start + 90_000) / 1000 - time.time(), every=0.5)
        finally:
            stop_run(run)
        nominal_of: dict[str, int] = {}
        tick: list[float] = []
        running: list[float] = []
        manual_started: dict[str, int] = {}
        manual: list[float] = []
        for at, events in _events(data):
            for ev in events:
                if isinstance(ev, e.ScheduleFired) and ev.outcome == "STARTED":
                    nominal_of[ev.instance] = ev.nominal
                    tick.append(at - ev.nominal)
                elif isinstance(ev, e.WorkflowStarted) and not ev.command_type:
                    manual_started[ev.instance] = at
        with data.commands() as commands:
            for record in records(commands):
                cmd = decode_command(record.payload)
                if isinstance(cmd, c.TaskStarted):
                    if cmd.instance in nominal_of:
                        running.append(cmd.at - nominal_of[cmd.instance])
                    elif cmd.instance in manual_started:
                        manual.append(cmd.at - manual_started[cmd.instance])
        if not tick or not running or not manual:
            print((root / "run.log").read_text(errors="replace")[-4000:])
            raise SystemExit(f"no fires measured (tick {len(tick)}, running {len(running)}, baseline {len(manual)})")
        fired, skipped = len(tick), n - len(tick)
        print(f"{n} schedules, one fire each in one minute ({n / 60:.0f} fires/s), embedded log, run --slots {slots}:")
        print("  " + line("tick lateness (nominal -> CheckDue that fired it)", tick) + "  (target p99 < 50 ms)")
        print("  " + line("to running (nominal -> worker's started report)", running))
        print("  " + line("baseline: plain start -> started report", manual))
        print(f"  fires started {fired}, not started {skipped}; running p50 / baseline p50 = "
              f"{statistics.median(running) / statistics.median(manual):.2f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _build(n: int, scheduled: bool) -> State:
    state = State()
    offset = 0
    for i in range(n):
        step(state, c.DefineWorkflow(at=1_700_000_000_000, definition=_flow(f"wf{i}")), offset)
        offset += 1
        if scheduled:
            step(state, c.SetSchedule(at=1_700_000_000_000, workflow=f"wf{i}", cron=f"{i % 60} {i % 7} * * * ?"),
                 offset)
            offset += 1
    return state


def _measure(n: int, scheduled: bool) -> tuple[State, int, int]:
    tracemalloc.start()
    state = _build(n, scheduled)
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return state, size, len(encode(state.snapshot()))


def _fire_cost(state: State, fires: int) -> float:
    """Seconds per fire for a CheckDue that fires the `fires` earliest entries."""
    due = sorted(t.due for t in state.queue.entries() if t.kind == "SCHEDULE")[:fires]
    t0 = time.perf_counter()
    step(state, c.CheckDue(at=due[-1], now=due[-1]), state.last_offset + 1)
    return (time.perf_counter() - t0) / len(due)


def memory(n: int) -> None:
    _, base_mem, base_snap = _measure(n, False)
    state, mem, snap = _measure(n, True)
    print(f"{n} workflows with one pending schedule entry each (pure fold):")
    print(f"  state memory {mem / 1e6:.1f} MB vs {base_mem / 1e6:.1f} MB without schedules: "
          f"{(mem - base_mem) / n:.0f} B per schedule")
    print(f"  snapshot {snap / 1e6:.1f} MB vs {base_snap / 1e6:.1f} MB: {(snap - base_snap) / n:.0f} B per schedule")
    small = _build(1000, True)
    big_cost, small_cost = _fire_cost(state, 1000), _fire_cost(small, 1000)
    print(f"  per fire (start of a 1-task instance included): {big_cost * 1e6:.0f} us with {n} pending, "
          f"{small_cost * 1e6:.0f} us with 1000 pending ({big_cost / small_cost:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--skip-run", action="store_true", help="only the in-process memory part")
    parser.add_argument("--slots", type=int, default=64, help="task slots of the run (its --slots)")
    parser.add_argument("--skip-memory", action="store_true", help="only the lateness run")
    args = parser.parse_args()
    if not args.skip_memory:
        memory(args.pending)
    if not args.skip_run:
        lateness(args.schedules, args.slots)


if __name__ == "__main__":
    main()
