"""1M pending timers: the delay queue's memory and the cost of its operations.

    python bench/timers.py [--timers 1000000]

Fills a DelayQueue with N entries (distinct tasks, random due times), then prints the RSS it
added, twice: with keys naming strings the state already holds (as in the fold: a timer's
instance id and task name are the instance's own objects), then with a fresh string per key
(what this bench measured first: the strings are counted too), each in its own process. Then
the mean cost of set, cancel, earliest and pop_next at that size against the same operations
on a 1,000-entry queue (measured in the same run: O(log n) means a small ratio).
`PYTHONPATH=/path/to/an/older/checkout python bench/timers.py` measures another version.
Target: memory < 200 MB for 1M timers.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import subprocess
import sys
import time

from easysched_es.core.delay_queue import DelayQueue


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


TASKS = ("t0", "t1", "t2", "t3")


def fill(n: int, rng: random.Random, instances: list[str] | None = None) -> DelayQueue:
    """N timers, 4 per instance; `instances`: the ids to use (else a fresh string per key)."""
    q = DelayQueue()
    for i in range(n):
        if instances is None:
            q.set((f"0-{i // 4}", f"t{i % 4}", "RETRY"), rng.randrange(1, 10**9))
        else:
            q.set((instances[i // 4], TASKS[i % 4], "RETRY"), rng.randrange(1, 10**9))
    return q


def measure(n: int, rng: random.Random, shared: bool) -> tuple[DelayQueue, float, float]:
    """A filled queue, the RSS it added (MB) and the seconds the fill took."""
    instances = [f"0-{i}" for i in range((n + 3) // 4)] if shared else None
    gc.collect()
    before = rss_mb()
    t0 = time.perf_counter()
    q = fill(n, rng, instances)
    filled = time.perf_counter() - t0
    gc.collect()
    return q, rss_mb() - before, filled


def costs(q: DelayQueue, n: int, rng: random.Random, ops: int = 20_000) -> dict[str, float]:
    out = {}
    keys = [(f"0-{rng.randrange(n) // 4}", f"t{rng.randrange(4)}", "RETRY") for _ in range(ops)]
    t0 = time.perf_counter()
    for k in keys:
        q.set(k, rng.randrange(1, 10**9))
    out["set (move)"] = (time.perf_counter() - t0) / ops * 1e6
    t0 = time.perf_counter()
    for _ in range(ops):
        q.earliest()
    out["earliest"] = (time.perf_counter() - t0) / ops * 1e6
    t0 = time.perf_counter()
    for k in keys[: ops // 2]:
        q.cancel(k)
    out["cancel"] = (time.perf_counter() - t0) / (ops // 2) * 1e6
    t0 = time.perf_counter()
    for _ in range(ops // 2):
        q.pop_next(10**9, q.seq)
    out["pop_next"] = (time.perf_counter() - t0) / (ops // 2) * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timers", type=int, default=1_000_000)
    parser.add_argument("--keys", choices=["shared", "fresh"], help="one measurement in this process (default: "
                        "both, each in its own process, so that one's freed memory does not hide the other's)")
    args = parser.parse_args()
    if args.keys is None:
        for keys in ("shared", "fresh"):
            subprocess.run([sys.executable, __file__, "--timers", str(args.timers), "--keys", keys], check=True)
        return
    rng = random.Random(7)
    small = costs(fill(1_000, rng), 1_000, rng)
    q, added, filled = measure(args.timers, rng, args.keys == "shared")
    count = len(q)
    what = "keys share the state's strings" if args.keys == "shared" else "a fresh string per key, counted"
    print(f"{count:,} pending timers ({what}): {added:.0f} MB RSS added ({added * 2**20 / count:.0f} B per "
          f"timer), filled in {filled:.1f} s (target < 200 MB)")
    big = costs(q, args.timers, rng)
    for op, us in big.items():
        print(f"  {op:<11} {us:6.2f} us at {args.timers:,}   {small[op]:6.2f} us at 1,000   ratio {us / small[op]:.1f}")


if __name__ == "__main__":
    main()
