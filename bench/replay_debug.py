"""Replay-based debugging on a long log: time travel and export, beside the full fold of the same log.

    python bench/replay.py --debugging-only [--commands 1000000] [--every 40000]

Builds the sparse snapshot index once (`easysched snapshots --build`, a snapshot every
`--every` commands, thinned by the index's rule), then measures with the code the CLI runs:

- `replay --until` to 20 random offsets (target p50 and p99 < 1 s);
- `replay --at` to 5 random times;
- `export` of one instance (target < 2 s), and `trace` of it;
- the full fold of the log from offset 0 (what a replay cost before the index), as the baseline.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

from easysched_es.core.state import State
from easysched_es.debug.export import export_instance
from easysched_es.debug.replay import build_index, replay
from easysched_es.debug.trace import trace
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.fold import fold_stream
from easysched_es.runtime.gc_pause import gc_paused


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(root: Path, every: int, seed: int = 13) -> None:
    """Print the debugging figures for the log in the data directory `root`."""
    data = DataDir(root)
    rng = random.Random(seed)
    with data.commands() as stream:
        offsets = [r.offset for r in stream.iter_records(0)]
        t0 = time.perf_counter()
        with gc_paused():
            full = State()
            fold_stream(stream, full)
        full_s = time.perf_counter() - t0
    print(f"full fold from offset 0 (the baseline, gc paused): {full_s:.2f}s for {len(offsets):,} commands, "
          f"{len(full.instances):,} instances")

    t0 = time.perf_counter()
    written = build_index(data, every)
    metas = data.snapshot_store().metas()
    size = sum(m.bytes for m in metas)
    print(f"snapshot index: wrote {len(written)} (one per {every:,} commands) in {time.perf_counter() - t0:.1f}s; "
          f"the index keeps {len(metas)} ({size / 1e6:.0f} MB)")

    points = rng.sample(offsets, 20)
    times = []
    for until in points:
        t0 = time.perf_counter()
        replay(data, until=until)
        times.append(time.perf_counter() - t0)
    p50, p99 = statistics.median(times), _pct(times, 0.99)
    print(f"replay --until, 20 random offsets: p50 {p50:.2f}s  p99 {p99:.2f}s  max {max(times):.2f}s  "
          f"(target < 1 s; full fold {full_s:.2f}s: p50 is {full_s / p50:.0f}x faster)")

    ats = []
    for _ in range(5):
        at = rng.randrange(full.now - 3_000_000, full.now)
        t0 = time.perf_counter()
        replay(data, at=at)
        ats.append(time.perf_counter() - t0)
    print(f"replay --at, 5 random times: p50 {statistics.median(ats):.2f}s  max {max(ats):.2f}s")

    instance = sorted(full.instances, key=lambda i: int(i.split("-")[1]))[len(full.instances) // 2]
    t0 = time.perf_counter()
    export = export_instance(data, instance)
    export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    entries = trace(data, instance)
    trace_s = time.perf_counter() - t0
    print(f"export of {instance} (mid-log): {export_s:.2f}s, {len(export.commands)} commands "
          f"(target < 2 s; full fold {full_s:.2f}s)")
    print(f"trace of {instance}: {trace_s:.2f}s, {len(entries)} entries")
