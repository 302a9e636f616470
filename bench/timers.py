"""1M pending timers: the delay queue's memory and the cost of its operations.

    python bench/timers.py [--timers 1000000]

Fills a DelayQueue with N entries (distinct tasks, random due times), then prints the RSS it
added, and the mean cost of set, cancel, earliest and pop_next at that size against the same
operations on a 1,000-entry queue (measured in the same run: O(log n) means a small ratio).
Target: memory < 200 MB for 1M timers.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import time

from easysched_es.core.delay_queue import DelayQueue


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def fill(n: int, rng: random.Random) -> DelayQueue:
    q = DelayQueue()
    for i in range(n):
        q.set((f"0-{i // 4}", f"t{i % 4}", "RETRY"), rng.randrange(1, 10**9))
    return q


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
    args = parser.parse_args()
    rng = random.Random(7)
    small = costs(fill(1_000, rng), 1_000, rng)
    gc.collect()
    before = rss_mb()
    t0 = time.perf_counter()
    q = fill(args.timers, rng)
    filled = time.perf_counter() - t0
    gc.collect()
    added = rss_mb() - before
    count = len(q)
    big = costs(q, args.timers, rng)
    print(f"{count:,} pending timers: {added:.0f} MB RSS added ({added * 2**20 / count:.0f} B per timer), "
          f"filled in {filled:.1f} s (target < 200 MB)")
    for op, us in big.items():
        print(f"  {op:<11} {us:6.2f} us at {args.timers:,}   {small[op]:6.2f} us at 1,000   ratio {us / small[op]:.1f}")


if __name__ == "__main__":
    main()
