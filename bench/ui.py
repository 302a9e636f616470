"""Dashboard latency: pages and API with 10,000 instances in the projection, time travel in a 1M-command log.

    python bench/ui.py [--commands 1000000] [--instances 10000] [--requests 200] [--jumps 20]

1. Writes a log by driving the real fold: `--instances` instances of a 3-task chain and one
   instance of a 200-task workflow whose tasks run spread over the whole log, with worker
   heartbeats in between, up to `--commands` commands (commands and events streams).
2. Builds the sparse snapshot index (`debug.replay.build_index`, what `easysched snapshots
   --build` does), projects the log into DuckDB, and starts the service with the dashboard.
3. Over one keep-alive connection, times `--requests` GETs of each page and API endpoint, and
   `--jumps` time-travel jumps of the 200-task instance to the middle of the log (alternating
   with a jump to its end, so that every middle jump starts from a snapshot, not from the
   state left by the previous one). Baselines measured in the same run: GET /health (the
   server's floor) and a time-travel jump folded from offset 0 without snapshots.

Prints p50/p99 in milliseconds and ratios; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import http.client
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from easysched_es.core import commands as c
from easysched_es.core.codec import encode
from easysched_es.core.definitions import ShellTask, WorkflowDefinition
from easysched_es.core.events import DispatchTask, EventBatch, WorkflowStarted
from easysched_es.core.state import State
from easysched_es.core.step import step
from easysched_es.debug.replay import build_index
from easysched_es.log.embedded import EmbeddedStream
from easysched_es.runtime.embedded.client import Client
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.web.serve import UiSettings, dashboard_service
from easysched_es.web.timetravel import TimeTravel
from projections.model import tag_of

T0 = 1_795_000_000_000
CHAIN = WorkflowDefinition(name="chain", tasks=[
    ShellTask(name="extract", command="true"),
    ShellTask(name="transform", command="true", upstream=["extract"]),
    ShellTask(name="load", command="true", upstream=["transform"]),
])


def wide(tasks: int = 200, width: int = 10, seed: int = 3) -> WorkflowDefinition:
    """`tasks` tasks in layers of `width`, each after two tasks of the layer before."""
    rng = random.Random(seed)
    defs = []
    for i in range(tasks):
        layer = i // width
        before = [f"t{j:03d}" for j in range((layer - 1) * width, layer * width)] if layer else []
        upstream = sorted(rng.sample(before, 2)) if before else []
        defs.append(ShellTask(name=f"t{i:03d}", command="true", upstream=upstream))
    return WorkflowDefinition(name="wide", tasks=defs)


def write_log(root: Path, commands: int, instances: int) -> str:
    """Write the workload; return the id of the 200-task instance."""
    state = State()
    offset = 0
    pending: list[bytes] = []
    batches: list[bytes] = []
    chain_queue: deque[DispatchTask] = deque()
    wide_queue: deque[DispatchTask] = deque()
    wide_id = ""
    t = T0
    with EmbeddedStream(root / "commands", fsync=False) as cs, EmbeddedStream(root / "events", fsync=False) as es:

        def emit(cmd: c.Command) -> None:
            nonlocal offset, wide_id
            payload = encode(cmd)
            _, events = step(state, cmd, offset)
            batches.append(encode(EventBatch(offset=offset, at=cmd.at, command=tag_of(type(cmd)), events=events)))
            offset += 8 + len(payload)  # the embedded log's offsets are byte positions
            pending.append(payload)
            for ev in events:
                if isinstance(ev, DispatchTask):
                    (wide_queue if ev.instance == wide_id else chain_queue).append(ev)
                elif isinstance(ev, WorkflowStarted) and ev.workflow == "wide":
                    wide_id = ev.instance
            if len(pending) >= 20_000:
                if cs.append(pending)[-1] != offset - 8 - len(payload):
                    raise RuntimeError("the log assigned other offsets than predicted")
                es.append(batches)
                pending.clear()
                batches.clear()

        def run_one(queue: deque[DispatchTask]) -> None:
            d = queue.popleft()
            emit(c.TaskStarted(at=t, instance=d.instance, task=d.task, attempt=d.attempt, pid=4242, worker="w1"))
            emit(c.TaskFinished(at=t, instance=d.instance, task=d.task, attempt=d.attempt, exit_code=0, worker="w1"))

        emit(c.DefineWorkflow(at=t, definition=CHAIN))
        emit(c.DefineWorkflow(at=t, definition=wide()))
        emit(c.StartWorkflow(at=t, workflow="wide"))
        started = 0
        wide_every = max(commands // 450, 1)  # the 200 tasks (400 reports) spread over the whole log
        spread = max(commands // max(instances, 1) // 2, 1)
        n = 0
        while n < commands:
            t += 5
            n += 1
            if n % wide_every == 0 and wide_queue:
                run_one(wide_queue)
            elif started < instances and n % spread == 0:
                emit(c.StartWorkflow(at=t, workflow="chain", params={"n": str(started)}))
                started += 1
            elif chain_queue and n % 3 == 0:
                run_one(chain_queue)
            else:
                emit(c.Heartbeat(at=t, worker="w1"))
        while started < instances:
            emit(c.StartWorkflow(at=t, workflow="chain", params={"n": str(started)}))
            started += 1
        cs.append(pending)
        es.append(batches)
    return wide_id


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def timed_gets(port: int, path: str, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    out = []
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            out.append((time.perf_counter() - t0) * 1000)
            if response.status != 200:
                raise RuntimeError(f"GET {path}: {response.status}")
    finally:
        conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=1_000_000, help="commands in the log (default 1,000,000)")
    parser.add_argument("--instances", type=int, default=10_000, help="chain instances (default 10,000)")
    parser.add_argument("--requests", type=int, default=200, help="requests per endpoint (default 200)")
    parser.add_argument("--jumps", type=int, default=20, help="time-travel jumps to the middle (default 20)")
    parser.add_argument("--snapshot-every", type=int, default=20_000, help="commands between built snapshots")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    try:
        t0 = time.perf_counter()
        wide_id = write_log(root, args.commands, args.instances)
        data = DataDir(root)
        print(f"log: {args.commands:,} commands, {args.instances:,} chain instances + one 200-task instance "
              f"({wide_id}), written in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        snapshots = build_index(data, args.snapshot_every)
        print(f"snapshot index: {len(data.snapshot_store().metas())} kept of {len(snapshots)} written "
              f"in {time.perf_counter() - t0:.1f} s")
        service = dashboard_service(root, data, lambda: Client(root), UiSettings(port=0), logs_dir=data.logs)
        t0 = time.perf_counter()
        service.start()
        try:
            while not service.health()["caught_up"]:
                time.sleep(0.2)
            print(f"projection caught up in {time.perf_counter() - t0:.1f} s")
            measure(service.port, wide_id, data, args)
        finally:
            service.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(port: int, wide_id: str, data: DataDir, args: argparse.Namespace) -> None:
    endpoints = [
        ("GET /health (baseline)", "/health"),
        ("overview page", "/"),
        ("overview JSON", "/api/overview"),
        ("instance page, 200 tasks", f"/instance/{wide_id}"),
        ("instance JSON, 200 tasks", f"/api/instance/{wide_id}"),
        ("workflows page", "/workflows"),
        ("GET /instances?limit=100", "/instances?limit=100"),
        ("/metrics", "/metrics"),
    ]
    print(f"\n{'request':<28} {'p50 ms':>8} {'p99 ms':>8} {'p99 / health p99':>17}")
    base = None
    for name, path in endpoints:
        timed_gets(port, path, 3)  # warm-up
        p50, p99 = percentiles(timed_gets(port, path, args.requests))
        base = base or p99
        print(f"{name:<28} {p50:8.1f} {p99:8.1f} {p99 / base:17.1f}")
    with data.commands() as stream:
        end = stream.end(0)
    offsets = [int(x) for x in _offsets(port, wide_id)]
    middle = min(offsets, key=lambda o: abs(o - end // 2))
    last = offsets[-1]
    jumps = []
    for _ in range(args.jumps):
        timed_gets(port, f"/api/instance/{wide_id}/at/{last}", 1)
        jumps.append(timed_gets(port, f"/api/instance/{wide_id}/at/{middle}", 1)[0])
    p50, p99 = percentiles(jumps)
    # Baseline: the same jump folded from offset 0 (no snapshot index), in-process.
    scratch = TimeTravel(_NoSnapshots(data))
    t0 = time.perf_counter()
    scratch.at(wide_id, middle)
    cold = (time.perf_counter() - t0) * 1000
    print(f"{'time travel to the middle':<28} {p50:8.1f} {p99:8.1f}   (offset {middle:,} of {end:,} bytes)")
    print(f"{'  same, folded from 0':<28} {cold:8.1f} {'':>8}   (no snapshots: {cold / p50:.0f}x the indexed p50)")


def _offsets(port: int, wide_id: str) -> list[int]:
    import json

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", f"/api/instance/{wide_id}")
    offsets: list[int] = json.loads(conn.getresponse().read())["offsets"]
    conn.close()
    return offsets


class _NoSnapshots:
    """The data directory without its snapshots: every replay folds from offset 0."""

    partitions = 1

    def __init__(self, data: DataDir) -> None:
        self._data = data

    def commands(self) -> EmbeddedStream:
        return self._data.commands()

    def events(self) -> EmbeddedStream:
        return self._data.events()

    def load_snapshot(self, partition: int, until: int | None = None) -> State | None:
        return None


if __name__ == "__main__":
    main()
