"""The Kafka subcommands of `easysched`: `master`, `worker`, `kafka-local start|stop|status`.

`--kafka BOOTSTRAP` (or `$EASYSCHED_KAFKA`) switches the commands that change state (define,
start, stop, pause, resume, kill-task) from the embedded log to Kafka, and the queries (status,
timers, trace, replay, verify, wait) fold the commands topic, each partition its own State
(`runtime.kafka.master.KafkaLog`); `replay --until OFFSET --partition P` replays one partition.
Topic prefix and partition count: `$EASYSCHED_KAFKA_PREFIX` (default
"easysched"), `$EASYSCHED_KAFKA_PARTITIONS` (default 3, used when the topics are created).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from easysched_es.cli.common import CliError, Registrar, UsageError, kafka_bootstrap

if TYPE_CHECKING:
    import threading

# logging, signal and threading are imported by the handlers: building the parser stays cheap.

DEFAULT_LOCAL_DIR = Path.home() / ".cache" / "easysched" / "kafka-local"


def _settings(args: argparse.Namespace, *, bounded: bool = False) -> Any:
    """The service's KafkaSettings; `bounded`: every broker operation within `--kafka-timeout` (the projector)."""
    from easysched_es.log.kafka import KafkaSettings
    from easysched_es.log.kafka_logs import quiet_driver_logs

    # A service: kafka-python's warnings are worth seeing, at a bounded rate.
    quiet_driver_logs(long_running=True, verbose=getattr(args, "verbose", False))
    bootstrap = kafka_bootstrap(args)
    if not bootstrap:
        raise UsageError("this command needs Kafka: pass --kafka HOST:PORT or set EASYSCHED_KAFKA "
                         "(easysched kafka-local start gives you a local broker)")
    timeout = getattr(args, "kafka_timeout", None) if bounded else None
    settings = KafkaSettings.from_env(bootstrap, timeout=timeout)
    from easysched_es.log.kafka_auth import auth_problem

    # A service would retry a SASL mismatch for a minute in silence: one handshake says it at once.
    problem = auth_problem(settings.bootstrap, settings.client)
    if problem is not None:
        raise CliError(problem, kind="log")
    return settings


def _stop_on_signals() -> threading.Event:
    import signal
    import threading

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def cmd_master(args: argparse.Namespace) -> int:
    from easysched_es.runtime.kafka.master import KafkaMaster

    if args.retention_every < 0:
        raise UsageError(f"--retention-every must be >= 0 seconds (0 = no retention pass), not {args.retention_every}")

    def report(what: str, data: dict[str, Any]) -> None:
        if args.events_to_stdout:
            print(json.dumps({"event": what, **data}), flush=True)

    master = KafkaMaster(_settings(args), name=args.name, session_timeout_ms=round(args.session_timeout * 1000),
                         snapshot_every=args.snapshot_every, retention_every_ms=round(args.retention_every * 1000),
                         on_event=report)
    stop = _stop_on_signals()
    print(json.dumps({"event": "master_started", "pid": os.getpid(), "master": master.name,
                      "retention_every_s": args.retention_every or "never"}), flush=True)
    master.run(stop)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from easysched_es.runtime.kafka.worker import KafkaWorker

    if args.slots < 0:
        raise UsageError(f"--slots must be >= 0 (0 = no limit), not {args.slots}")
    worker = KafkaWorker(_settings(args), args.work_dir, group=args.group, name=args.name,
                         kill_grace=args.kill_grace, heartbeat_timeout=args.heartbeat_timeout,
                         session_timeout_ms=round(args.session_timeout * 1000), slots=args.slots)
    stop = _stop_on_signals()
    print(json.dumps({"event": "worker_started", "pid": os.getpid(), "worker": worker.name, "group": args.group,
                      "slots": args.slots or "no limit"}), flush=True)
    worker.run(stop)
    return 0


def cmd_projector(args: argparse.Namespace) -> int:
    from easysched_es.log.kafka_reader import projection_streams
    from projections.service import ProjectionService

    # Bounded by --kafka-timeout, at start and in the projector thread (one consumer per topic).
    settings = _settings(args, bounded=True)
    Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    events, commands = projection_streams(settings)
    service = ProjectionService(args.data_dir, port=args.port, host=args.host, events=events, commands=commands)
    stop = _stop_on_signals()
    service.start()
    print(json.dumps({"event": "projector_started", "pid": os.getpid(), "port": service.port,
                      "database": str(Path(args.data_dir) / "projections.duckdb")}), flush=True)
    try:
        stop.wait()
    finally:
        service.stop()
        events.close()
        commands.close()
    return 0


def cmd_kafka_local(args: argparse.Namespace) -> int:
    from easysched_es.runtime.kafka import local_broker as kafka_local

    directory = Path(args.dir).absolute()
    sasl = _sasl_user(args)
    if args.action == "start":
        if args.fresh:
            _make_fresh(kafka_local, directory)
        earlier = earlier_topics(directory / kafka_local.LOG_DIRS)
        try:
            info = kafka_local.start_detached(directory, port=args.port, sasl=sasl)
        except kafka_local.KafkaLocalError as exc:
            raise CliError(str(exc), kind="kafka_local") from None
        info["earlier_topics"] = sorted(earlier)
    elif args.action == "stop":
        stopped = kafka_local.stop_detached(directory)
        info = {"stopped": stopped, "data_dir": str(directory)}
    else:
        info = kafka_local.status(directory) or {"running": False, "data_dir": str(directory)}
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    elif args.action == "start":
        print(f"Kafka {info.get('version', '')} running at {info['bootstrap']} (pid {info['pid']}, data {directory})")
        if info.get("already_running"):
            print(f"(it was already running on {directory})")
        elif info["earlier_topics"]:
            shown = ", ".join(info["earlier_topics"][:6]) + (" ..." if len(info["earlier_topics"]) > 6 else "")
            print(f"{directory} holds data from earlier runs: {len(info['earlier_topics'])} topics ({shown}); "
                  "`kafka-local stop` then `kafka-local start --fresh` starts empty")
        else:
            print(f"{directory} held no earlier data: the broker starts empty")
        print(f"export EASYSCHED_KAFKA={info['bootstrap']}")
        if info.get("sasl"):
            print(f"export EASYSCHED_KAFKA_CONFIG={info['sasl']['client_config']}")
    elif args.action == "stop":
        print("stopped" if info["stopped"] else f"no broker was running on {directory}")
    else:
        print(f"running at {info['bootstrap']} (pid {info['pid']})" if info.get("pid") else "not running")
    if not args.json and args.action in ("start", "status") and info.get("sasl"):
        print(sasl_line(info["sasl"]))
    if args.action == "status" and not info.get("pid"):
        return 1
    return 0


def _sasl_user(args: argparse.Namespace) -> Any:
    """`--sasl USER:PASS` as a SaslUser (None without it); only `start` takes it."""
    if args.sasl is None:
        return None
    if args.action != "start":
        raise UsageError(f"--sasl goes with `kafka-local start`, not {args.action}")
    from easysched_es.runtime.kafka.local_sasl import parse_credentials

    try:
        return parse_credentials(args.sasl)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def sasl_line(sasl: dict[str, Any]) -> str:
    """One line saying the broker wants SASL, for whom, and where a client's settings are (no password)."""
    return (f"SASL on: {sasl['listener']} with {sasl['mechanism']} for user {sasl['username']}; "
            f"clients: EASYSCHED_KAFKA_CONFIG={sasl['client_config']}")


def earlier_topics(log_dirs: Path) -> set[str]:
    """The topics (internal ones left out) whose partition directories a broker's log dir holds."""
    if not log_dirs.is_dir():
        return set()
    names = set()
    for entry in log_dirs.iterdir():
        topic, sep, part = entry.name.rpartition("-")
        if entry.is_dir() and sep and part.isdigit() and not topic.startswith("__"):
            names.add(topic)
    return names


def _make_fresh(kafka_local: Any, directory: Path) -> None:
    """`--fresh`: drop the broker's data (never under a running broker)."""
    import shutil

    if kafka_local.status(directory) is not None:
        raise UsageError(f"a broker runs on {directory}: `easysched kafka-local stop --dir {directory}` first, "
                         "then start --fresh")
    shutil.rmtree(directory / kafka_local.LOG_DIRS, ignore_errors=True)


def register(reg: Registrar) -> None:
    """Add the Kafka subcommands to the `easysched` parser."""
    text = "run a master: folds the partitions the consumer group gives it, stands by otherwise (Kafka)"
    p = reg.add("master", cmd_master, text)
    p.add_argument("--name", help="this master's name in logs (default host:pid)")
    p.add_argument("--session-timeout", type=float, default=10.0,
                   help="consumer group session timeout in seconds: how fast a standby takes over (default 10)")
    p.add_argument("--snapshot-every", type=int, default=20_000, help="commands between snapshots (default 20000)")
    p.add_argument("--retention-every", type=float, default=3600.0,
                   help="seconds between the retention passes (ApplyRetention) appended to each owned partition, "
                        "the first when it is ready (default 3600; 0 = none)")
    p.add_argument("--events-to-stdout", action="store_true",
                   help="print ownership changes (assigned, ready, dropped) as JSON lines")

    text = "run a worker: runs the SHELL tasks dispatched to its worker group, reports to Kafka"
    p = reg.add("worker", cmd_worker, text)
    p.add_argument("--group", default="default", help="worker group (default 'default')")
    p.add_argument("--slots", type=int, default=0,
                   help="task processes run at a time, split between the partitions (default 0 = no limit)")
    p.add_argument("--name", help="worker name; keep it across restarts to adopt running tasks (default host:pid)")
    p.add_argument("--work-dir", type=Path, default=Path(".easysched-worker"),
                   help="local directory for claim files and task logs (default ./.easysched-worker)")
    p.add_argument("--kill-grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL (default 5)")
    p.add_argument("--heartbeat-timeout", type=float, default=30.0,
                   help="seconds without heartbeat after which masters declare this worker lost (default 30)")
    p.add_argument("--session-timeout", type=float, default=10.0, help="consumer group session timeout (default 10)")

    text = ("run the DuckDB projector over the Kafka events topic, with the query API "
            "(the database lives in --data-dir; `easysched query --data-dir DIR` uses this service)")
    p = reg.add("projector", cmd_projector, text)
    p.add_argument("--port", type=int, default=0, help="HTTP port of the query API (default: a free port)")
    p.add_argument("--host", default="127.0.0.1", help="address of the query API (default 127.0.0.1)")

    text = "a local single-node Apache Kafka (KRaft, no Docker) for development"
    p = reg.add("kafka-local", cmd_kafka_local, text, reg.as_json, log_options=False)
    p.add_argument("action", choices=["start", "stop", "status"],
                   help="start a broker (detached), stop it, or say whether one runs (exit 1 if not)")
    p.add_argument("--dir", type=Path, default=DEFAULT_LOCAL_DIR,
                   help=f"broker data directory (default {DEFAULT_LOCAL_DIR})")
    p.add_argument("--port", type=int, default=None, help="client port for a new broker (default: a free port)")
    p.add_argument("--fresh", action="store_true",
                   help="start: drop the data of earlier runs in --dir first (refused while a broker runs there)")
    p.add_argument("--sasl", metavar="USER:PASS",
                   help="start: the client listener wants SASL/PLAIN with this user (SASL_PLAINTEXT); clients "
                        "point EASYSCHED_KAFKA_CONFIG at DIR/client-sasl.json")
