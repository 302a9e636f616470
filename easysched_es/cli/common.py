"""What every `easysched` subcommand module shares: exit codes, errors, output, the log to talk to.

A subcommand module has a `register(reg: Registrar)` function and is listed in `cli/app.py`
(one line), so that parallel work on different commands does not collide in one file.

Errors: a handler raises a `CliError` (or a subclass: `UsageError`, `NotFoundError`,
`NoDataDirError`, `WaitTimeout`, `Undecided`); `app.main` prints it once, as
`{"error": ..., "kind": ..., ...}` on stdout with `--json`, else as `error: ...` on stderr, and
exits with its code. Errors of the library (a rejected command, a bad workflow file, a locked
or broken log, an OS error) are translated in `app.py` the same way; no traceback reaches a user.

This module is imported on every call: it imports only the standard library (the log, the
client and the fold are imported inside the functions that need them, see `bench/cli.py`).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from easysched_es.runtime.embedded.datadir import DataDir
    from easysched_es.runtime.fold import LogSource

# Exit codes (README "Exit codes and errors"; printed by `easysched --help`).
EXIT_OK = 0  # done
EXIT_FAILED = 1  # rejected, failed, unknown, or a final state other than SUCCESS (`wait`)
EXIT_USAGE = 2  # bad arguments
EXIT_TIMEOUT = 3  # `wait --timeout` ran out before the instance ended
EXIT_UNDECIDED = 4  # the command is durable in the log but no master has decided it yet (Kafka)
EXIT_INTERRUPTED = 130  # Ctrl-C
# Seconds a CLI command waits for a Kafka broker that does not answer (`--kafka-timeout`).
DEFAULT_KAFKA_TIMEOUT = 10.0

EXIT_CODES_HELP = (
    "exit codes: 0 ok; 1 rejected, failed or unknown (wait: a final state other than SUCCESS); "
    "2 usage error; 3 wait timed out; 4 accepted into the log but not yet decided (no master). "
    'With --json every error is one JSON object on stdout: {"error": "...", "kind": "..."}.'
)

Handler = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """An error a person can act on: printed once by `app.main`, then exit `exit_code`.

    `kind` is the machine-readable class of the error (README lists them); `extra` fields are
    added to the JSON object.
    """

    kind = "failed"
    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, kind: str | None = None, exit_code: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if kind is not None:
            self.kind = kind
        if exit_code is not None:
            self.exit_code = exit_code
        self.extra = extra

    def as_json(self) -> dict[str, Any]:
        """The JSON error object: `error`, `kind`, then the extra fields."""
        return {"error": self.message, "kind": self.kind, **self.extra}


class UsageError(CliError):
    """Bad arguments (exit code 2); `parser` is the (sub)command whose usage is shown."""

    kind = "usage"
    exit_code = EXIT_USAGE

    def __init__(self, message: str, parser: argparse.ArgumentParser | None = None, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.parser = parser


class NotFoundError(CliError):
    """An unknown instance, task, workflow or file (exit code 1)."""

    kind = "not_found"


class NoDataDirError(CliError):
    """A read command on a data directory that does not exist (exit code 1; it is not created)."""

    kind = "no_data_dir"


class WaitTimeout(CliError):
    """`wait --timeout` ran out (exit code 3)."""

    kind = "timeout"
    exit_code = EXIT_TIMEOUT


class Undecided(CliError):
    """The command is in the log but no master decided it in time (exit code 4)."""

    kind = "undecided"
    exit_code = EXIT_UNDECIDED


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are `UsageError`s, so `--json` gets them as JSON too."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, parser=self)


class Registrar:
    """Adds subcommands to the `easysched` parser with the shared `--data-dir`/`--kafka` and `--json` options."""

    def __init__(self, sub: Any, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser) -> None:
        self.sub, self.common, self.as_json = sub, common, as_json

    def add(self, name: str, handler: Handler, help_text: str, *parents: argparse.ArgumentParser,
            log_options: bool = True, description: str | None = None) -> argparse.ArgumentParser:
        """A subcommand `name` running `handler`; `log_options=False` leaves out `--data-dir`/`--kafka`."""
        base = [self.common] if log_options else []
        p = self.sub.add_parser(name, help=help_text, description=description or help_text,
                                parents=[*base, *parents], epilog=EXIT_CODES_HELP)
        p.set_defaults(func=handler)
        return p


def wants_json(args: argparse.Namespace | None, argv: Sequence[str]) -> bool:
    """Whether errors go out as JSON: `--json` (or `--format json`) was given."""
    if args is not None and (getattr(args, "json", False) or getattr(args, "format", None) == "json"):
        return True
    return "--json" in argv or "--format=json" in argv or any(
        a == "--format" and b == "json" for a, b in itertools.pairwise(argv))


def kafka_bootstrap(args: argparse.Namespace) -> str | None:
    """The bootstrap servers chosen by `--kafka` or `$EASYSCHED_KAFKA`, else None (embedded log)."""
    return getattr(args, "kafka", None) or os.environ.get("EASYSCHED_KAFKA") or None


def kafka_settings(args: argparse.Namespace, bootstrap: str) -> Any:
    """The KafkaSettings of a CLI command: the environment's, bounded by `--kafka-timeout`."""
    from easysched_es.log.kafka import KafkaSettings

    timeout = getattr(args, "kafka_timeout", None)
    return KafkaSettings.from_env(bootstrap, timeout=DEFAULT_KAFKA_TIMEOUT if timeout is None else timeout)


def print_json(value: Any) -> None:
    """Print `value` as indented JSON, UTF-8 (anything not JSON-native as its str).

    msgspec encodes and indents: for the 31 MB of a big `status --json` that is ~20x faster
    than json.dumps(indent=2).
    """
    import msgspec

    sys.stdout.flush()
    out = msgspec.json.format(msgspec.json.encode(value, enc_hook=str), indent=2)
    sys.stdout.buffer.write(out + b"\n")
    sys.stdout.buffer.flush()


def note(text: str) -> None:
    """A remark for the person at the terminal (stderr, so that stdout stays parseable)."""
    print(text, file=sys.stderr)


def require_data_dir(path: Path) -> Path:
    """`path` if it is an existing directory; else `NoDataDirError` (read commands never create one)."""
    if path.is_dir():
        return path
    what = "is not a directory" if path.exists() else "does not exist"
    raise NoDataDirError(
        f"no data directory at {path} ({what}); pass --data-dir or set EASYSCHED_DATA_DIR to an existing one "
        "(`easysched define` or `easysched run` creates it)", data_dir=str(path))


def create_data_dir(path: Path) -> Path:
    """`path`, created if needed (write commands); a place where it cannot be made is a `CliError`."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise CliError(f"cannot create the data directory {path}: {reason}", kind="no_data_dir",
                       data_dir=str(path)) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CliError(f"the data directory {path} is not writable", kind="no_data_dir", data_dir=str(path))
    return path


def client(args: argparse.Namespace) -> Any:
    """The embedded-log Client (the data directory created if needed), or the KafkaClient with --kafka."""
    bootstrap = kafka_bootstrap(args)
    if bootstrap:
        from easysched_es.runtime.kafka.client import KafkaClient

        return KafkaClient(kafka_settings(args, bootstrap))
    from easysched_es.runtime.embedded.client import Client

    return Client(create_data_dir(args.data_dir))


def data(args: argparse.Namespace, *, create: bool = False) -> DataDir:
    """The embedded data directory chosen by `--data-dir`; it must exist unless `create`."""
    from easysched_es.runtime.embedded.datadir import DataDir

    return DataDir(create_data_dir(args.data_dir) if create else require_data_dir(args.data_dir))


def source(args: argparse.Namespace, *, long_lived: bool = False) -> LogSource:
    """What the queries fold: the Kafka topics with --kafka / EASYSCHED_KAFKA, else the (existing) data directory.

    On Kafka a one-shot command gets a `QueryLog` (one consumer; each partition's newest snapshot
    plus the commands after it); a service (`long_lived`, the dashboard) the per-call `KafkaLog`.
    """
    bootstrap = kafka_bootstrap(args)
    if bootstrap:
        if long_lived:
            from easysched_es.runtime.kafka.master import KafkaLog

            return KafkaLog(kafka_settings(args, bootstrap))
        from easysched_es.runtime.kafka.query_log import QueryLog

        return QueryLog(kafka_settings(args, bootstrap))
    return data(args)


def source_used(src: object) -> dict[str, Any]:
    """The `source` field of a query's `--json` answer: what it folded (snapshot positions and tails on Kafka)."""
    used = getattr(src, "used", None)
    if callable(used):
        return dict(used())
    return {"kind": "log"}


def partition_of(instance: str) -> int | None:
    """The partition in an instance id `P-N`, or None when it is not one."""
    from easysched_es.runtime.fold import instance_partition

    try:
        return instance_partition(instance)
    except ValueError:
        return None


def parse_params(pairs: Sequence[str]) -> dict[str, str]:
    """`--param K=V` pairs as a dict; a pair without `=` or key is a usage error."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param expects KEY=VALUE, got {pair!r}")
        params[key] = value
    return params


def parse_time(text: str | None) -> int | None:
    """An ISO-8601 time with a zone as epoch milliseconds (None passes through)."""
    from datetime import datetime

    if text is None:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--schedule-time expects an ISO-8601 time, got {text!r}") from None
    if dt.tzinfo is None:
        raise UsageError("--schedule-time needs a time zone, e.g. 2026-11-24T00:00:00Z")
    return int(dt.timestamp() * 1000)


def non_negative_int(text: str) -> int:
    """An argparse `type`: a whole number >= 0 (offsets, counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def non_negative_number(text: str) -> float:
    """An argparse `type`: a number >= 0 (days, sizes); NaN is refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse `type`: a whole number >= 1 (limits)."""
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more, got 0")
    return value
