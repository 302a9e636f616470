"""Replay speed: fold N commands from the embedded log, beside msgspec's bare decode of the same records.

    python bench/replay.py [--commands 1000000] [--debugging-only]

The workload is what a busy scheduler logs: workflows of three chained SHELL tasks, each
attempt reported started and finished by a worker, worker heartbeats, and clock ticks.
Prints commands/s for (a) reading + decoding only and (b) reading + decoding + folding,
and the ratio b/a (target >= 0.5). Then the debugging figures of `bench/replay_debug.py`
(replay to random offsets and times from the sparse snapshot index, export, trace) beside the
full fold of the same log.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import msgspec
import replay_debug

from easysched_es.core import commands as c
from easysched_es.core.codec import decode_command, encode
from easysched_es.core.definitions import WorkflowDefinition
from easysched_es.core.events import DispatchTask
from easysched_es.core.state import State
from easysched_es.core.step import step, step_record
from easysched_es.log.embedded import EmbeddedStream
from easysched_es.runtime.fold import fold_stream

CHAIN = msgspec.convert(
    {
        "name": "chain",
        "tasks": [
            {"name": "extract", "type": "SHELL", "command": "true"},
            {"name": "transform", "type": "SHELL", "command": "true", "upstream": ["extract"]},
            {"name": "load", "type": "SHELL", "command": "true", "upstream": ["transform"]},
        ],
    },
    WorkflowDefinition,
)


def write_log(stream: EmbeddedStream, n: int) -> None:
    """Generate a realistic log by driving the real fold (so every report matches a dispatch)."""
    state = State()
    pending: list[bytes] = []
    t = 1_795_000_000_000
    offset = 0
    running: list[DispatchTask] = []

    def emit(cmd: c.Command) -> None:
        nonlocal offset
        payload = encode(cmd)
        # Offsets in the embedded log are byte positions: mirror them so `step` sees the same.
        _, events = step(state, cmd, offset)
        offset += 8 + len(payload)
        pending.append(payload)
        running.extend(ev for ev in events if isinstance(ev, DispatchTask))

    emit(c.DefineWorkflow(at=t, definition=CHAIN))
    written = 1
    while written < n:
        t += 3
        if not running:
            emit(c.StartWorkflow(at=t, workflow="chain", params={"run": str(written)}))
        else:
            d = running.pop(0)
            emit(
                c.TaskStarted(
                    at=t,
                    instance=d.instance,
                    task=d.task,
                    attempt=d.attempt,
                    pid=10_000 + written % 30_000,
                    worker="worker-1",
                )
            )
            emit(
                c.TaskFinished(
                    at=t + 1, instance=d.instance, task=d.task, attempt=d.attempt, exit_code=0, worker="worker-1"
                )
            )
            written += 1
        if written % 10 == 0:
            emit(c.Heartbeat(at=t, worker="worker-1"))
        if written % 25 == 0:
            emit(c.CheckDue(at=t, now=t))
        written += 1
        if len(pending) >= 10_000:
            stream.append(pending)
            pending.clear()
    stream.append(pending)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N timed passes")
    parser.add_argument("--every", type=int, default=40_000, help="commands between snapshots of the index")
    parser.add_argument("--debugging-only", action="store_true", help="skip the fold-speed passes")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="easysched-bench-replay-"))
    try:
        stream = EmbeddedStream(root / "commands", fsync=False)
        t0 = time.perf_counter()
        write_log(stream, args.commands)
        records = sum(1 for _ in stream.iter_payloads(0))
        size = stream.end()
        print(f"log: {records:,} commands, {size / 1e6:.1f} MB, generated in {time.perf_counter() - t0:.1f}s")

        def bare() -> None:
            for _, payload in stream.iter_payloads(0):
                decode_command(payload)

        def fold_fast() -> None:
            state = State()
            for offset, payload in stream.iter_payloads(0):
                step_record(state, payload, offset)

        def fold_runtime() -> None:
            fold_stream(stream, State())

        if args.debugging_only:
            return replay_debug.run(root, args.every)
        results = {}
        for name, fn in (
            ("read+decode (msgspec bare)", bare),
            ("read+decode+fold (iter_payloads)", fold_fast),
            ("read+decode+fold (fold_stream, as the master)", fold_runtime),
        ):
            best = min(_timed(fn) for _ in range(args.repeat))
            results[name] = records / best
            print(f"{name:<48} {records / best:>12,.0f} commands/s  ({best:.2f}s)")
        base = results["read+decode (msgspec bare)"]
        for name in list(results)[1:]:
            print(f"ratio {name} / bare decode: {results[name] / base:.2f}  (target >= 0.5)")
        replay_debug.run(root, args.every)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
