"""Soak: a month of hourly production load through the fold alone (no processes), with retention.

    python bench/soak.py [--days 30] [--workflows 300] [--retention 7] [--tasks 3]

Each simulated hour, every workflow starts one instance (schedule_time = the hour) whose SHELL
tasks (a, then b and c) are reported started and finished by a simulated worker with 8 slots
per workflow group... in short: 300 workflows x 24 x 30 = 216,000 instances and 648,000 tasks,
about 1.5 million commands. `ApplyRetention` runs every hour (as `easysched run` does) with the
workflows' retention_days. At the end of every simulated day it prints:
- hot instances, and the process RSS (the fold's: the snapshot is measured in a forked child);
- the snapshot's encoded size and its load time (decode + restore), wall and CPU;
- `status` latency: snapshot load plus the view of one workflow's instances;
- `start` decision latency: p50/p99 of the fold's step for the day's StartWorkflow commands
  (the embedded client reads that decision from the events log's tail, so its own cost does
  not grow with the log: see runtime/embedded/verdicts.py).
Targets: memory and snapshot size flat after day `--retention`; snapshot load < 1 s; start p50 < 30 ms.
The baseline, measured in the same run: the same day's fold without retention on day 1.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

import msgspec

from easysched_es.core import commands as c
from easysched_es.core.codec import decode_snapshot, encode
from easysched_es.core.definitions import WorkflowDefinition
from easysched_es.core.events import DispatchTask
from easysched_es.core.state import State
from easysched_es.core.step import step
from easysched_es.debug.views import status_view
from easysched_es.runtime.gc_pause import gc_paused

HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def definition(i: int, tasks: int, retention: float) -> WorkflowDefinition:
    spec = [{"name": "a", "type": "SHELL", "command": "run a"}]
    spec += [{"name": f"t{k}", "type": "SHELL", "command": f"run {k}", "upstream": ["a"]} for k in range(1, tasks)]
    return msgspec.convert({"name": f"wf{i:03d}", "tasks": spec, "retention_days": retention}, WorkflowDefinition)


class Soak:
    def __init__(self, workflows: int, tasks: int, retention: float) -> None:
        self.state = State()
        self.offset = -1
        self.workflows = workflows
        self.start_ms: list[float] = []
        for i in range(workflows):
            self.send(c.DefineWorkflow(at=T0, definition=definition(i, tasks, retention)))
        self.send(c.Heartbeat(at=T0, worker="w", slots=8 * workflows, group="*"))

    def send(self, cmd: c.Command) -> list[object]:
        self.offset += 1
        _, events = step(self.state, cmd, self.offset)
        return events  # type: ignore[return-value]

    def hour(self, now: int, retention: bool) -> None:
        pending: list[DispatchTask] = []
        for i in range(self.workflows):
            t0 = time.perf_counter()
            events = self.send(c.StartWorkflow(at=now, workflow=f"wf{i:03d}", schedule_time=now))
            self.start_ms.append((time.perf_counter() - t0) * 1000)
            pending += [ev for ev in events if isinstance(ev, DispatchTask)]
        at = now + 1000
        while pending:
            d = pending.pop()
            self.send(c.TaskStarted(at=at, instance=d.instance, task=d.task, attempt=d.attempt, pid=1, worker="w"))
            events = self.send(c.TaskFinished(at=at + 500, instance=d.instance, task=d.task, attempt=d.attempt,
                                              exit_code=0, worker="w"))
            pending += [ev for ev in events if isinstance(ev, DispatchTask)]
        if retention:
            self.send(c.ApplyRetention(at=now + HOUR - 1, now=now + HOUR - 1))


def measure(soak: Soak) -> tuple[int, float, float, float]:
    """Snapshot size, load time (wall and CPU: on a shared machine the wall time includes waiting
    for a core) and `status` time, loaded as the runtime does (collector paused).

    Measured in a forked child: the encoded snapshot and the restored copies never enter this
    process's heap, so its RSS is the fold's own (freed copies would stay in the allocator's
    arenas and look like growth).
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, report, exit without cleanup
        snap = encode(soak.state.snapshot())
        with gc_paused():
            t0, c0 = time.perf_counter(), time.process_time()
            restored = State.restore(decode_snapshot(snap))
            load, load_cpu = time.perf_counter() - t0, time.process_time() - c0
            t0 = time.perf_counter()
            status_view(State.restore(decode_snapshot(snap)), workflow="wf000")
            status = time.perf_counter() - t0
        del restored
        os.write(write, msgspec.json.encode([len(snap), load, load_cpu, status]))
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        size, load, load_cpu, status = msgspec.json.decode(f.read())
    os.waitpid(pid, 0)
    return size, load, load_cpu, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workflows", type=int, default=300)
    parser.add_argument("--tasks", type=int, default=3, help="tasks per workflow (a, then the others after it)")
    parser.add_argument("--retention", type=float, default=7.0, help="retention_days of every workflow")
    args = parser.parse_args()

    base = Soak(args.workflows, args.tasks, args.retention)
    t0 = time.perf_counter()
    for h in range(24):
        base.hour(T0 + h * HOUR, retention=False)
    base_day = time.perf_counter() - t0
    base_size, base_load, _, _ = measure(base)
    print(f"baseline (day 1 without retention): {base_day:.1f} s to fold, snapshot {base_size / 2**20:.1f} MiB, "
          f"load {base_load * 1000:.0f} ms")
    del base
    gc.collect()

    soak = Soak(args.workflows, args.tasks, args.retention)
    print(f"{'day':>3} {'hot inst':>9} {'RSS MiB':>8} {'snap MiB':>9} {'load ms':>8} {'cpu ms':>7} {'status ms':>10} "
          f"{'start p50 ms':>13} {'start p99 ms':>13} {'fold s':>7}")
    for day in range(args.days):
        t0 = time.perf_counter()
        soak.start_ms = []
        for h in range(24):
            soak.hour(T0 + (day * 24 + h) * HOUR, retention=True)
        fold = time.perf_counter() - t0
        rss = rss_mb()
        size, load, load_cpu, status = measure(soak)
        q = statistics.quantiles(soak.start_ms, n=100)
        print(f"{day + 1:>3} {len(soak.state.instances):>9,} {rss:>8.0f} {size / 2**20:>9.1f} {load * 1000:>8.0f} "
              f"{load_cpu * 1000:>7.0f} {status * 1000:>10.0f} {statistics.median(soak.start_ms):>13.3f} "
              f"{q[98]:>13.3f} {fold:>7.1f}",
              flush=True)
    print(f"commands folded: {soak.offset + 1:,}; instances started: {args.days * 24 * args.workflows:,}")


if __name__ == "__main__":
    main()
