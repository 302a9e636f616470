"""The `easysched` command line. Exit codes: 0 success, 1 rejected or failed request, 2 usage error."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from easysched_es.client import Client, CommandRejectedError
from easysched_es.debug.trace import trace
from easysched_es.debug.verify import verify
from easysched_es.debug.views import iso, status_view, timers_view
from easysched_es.flows import FlowFileError, load_flow
from easysched_es.log.base import LogError, LogLockedError
from easysched_es.runtime.datadir import DataDir, resolve
from easysched_es.runtime.fold import LogSource, fold_stream, instance_partition, load_state, load_states, start_state

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad arguments that argparse could not catch (exit code 2)."""


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _client(args: argparse.Namespace) -> Any:
    """The embedded-log Client, or the KafkaClient when --kafka / EASYSCHED_KAFKA is set."""
    from easysched_es.runtime.kafka_cli import kafka_bootstrap

    bootstrap = kafka_bootstrap(args)
    if bootstrap:
        from easysched_es.kafka_client import KafkaClient

        return KafkaClient(bootstrap)
    return Client(args.data_dir)


def _data(args: argparse.Namespace) -> DataDir:
    return DataDir(args.data_dir)


def _source(args: argparse.Namespace) -> LogSource:
    """What the queries fold: the Kafka topics with --kafka / EASYSCHED_KAFKA, else the data directory."""
    from easysched_es.runtime.kafka_cli import kafka_bootstrap

    bootstrap = kafka_bootstrap(args)
    if bootstrap:
        from easysched_es.log.kafka import KafkaSettings
        from easysched_es.runtime.kafka_master import KafkaLog

        return KafkaLog(KafkaSettings.from_env(bootstrap))
    return _data(args)


def _partition_of(instance: str) -> int | None:
    try:
        return instance_partition(instance)
    except ValueError:
        return None


# ---- commands that change state ----------------------------------------------------------


def cmd_define(args: argparse.Namespace) -> int:
    client = _client(args)
    results = []
    for path in args.files:
        definition = load_flow(path)
        version = client.define(definition, release=not args.offline)
        results.append({"file": path, "workflow": definition.name, "version": version})
        if not args.json:
            print(f"defined {definition.name} version {version} ({'OFFLINE' if args.offline else 'ONLINE'})")
    if args.json:
        _print_json(results)
    return EXIT_OK


def _parse_params(pairs: Sequence[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param expects KEY=VALUE, got {pair!r}")
        params[key] = value
    return params


def _parse_time(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--schedule-time expects an ISO-8601 time, got {text!r}") from None
    if dt.tzinfo is None:
        raise UsageError("--schedule-time needs a time zone, e.g. 2026-11-24T00:00:00Z")
    return int(dt.timestamp() * 1000)


def cmd_start(args: argparse.Namespace) -> int:
    params = _parse_params(args.param)
    instance = _client(args).start(args.workflow, params, _parse_time(args.schedule_time))
    if args.json:
        _print_json({"instance": instance})
    else:
        print(instance)
    return EXIT_OK


def _simple(method: str) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        client = _client(args)
        extra = [args.task] if method == "kill_task" else []
        verdict = getattr(client, method)(args.instance, *extra)
        if args.json:
            _print_json({"instance": args.instance, "offset": verdict.offset, "accepted": True})
        else:
            print(
                f"{method.replace('_', '-')} {args.instance}{' ' + args.task if extra else ''}: accepted "
                f"(offset {verdict.offset})"
            )
        return EXIT_OK

    return handler


# ---- queries (fold the log: work whether or not `run` runs) ---------------------------


def cmd_status(args: argparse.Namespace) -> int:
    source = _source(args)
    if args.instance is None:
        view = status_view(load_states(source, progress=True))
    else:
        partition = _partition_of(args.instance)
        known = partition is not None and partition < source.partitions
        view = status_view(load_state(source, partition=partition, progress=True), args.instance) if known else []
    if args.instance and not view:
        print(f"unknown instance {args.instance!r}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        _print_json(view[0] if args.instance else view)
        return EXIT_OK
    for inst in view:
        print(f"{inst['instance']:<12} {inst['workflow']:<24} {inst['state']}")
        for t in inst["tasks"]:
            pending = " (process not yet confirmed gone)" if t["kill_pending"] else ""
            print(f"    {t['name']:<24} {t['type']:<10} {t['state']:<20} attempt {t['attempt']}{pending}")
    if not view:
        print("no instances")
    return EXIT_OK


def cmd_timers(args: argparse.Namespace) -> int:
    view = timers_view(load_states(_source(args), progress=True))
    if args.json:
        _print_json(view)
    else:
        for t in view:
            print(f"{t['due']}  {t['kind']:<16} {t['instance']:<12} {t['task']}")
        if not view:
            print("the delay queue is empty")
    return EXIT_OK


def cmd_trace(args: argparse.Namespace) -> int:
    entries = trace(_source(args), args.instance, args.task)
    if not entries:
        print(f"nothing in the log touched instance {args.instance!r}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        _print_json(entries)
        return EXIT_OK
    for entry in entries:
        indent = "" if entry["kind"] == "command" else "    -> "
        data = entry["data"] or {}
        detail = " ".join(
            f"{k}={v}" for k, v in data.items() if k not in ("instance", "at", "type", "env", "definition")
        )
        print(f"{entry['offset']:>10} {entry['time']} {indent}{entry['type']} {detail}")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    state = load_state(_source(args), partition=args.partition, until=args.until, progress=True)
    result = {
        "partition": args.partition,
        "until": args.until,
        "last_offset": state.last_offset,
        "now": iso(state.now),
        "instances": status_view(state),
        "timers": timers_view(state),
    }
    if args.json:
        _print_json(result)
        return EXIT_OK
    print(f"state of partition {args.partition} as of offset {state.last_offset} (time {iso(state.now)}):")
    for inst in result["instances"]:
        tasks = ", ".join(f"{t['name']}={t['state']}" for t in inst["tasks"])
        print(f"  {inst['instance']:<12} {inst['workflow']:<20} {inst['state']:<18} {tasks}")
    for t in result["timers"]:
        print(f"  timer {t['kind']} {t['instance']}/{t['task']} due {t['due']}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    report = verify(_source(args))
    result = {
        "ok": report.ok,
        "partitions": report.partitions,
        "commands": report.commands,
        "verified": report.verified,
        "undecided": report.undecided,
        "divergence": report.divergence,
    }
    if args.json:
        _print_json(result)
    elif report.ok:
        print(f"ok: {report.verified} recorded batches equal the replay ({report.undecided} commands not decided yet)")
    else:
        where = report.divergence or {}
        print(f"DIVERGENCE in partition {where.get('partition')} at offset {where.get('offset')}")
        _print_json(report.divergence)
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_wait(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    source = _source(args)
    partition = _partition_of(args.instance)
    if partition is None or partition >= source.partitions:
        print(f"unknown instance {args.instance!r}", file=sys.stderr)
        return EXIT_FAILED
    folded = start_state(source, partition)
    with source.commands() as commands:
        while True:
            fold_stream(commands, folded, partition=partition)
            view = status_view(folded, args.instance)
            if not view:
                print(f"unknown instance {args.instance!r}", file=sys.stderr)
                return EXIT_FAILED
            state = view[0]["state"]
            if state in ("SUCCESS", "FAILURE", "STOP", "PAUSE"):
                if args.json:
                    _print_json(view[0])
                else:
                    print(f"{args.instance} {state}")
                return EXIT_OK if state == "SUCCESS" else EXIT_FAILED
            if time.monotonic() > deadline:
                print(f"{args.instance} still {state} after {args.timeout}s", file=sys.stderr)
                return EXIT_FAILED
            time.sleep(0.1)


# ---- the service ---------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from easysched_es.runtime.service import run_embedded

    return run_embedded(_data(args), kill_grace=args.kill_grace, projections=not args.no_projections)


def cmd_demo(args: argparse.Namespace) -> int:
    from easysched_es.demo import run_demo

    return run_demo(keep=args.keep)


# ---- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="data directory of the embedded log (env EASYSCHED_DATA_DIR, default ./.easysched)",
    )
    common.add_argument(
        "--kafka", metavar="BOOTSTRAP", default=argparse.SUPPRESS,
        help="use the Kafka log at BOOTSTRAP (host:port[,host:port]) instead of the embedded one (env EASYSCHED_KAFKA)",
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="machine-readable output")

    parser = argparse.ArgumentParser(
        prog="easysched",
        description="An event-sourced workflow scheduler: every input is a command in a log; "
        "state and timers are a fold over it.",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help=common._actions[0].help)
    parser.add_argument("--kafka", metavar="BOOTSTRAP", default=None, help=common._actions[1].help)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Handler, help_text: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[common, *parents])
        p.set_defaults(func=handler)
        return p

    p = add("run", cmd_run, "run master, worker, ticker and projector on the embedded log (one per data dir)")
    p.add_argument("--kill-grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL (default 5)")
    p.add_argument("--no-projections", action="store_true", help="do not run the DuckDB projector and query API")

    p = add("define", cmd_define, "define and release workflows from YAML files", as_json)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--offline", action="store_true", help="define without releasing (cannot be started)")

    p = add("start", cmd_start, "start an instance of a workflow; prints the instance id", as_json)
    p.add_argument("workflow")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="a parameter (repeatable)")
    p.add_argument("--schedule-time", help="the instance's schedule time (ISO-8601 with zone); base of date windows")

    for name, method, text in (
        ("stop", "stop", "stop an instance: kill every active task"),
        ("pause", "pause", "pause an instance: dispatch nothing new, let running tasks finish"),
        ("resume", "resume", "resume a paused instance"),
    ):
        p = add(name, _simple(method), text, as_json)
        p.add_argument("instance")
    p = add("kill-task", _simple("kill_task"), "kill one task of an instance (never retried)", as_json)
    p.add_argument("instance")
    p.add_argument("task")

    p = add("status", cmd_status, "instances and their tasks, folded from the log", as_json)
    p.add_argument("instance", nargs="?")
    add("timers", cmd_timers, "every pending delay-queue entry, as the state holds it", as_json)
    p = add("trace", cmd_trace, "every command and event that touched an instance, in log order", as_json)
    p.add_argument("instance")
    p.add_argument("--task", help="only what touched this task (and the instance as a whole)")
    p = add("replay", cmd_replay, "the state of one partition as of a command offset", as_json)
    p.add_argument("--until", type=int, required=True, metavar="OFFSET",
                   help="the last command offset to apply, in the partition given by --partition")
    p.add_argument("--partition", type=int, default=0, metavar="P",
                   help="the partition to replay (Kafka: an instance 'P-N' lives in partition P; "
                   "the embedded log has only 0; default 0)")
    add("verify", cmd_verify, "replay the whole log and compare with the recorded events", as_json)
    p = add("wait", cmd_wait, "wait until an instance ends (exit 0 on SUCCESS, 1 otherwise)", as_json)
    p.add_argument("instance")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    p = add("demo", cmd_demo, "run the DolphinScheduler #16895 scenario and a SHELL kill end to end")
    p.add_argument("--keep", action="store_true", help="keep the demo's data directory")

    _register_optional(sub, common, as_json)
    return parser


def _register_optional(sub: Any, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser) -> None:
    """Subcommands that live in their own packages (projections, Kafka)."""
    from easysched_es.runtime.kafka_cli import register as register_kafka

    register_kafka(sub, common, as_json)
    try:
        from projections.cli import register as register_projections
    except ImportError:
        return
    register_projections(sub, parents=[common])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    args.data_dir = resolve(args.data_dir)
    try:
        return int(args.func(args))
    except UsageError as exc:
        parser.error(str(exc))
    except (FlowFileError, CommandRejectedError) as exc:
        print(f"rejected: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except LogLockedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except LogError as exc:
        print(f"log error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `easysched query ... | head`: the reader left; say nothing more, and keep Python's
        # shutdown flush from raising again on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    return EXIT_OK
