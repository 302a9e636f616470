"""Kill latency through a real `easysched run`: from the kill-task command to the process gone.

    python bench/kill.py [--kills 20]

Each round starts a workflow whose SHELL task runs `sleep 300`, waits until the process
runs, then times `Client.kill_task` (append, durable, verdict) until the pid no longer
exists (polled every 0.5 ms). Prints p50/p99 (target p99 < 0.2 s).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import msgspec

from easysched_es.core.definitions import WorkflowDefinition
from easysched_es.runtime.embedded.client import Client
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.embedded.local_run import pid_alive, start_run, stop_run, wait_for
from easysched_es.runtime.fold import load_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--no-projections", action="store_true")
    args = parser.parse_args()
    sleeper = msgspec.convert(
        {"name": "sleeper", "tasks": [{"name": "nap", "type": "SHELL", "command": "sleep 300"}]}, WorkflowDefinition
    )
    root = Path(tempfile.mkdtemp(prefix="easysched-bench-kill-"))
    try:
        with open(root / "run.log", "wb") as log:
            run = start_run(root, log, *(["--no-projections"] if args.no_projections else []))
        try:
            data = DataDir(root)
            client = Client(root)
            client.define(sleeper)
            latencies = []
            for _ in range(args.kills):
                instance = client.start("sleeper")
                pid = wait_for("nap running", lambda i=instance: load_state(data).instances[i].tasks["nap"].pid)
                t0 = time.perf_counter()
                client.kill_task(instance, "nap")
                wait_for("process gone", lambda p=pid: not pid_alive(p), timeout=10, every=0.0005)
                latencies.append(time.perf_counter() - t0)
        finally:
            stop_run(run)
        ms = sorted(x * 1000 for x in latencies)
        p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
        print(
            f"{len(ms)} kills: p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms"
            "  (target p99 < 200 ms)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
