"""CLI start-up: `easysched --help` and `easysched status` on a small data directory, beside bare Python.

    python bench/cli.py [--runs 20]

Each figure is the median (and the minimum) wall time of `--runs` fresh processes, measured in
the same run as `python -c pass` (the floor every call pays: interpreter and site start-up).
CPU time (user + system) is printed beside wall time: on a shared machine it is the steadier
figure, and it is what a polling loop costs. The console script is what a user types;
`python -m easysched_es` is shown beside it. Target:
`--help` and `status` under 100 ms on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOW = """name: bench
tasks:
  - {name: a, type: SHELL, command: 'true'}
  - {name: b, type: SHELL, command: 'true', upstream: [a]}
"""


def timed(argv: list[str], runs: int, env: dict[str, str]) -> tuple[float, float, float]:
    """(median wall, min wall, median CPU) seconds of `runs` runs of `argv`, each a fresh process.

    CPU time (user + system of the child) is what a polling loop costs the machine, and it
    varies much less than wall time when other work shares the cores.
    """
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), min(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="processes per figure (default 20)")
    args = parser.parse_args()
    script = shutil.which("easysched", path=str(Path(sys.executable).parent)) or "easysched"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EASYSCHED_")}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        flow = Path(tmp) / "bench.yaml"
        flow.write_text(FLOW)
        run = [sys.executable, "-m", "easysched_es", "--data-dir", str(data)]
        subprocess.run([*run, "define", str(flow)], check=True, stdout=subprocess.DEVNULL, env=env)
        for _ in range(10):  # a small data directory: ten instances (no master runs: they wait in the log)
            subprocess.run([*run, "start", "bench"], check=True, stdout=subprocess.DEVNULL, env=env)
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("easysched --help", [script, "--help"]),
            ("easysched status (10 instances)", [script, "--data-dir", str(data), "status"]),
            ("easysched status --json", [script, "--data-dir", str(data), "status", "--json"]),
            ("python -m easysched_es --help", [sys.executable, "-m", "easysched_es", "--help"]),
        ]
        timed(cases[0][1], 3, env)  # warm the page cache
        results = [(name, *timed(argv, args.runs, env)) for name, argv in cases]
    cpu_floor = results[0][3]
    print(f"{'command':<34} {'wall median':>11} {'wall min':>9} {'CPU median':>11} {'CPU over bare python':>21}")
    for name, median, low, cpu in results:
        print(f"{name:<34} {median * 1000:>8.1f} ms {low * 1000:>6.1f} ms {cpu * 1000:>8.1f} ms "
              f"{(cpu - cpu_floor) * 1000:>+15.1f} ms ({cpu / cpu_floor:.1f}x)")
    print(f"(median of {args.runs} fresh processes each; load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
