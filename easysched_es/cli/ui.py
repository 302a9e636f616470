"""The dashboard's options of `easysched run`, and `easysched ui` (the dashboard beside a projector).

`easysched ui --kafka HOST:PORT` projects the Kafka topics into a DuckDB file under
`--data-dir` and serves the query API, the dashboard and /metrics from that one process.
Without Kafka it does the same for an embedded data directory that no `easysched run` serves
(a copy, a log taken from another machine): the master is not needed to look at a log.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from easysched_es.cli.common import CliError, Registrar, UsageError, client, kafka_bootstrap, kafka_settings, source

if TYPE_CHECKING:
    from easysched_es.web.serve import UiSettings

# The dashboard (Starlette, DuckDB) is imported by the commands that serve it, not when the
# parser is built; tests/cli/test_help.py checks this default equals web.serve.DEFAULT_UI_PORT.
DEFAULT_UI_PORT = 8642


def add_ui_arguments(p: argparse.ArgumentParser) -> None:
    """--ui-host, --ui-port, --no-ui, --read-only."""
    p.add_argument("--ui-host", default="127.0.0.1", metavar="HOST",
                   help="address the dashboard and query API listen on (default 127.0.0.1; requests must still be "
                   "addressed to a loopback name or to this address)")
    p.add_argument("--ui-port", type=int, default=None, metavar="PORT",
                   help=f"dashboard port (default {DEFAULT_UI_PORT}, or a free port if that one is busy; "
                   "an explicit port that is busy is an error)")
    p.add_argument("--no-ui", action="store_true",
                   help="no dashboard pages: serve only the query API and /metrics, on a free port")
    p.add_argument("--read-only", action="store_true", help="a dashboard without actions (they are hidden and refused)")


def ui_settings(args: argparse.Namespace) -> UiSettings:
    """The dashboard settings given on the command line."""
    from easysched_es.web.serve import UiSettings

    if args.ui_port is not None and not 0 <= args.ui_port <= 65535:
        raise UsageError(f"--ui-port must be 0..65535, not {args.ui_port}")
    return UiSettings(host=args.ui_host, port=args.ui_port, enabled=not args.no_ui, read_only=args.read_only)


def cmd_ui(args: argparse.Namespace) -> int:
    from easysched_es.web.serve import announce, dashboard_service
    settings = ui_settings(args)
    bootstrap = kafka_bootstrap(args)
    streams: list[Any] = []
    extra: dict[str, Any] = {}
    if bootstrap:
        from easysched_es.log.kafka_reader import projection_streams

        # One consumer per topic, every broker operation bounded by --kafka-timeout (log/kafka_reader.py).
        streams = list(projection_streams(kafka_settings(args, bootstrap)))
        extra = {"events": streams[0], "commands": streams[1]}
    else:
        root = Path(args.data_dir)
        if not (root / "commands").is_dir():
            raise CliError(f"no embedded log at {root} (pass --data-dir, or --kafka HOST:PORT)")
        extra = {"logs_dir": root / "logs", "log_dirs": {"commands": root / "commands", "events": root / "events"}}
    Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    service = dashboard_service(Path(args.data_dir), source(args, long_lived=True), lambda: client(args), settings,
                                **extra)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    service.start()
    print(announce(service, settings), flush=True)
    try:
        stop.wait()
    finally:
        service.stop()
        for stream in streams:
            stream.close()
    return 0


def register(reg: Registrar) -> None:
    """Add `ui`."""
    p = reg.add("ui", cmd_ui, "serve the dashboard, query API and /metrics beside a projector (Kafka: --kafka)")
    add_ui_arguments(p)
