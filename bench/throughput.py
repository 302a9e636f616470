"""End-to-end throughput through a real `easysched run` on the embedded log.

    python bench/throughput.py [--fanout 1000] [--chain 50] [--slots 0,8] [--no-projections]

Prints (a) fan-out: a workflow of N independent SHELL tasks running `true`, tasks/s from
the start command to the instance's end, and the most task processes seen alive at once
(/proc sampled during the run), once per `--slots` value (0 = no limit), each on its own
`easysched run`; (b) a chain of M tasks (on the first run): the median time per chain step
(one task's end to the next task's end: report, fold, dispatch, spawn, run); and, measured in
the same run, the bare rate of spawning `sh -c true` from Python.
Targets: fan-out >= 300 tasks/s unlimited; with 8 slots never more than 8 processes; chain
step <= 10 ms.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import msgspec

from easysched_es.core.codec import decode_batch
from easysched_es.core.definitions import WorkflowDefinition
from easysched_es.core.events import WorkflowFinished
from easysched_es.core.state import WorkflowInstance
from easysched_es.runtime.embedded.client import Client
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.embedded.local_run import pid_alive, start_run, stop_run, wait_for
from easysched_es.runtime.fold import load_state


def bare_spawn_rate(n: int) -> tuple[float, float]:
    """`sh -c true` spawned and waited for n times: via subprocess.run, and via posix_spawn + waitpid."""
    t0 = time.perf_counter()
    for _ in range(n):
        subprocess.run(["sh", "-c", "true"], check=True)
    popen = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(n):
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", "true"], os.environ)
        os.waitpid(pid, 0)
    return popen, n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fanout", type=int, default=1000)
    parser.add_argument("--slots", default="0,8", help="comma-separated --slots values, one run each (0 = no limit)")
    parser.add_argument("--chain", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-projections", action="store_true", help="run without the DuckDB projector")
    args = parser.parse_args()

    fan = msgspec.convert(
        {"name": "fan", "tasks": [{"name": f"t{i}", "type": "SHELL", "command": "true"} for i in range(args.fanout)]},
        WorkflowDefinition,
    )
    chain_tasks = [{"name": "c0", "type": "SHELL", "command": "true"}]
    chain_tasks += [
        {"name": f"c{i}", "type": "SHELL", "command": "true", "upstream": [f"c{i - 1}"]} for i in range(1, args.chain)
    ]
    chain = msgspec.convert({"name": "chain", "tasks": chain_tasks}, WorkflowDefinition)

    slot_values = [int(v) for v in args.slots.split(",")]
    results = []
    for n, slots in enumerate(slot_values):
        root = Path(tempfile.mkdtemp(prefix="easysched-bench-throughput-"))
        try:
            results.append(_one_run(root, slots, fan, chain if n == 0 else None, args))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    popen_rate, spawn_rate = bare_spawn_rate(500)
    for slots, rates, peak, steps, chain_totals in results:
        label = "no slot limit" if slots == 0 else f"--slots {slots}"
        print(
            f"fan-out ({args.fanout} x `true`, {label}): {statistics.median(rates):8.0f} tasks/s (median of"
            f" {args.rounds}; all: {', '.join(f'{r:.0f}' for r in rates)}); at most {peak} task processes alive"
        )
        if steps:
            print(
                f"chain ({args.chain} steps, {label}): median {statistics.median(steps):.1f} ms per step, p90"
                f" {statistics.quantiles(steps, n=10)[-1]:.1f} ms; whole chain median"
                f" {statistics.median(chain_totals)} ms"
            )
    print(
        f"bare spawn of `sh -c true` from Python: {popen_rate:8.0f}/s subprocess.run,"
        f" {spawn_rate:8.0f}/s posix_spawn"
    )
    print(
        f"ratio fan-out (first run) / bare posix_spawn: {statistics.median(results[0][1]) / spawn_rate:.2f}"
        "  (targets: >= 300 tasks/s unlimited; max concurrency <= slots; <= 10 ms per chain step)"
    )


def _one_run(root: Path, slots: int, fan: WorkflowDefinition, chain: WorkflowDefinition | None,
             args: argparse.Namespace) -> tuple[int, list[float], int, list[int], list[int]]:
    extra = ["--no-projections"] if args.no_projections else []
    with open(root / "run.log", "wb") as log:
        run = start_run(root, log, "--slots", str(slots), *extra)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        # The run's own children, not a walk of every process's environment in /proc: a
        # sampler that spins on that takes a whole core of a 2-core machine from the run it
        # measures. Every task process the worker spawns is a child of the run process.
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _live_children(run.pid))
            done.wait(0.001)

    endings: _Ends | None = None
    try:
        data = DataDir(root)
        client = Client(root)
        client.define(fan)
        if chain is not None:
            client.define(chain)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rates: list[float] = []
        steps: list[int] = []
        chain_totals: list[int] = []
        endings = _Ends(data)
        for _ in range(args.rounds):
            instance = client.start("fan")
            inst = wait_for("fan-out done", lambda i=instance: endings.finished(data, i), timeout=600, every=0.01)
            rates.append(args.fanout / ((inst.ended - inst.started) / 1000))
            if chain is None:
                continue
            instance = client.start("chain")
            inst = wait_for("chain done", lambda i=instance: endings.finished(data, i), timeout=600, every=0.01)
            ends = [inst.started] + [inst.tasks[f"c{i}"].ended for i in range(args.chain)]
            steps += [b - a for a, b in itertools.pairwise(ends)]
            chain_totals.append(inst.ended - inst.started)
        done.set()
        sampler.join()
    finally:
        done.set()
        stop_run(run)
        if endings is not None:
            endings.events.close()
    return slots, rates, peak, steps, chain_totals


class _Ends:
    """Which instances ended, read incrementally from the events log.

    Folding the whole log every poll (as this bench once did) cost about 0.1 s of CPU per
    poll at 1,000 tasks, taken from the run being measured; the state is folded once, at the end.
    """

    def __init__(self, data: DataDir) -> None:
        self.events = data.events()
        self.position = 0
        self.ended: set[str] = set()

    def finished(self, data: DataDir, instance: str) -> WorkflowInstance | None:
        while records := self.events.read(self.position):
            for record in records:
                self.position = record.next
                if record.corrupt is None:
                    self.ended.update(ev.instance for ev in decode_batch(record.payload).events
                                      if isinstance(ev, WorkflowFinished))
        if instance not in self.ended:
            return None
        return load_state(data).instances[instance]


def _live_children(pid: int) -> int:
    """How many children of process `pid` are alive now (zombies, whose work is done, not counted)."""
    alive = 0
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in threads:
        try:
            children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        alive += sum(1 for child in children if pid_alive(int(child)))
    return alive


if __name__ == "__main__":
    main()
