"""Library errors as the `CliError`s a user sees; imported only when something went wrong.

| kind | exit | what |
|---|---|---|
| `usage` | 2 | bad arguments |
| `rejected` | 1 | the master rejects the command (the reason says why) |
| `invalid_definition` | 1 | a workflow file cannot be used (names the file and the field) |
| `not_found` | 1 | unknown instance, task, workflow or attempt log |
| `no_data_dir` | 1 | the data directory does not exist (read commands) or cannot be created |
| `timeout` | 3 | `wait --timeout` ran out |
| `undecided` | 4 | the command is in the log, no master decided it yet |
| `halted` | 1 | a command raised while applied: the partition stops there until `easysched skip OFFSET` |
| `locked` | 1 | another process holds the log or the projection |
| `log` | 1 | the log cannot be read or written |
| `read_only` / `query` | 1 | a query would write / failed |
| `projection` | 1 | the projection cannot be opened or reached |
| `os` | 1 | the operating system refused (a path, a permission) |
| `internal` | 1 | a bug: the message names it; `-v` prints the traceback |
"""

from __future__ import annotations

import sys
import traceback

from easysched_es.cli.common import CliError, Undecided


def translate(exc: Exception, *, verbose: bool = False) -> CliError:
    """The CliError for `exc` (a library error, an OS error, or a bug)."""
    from easysched_es.core.codec import UnencodableError
    from easysched_es.flows import FlowFileError
    from easysched_es.log.base import LogError, LogLockedError
    from easysched_es.runtime.embedded.client import CommandRejectedError

    if isinstance(exc, CommandRejectedError):
        return CliError(exc.reason, kind="rejected", offset=exc.offset)
    if isinstance(exc, FlowFileError):
        return CliError(str(exc), kind="invalid_definition")
    if isinstance(exc, UnencodableError):
        return CliError(f"the command cannot be written to the log: {exc}", kind="rejected")
    if type(exc).__name__ == "PartitionHalted":  # runtime.fold: a command raised, no skip yet
        return CliError(str(exc), kind="halted")
    if type(exc).__name__ == "NoMasterError":  # runtime.kafka.client; not imported without Kafka
        return Undecided(f"accepted, not yet decided: {exc}")
    if isinstance(exc, LogLockedError):
        return CliError(str(exc), kind="locked")
    if isinstance(exc, LogError):
        return CliError(f"log error: {exc}", kind="log")
    if type(exc).__module__.startswith("kafka."):
        # A kafka-python error an adapter did not translate: still one line naming the broker.
        return CliError(f"log error: {exc}", kind="log")
    projection = _projection_error(exc)
    if projection is not None:
        return projection
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return CliError(f"{where}{exc.strerror or exc}", kind="os")
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    return CliError(f"internal error: {type(exc).__name__}: {exc} (run with -v for the traceback; please report it)",
                    kind="internal")


def _projection_error(exc: Exception) -> CliError | None:
    try:
        from projections.errors import ProjectionError, ProjectionLockedError, QueryError, ReadOnlyError
    except ImportError:
        return None
    if not isinstance(exc, ProjectionError):
        return None
    kind = ("read_only" if isinstance(exc, ReadOnlyError) else "query" if isinstance(exc, QueryError)
            else "locked" if isinstance(exc, ProjectionLockedError) else "projection")
    if "no data directory" in str(exc):
        kind = "no_data_dir"
    return CliError(str(exc), kind=kind)
