"""A 10,000-task definition: define time in the fold, and what a CLI call costs afterwards.

    python bench/big_definition.py [--tasks 10000]

Prints the fold's time to validate and compile a chain listed downstream first (the shape
that made cycle detection recurse) and a long cycle, then the wall time of `easysched
status` on a data directory holding the definition: with the definition only in the log's
tail, after the master snapshotted it, and on an empty data directory (the baseline).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from easysched_es.core.codec import encode
from easysched_es.core.commands import DefineWorkflow
from easysched_es.core.definitions import WorkflowDefinition
from easysched_es.core.state import State
from easysched_es.core.step import step_record
from easysched_es.runtime.embedded.client import Client
from easysched_es.runtime.embedded.master import EmbeddedMaster


def chain(n: int, cycle: bool = False) -> WorkflowDefinition:
    tasks = [{"name": f"t{i}", "type": "SHELL", "command": "true",
              "upstream": [f"t{(i - 1) % n}"] if i or cycle else []} for i in range(n)]
    return msgspec.convert({"name": "cycle" if cycle else "chain", "tasks": tasks[::-1]}, WorkflowDefinition)


def cli_seconds(root: Path, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "easysched_es", "--data-dir", str(root), "status"],
                       check=True, capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    n = parser.parse_args().tasks
    for definition in (chain(n), chain(n, cycle=True)):
        payload = encode(DefineWorkflow(at=1, definition=definition))
        t0 = time.perf_counter()
        _, events, _ = step_record(State(), payload, 0)
        print(f"define {definition.name} of {n} tasks in the fold: {time.perf_counter() - t0:.3f} s "
              f"({type(events[0]).__name__})")
    with tempfile.TemporaryDirectory() as empty, tempfile.TemporaryDirectory() as tmp:
        base = cli_seconds(Path(empty))
        client = Client(tmp)
        client.define(chain(n))
        tail = cli_seconds(Path(tmp))
        master = EmbeddedMaster(client.data, lambda effect: None)
        master.recover()
        master.poll()  # a definition this big is snapshotted at once
        master.close()
        snap = cli_seconds(Path(tmp))
    print(f"easysched status, empty data dir (baseline):     {base:.3f} s")
    print(f"easysched status, definition in the log's tail:  {tail:.3f} s ({tail / base:.1f}x)")
    print(f"easysched status, definition in the snapshot:    {snap:.3f} s ({snap / base:.1f}x)")


if __name__ == "__main__":
    main()
