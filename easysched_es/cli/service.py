"""`easysched run` (the embedded service) and `easysched demo`."""

from __future__ import annotations

import argparse
import sys

from easysched_es.cli.common import Registrar, UsageError, data
from easysched_es.cli.ui import add_ui_arguments, ui_settings


def cmd_run(args: argparse.Namespace) -> int:
    from easysched_es.runtime.embedded.service import default_slots, run_embedded

    slots = default_slots() if args.slots is None else args.slots
    if slots < 0:
        raise UsageError(f"--slots must be >= 0 (0 = no limit), not {slots}")
    how = "no limit" if slots == 0 else f"at most {slots} task processes at a time"
    print(f"easysched run: {how} (--slots; default 4 per CPU, at least 8)", file=sys.stderr, flush=True)
    return run_embedded(data(args), kill_grace=args.kill_grace, projections=not args.no_projections, slots=slots,
                        ui=ui_settings(args))


def cmd_demo(args: argparse.Namespace) -> int:
    from easysched_es.demo import run_demo

    return run_demo(keep=args.keep)


def register(reg: Registrar) -> None:
    """Add run and demo."""
    p = reg.add("run", cmd_run, "run master, worker, ticker and projector on the embedded log (one per data dir)")
    p.add_argument("--kill-grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL (default 5)")
    p.add_argument("--no-projections", action="store_true",
                   help="do not run the DuckDB projector, query API and dashboard")
    p.add_argument("--slots", type=int, default=None,
                   help="task processes run at a time on this machine (default 4 per CPU, at least 8; 0 = no limit)")
    add_ui_arguments(p)
    # The demo runs on a fresh temporary directory and the embedded log only (it starts its own
    # `easysched run`): --data-dir and --kafka would do nothing, so they are not offered.
    p = reg.add("demo", cmd_demo, "run the DolphinScheduler #16895 scenario and a SHELL kill end to end "
                "(on a fresh temporary data directory)", log_options=False)
    p.add_argument("--keep", action="store_true", help="keep the demo's data directory")
