"""`easysched run` (the embedded service) and `easysched demo`."""

from __future__ import annotations

import argparse

from easysched_es.cli.common import Registrar, data


def cmd_run(args: argparse.Namespace) -> int:
    from easysched_es.runtime.embedded.service import run_embedded

    return run_embedded(data(args), kill_grace=args.kill_grace, projections=not args.no_projections)


def cmd_demo(args: argparse.Namespace) -> int:
    from easysched_es.demo import run_demo

    return run_demo(keep=args.keep)


def register(reg: Registrar) -> None:
    """Add run and demo."""
    p = reg.add("run", cmd_run, "run master, worker, ticker and projector on the embedded log (one per data dir)")
    p.add_argument("--kill-grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL (default 5)")
    p.add_argument("--no-projections", action="store_true", help="do not run the DuckDB projector and query API")
    p = reg.add("demo", cmd_demo, "run the DolphinScheduler #16895 scenario and a SHELL kill end to end")
    p.add_argument("--keep", action="store_true", help="keep the demo's data directory")
