"""What every `easysched` subcommand module shares: exit codes, errors, output, the log to talk to.

A subcommand module has a `register(reg: Registrar)` function and is listed in `cli/app.py`
(one line), so that parallel work on different commands does not collide in one file.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.fold import LogSource, instance_partition

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad arguments that argparse could not catch (exit code 2)."""


class Registrar:
    """Adds subcommands to the `easysched` parser with the shared `--data-dir`/`--kafka` and `--json` options."""

    def __init__(self, sub: Any, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser) -> None:
        self.sub, self.common, self.as_json = sub, common, as_json

    def add(self, name: str, handler: Handler, help_text: str, *parents: argparse.ArgumentParser,
            log_options: bool = True) -> argparse.ArgumentParser:
        """A subcommand `name` running `handler`; `log_options=False` leaves out `--data-dir`/`--kafka`."""
        base = [self.common] if log_options else []
        p = self.sub.add_parser(name, help=help_text, description=help_text, parents=[*base, *parents])
        p.set_defaults(func=handler)
        return p


def kafka_bootstrap(args: argparse.Namespace) -> str | None:
    """The bootstrap servers chosen by `--kafka` or `$EASYSCHED_KAFKA`, else None (embedded log)."""
    return getattr(args, "kafka", None) or os.environ.get("EASYSCHED_KAFKA") or None


def print_json(value: Any) -> None:
    """Print `value` as indented JSON (anything not JSON-native as its str).

    msgspec encodes and indents: for the 31 MB of a big `status --json` that is ~20x faster
    than json.dumps(indent=2).
    """
    sys.stdout.flush()
    out = msgspec.json.format(msgspec.json.encode(value, enc_hook=str), indent=2)
    sys.stdout.buffer.write(out + b"\n")
    sys.stdout.buffer.flush()


def client(args: argparse.Namespace) -> Any:
    """The embedded-log Client, or the KafkaClient when --kafka / EASYSCHED_KAFKA is set."""
    bootstrap = kafka_bootstrap(args)
    if bootstrap:
        from easysched_es.runtime.kafka.client import KafkaClient

        return KafkaClient(bootstrap)
    from easysched_es.runtime.embedded.client import Client

    return Client(args.data_dir)


def data(args: argparse.Namespace) -> DataDir:
    """The embedded data directory chosen by `--data-dir`."""
    return DataDir(args.data_dir)


def source(args: argparse.Namespace) -> LogSource:
    """What the queries fold: the Kafka topics with --kafka / EASYSCHED_KAFKA, else the data directory."""
    bootstrap = kafka_bootstrap(args)
    if bootstrap:
        from easysched_es.log.kafka import KafkaSettings
        from easysched_es.runtime.kafka.master import KafkaLog

        return KafkaLog(KafkaSettings.from_env(bootstrap))
    return data(args)


def partition_of(instance: str) -> int | None:
    """The partition in an instance id `P-N`, or None when it is not one."""
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
    if text is None:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--schedule-time expects an ISO-8601 time, got {text!r}") from None
    if dt.tzinfo is None:
        raise UsageError("--schedule-time needs a time zone, e.g. 2026-11-24T00:00:00Z")
    return int(dt.timestamp() * 1000)

