"""CLI commands over the projection: `query`, `history`, `stats`, `projections rebuild`.

`register(subparsers)` adds them to the main `easysched` parser, which sets `args.data_dir`;
each sets `func`, returning the exit code (0 ok, 1 the request failed, 2 usage). They talk to
the running scheduler's projection service when there is one, else open the file directly.
Heavy imports (DuckDB, Arrow) happen inside the handlers, so `easysched --help` stays quick.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from easysched_es.cli.common import EXIT_OK, NoDataDirError, NotFoundError
from easysched_es.cli.common import UsageError as _Usage


def register(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
    parents: Sequence[argparse.ArgumentParser] = (),
) -> None:
    """Add the projection commands to the `easysched` subparsers.

    `parents` are given to every subcommand (for example the parser holding `--data-dir`, so
    that it may follow the subcommand too).
    """
    parents = list(parents)
    q = subparsers.add_parser(
        "query",
        parents=parents,
        help="run a read-only SQL query over the projection",
        description="Run one read-only SQL statement (SELECT, or EXPLAIN of one) over the projection tables "
                    "and views (see `easysched query \"SHOW TABLES\"`). Times are UTC.",
    )
    q.add_argument("sql", nargs="?", help="the SQL statement")
    q.add_argument("--file", "-f", type=Path, help="read the statement from this file instead")
    q.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format (table)")
    q.add_argument("--json", action="store_true", help="same as --format json")
    q.set_defaults(func=_handler(_query))

    text = "a workflow's instances, newest first, with durations"
    h = subparsers.add_parser("history", parents=parents, help=text, description=text)
    h.add_argument("workflow", help="workflow name")
    h.add_argument("--limit", type=int, default=20, help="how many instances (20)")
    h.add_argument("--backfill", metavar="ID", help="only the instances this backfill started (P-O-backfill)")
    h.add_argument("--json", action="store_true", help="print JSON")
    h.set_defaults(func=_handler(_history))

    text = "success/failure/kill counts and p50/p95 durations per workflow and task"
    s = subparsers.add_parser("stats", parents=parents, help=text, description=text)
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_handler(_stats))

    p = subparsers.add_parser("projections", help="manage the DuckDB projection",
                              description="manage the DuckDB projection")
    commands = p.add_subparsers(dest="projections_command", metavar="COMMAND", required=True,
                                help="what to do with the projection")
    text = "drop the projection and refold it from the log, with a progress bar"
    r = commands.add_parser("rebuild", parents=parents, help=text, description=text)
    r.add_argument("--json", action="store_true", help="print {records, seconds, by} as JSON; no progress bar")
    r.set_defaults(func=_handler(_rebuild))


def _handler(body: Callable[[argparse.Namespace, TextIO], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command body: `_Usage` becomes the CLI's usage error (exit 2); other errors (a
    `ProjectionError` included) reach `easysched_es.cli.app.main`, which prints them once (JSON
    with --json) with exit code 1."""

    def run(args: argparse.Namespace) -> int:
        return body(args, sys.stdout)

    run.__doc__ = body.__doc__
    return run


# ------------------------------------------------------------------------------ commands


def _query(args: argparse.Namespace, out: TextIO) -> int:
    """easysched query SQL | --file F [--format table|json|csv] [--json]"""
    from projections.client import open_reader

    if (args.sql is None) == (args.file is None):
        raise _Usage("give the SQL either as an argument or with --file, not both or neither")
    if args.sql is not None and not args.sql.strip():
        raise _Usage("the SQL statement is empty")
    if args.file is not None:
        try:
            sql = args.file.read_text()
        except OSError as exc:
            raise _Usage(f"cannot read {args.file}: {exc.strerror}") from exc
    else:
        sql = args.sql
    fmt = "json" if args.json else args.format
    with open_reader(args.data_dir, progress=True) as reader:
        result = reader.query(sql)
    _print_result(result["columns"], result["rows"], fmt, out)
    return EXIT_OK


# `history --backfill ID`: the columns of the reader's `instances`, narrowed to one backfill.
BACKFILL_HISTORY_SQL = """SELECT instance, workflow, version, state, started_at, ended_at, duration_ms, schedule_time,
reason FROM workflow_instances WHERE workflow = $1 AND backfill = $2 ORDER BY started_at DESC, instance DESC LIMIT $3"""


def _records(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]


def _history(args: argparse.Namespace, out: TextIO) -> int:
    """easysched history WORKFLOW [--json]"""
    from projections.client import open_reader

    if args.limit < 1:
        raise _Usage("--limit must be at least 1")
    with open_reader(args.data_dir, progress=True) as reader:
        found = (reader.instances(workflow=args.workflow, limit=args.limit)["instances"] if not args.backfill
                 else _records(reader.query(BACKFILL_HISTORY_SQL, [args.workflow, args.backfill, args.limit])))
        if not found and not reader.query("SELECT 1 FROM workflows WHERE workflow = $1", [args.workflow])["rows"]:
            raise NotFoundError(f"no workflow named {args.workflow!r} is defined", workflow=args.workflow)
    if args.json:
        _dump_json(found, out)
        return EXIT_OK
    columns = ["instance", "version", "state", "started_at", "ended_at", "duration"]
    rows = [[i["instance"], i["version"], i["state"], _time(i["started_at"]), _time(i["ended_at"]),
             _duration(i["duration_ms"])] for i in found]
    _table(columns, rows, out)
    return EXIT_OK


def _stats(args: argparse.Namespace, out: TextIO) -> int:
    """easysched stats [--json]"""
    from projections.client import open_reader

    with open_reader(args.data_dir, progress=True) as reader:
        stats = reader.stats()
    if args.json:
        _dump_json(stats, out)
        return EXIT_OK
    print("workflows", file=out)
    _records_table(stats["workflows"], out, ms=("p50_ms", "p95_ms"))
    print("\ntasks (one count per attempt)", file=out)
    _records_table(stats["tasks"], out, ms=("p50_ms", "p95_ms"))
    return EXIT_OK


def _rebuild(args: argparse.Namespace, out: TextIO) -> int:
    """easysched projections rebuild"""
    from easysched_es.cli.common import kafka_bootstrap
    from projections.client import HttpReader, find_service, read_service_file
    from projections.local import LocalProjection

    bootstrap = kafka_bootstrap(args)
    if bootstrap:  # the projection of the Kafka topics lives in --data-dir too (`easysched projector`)
        Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    elif not Path(args.data_dir).is_dir():
        raise NoDataDirError(f"no data directory at {args.data_dir}", data_dir=str(args.data_dir))
    service = find_service(args.data_dir)
    if service is not None:
        info = read_service_file(args.data_dir) or {}
        print(f"the scheduler (pid {info.get('pid', '?')}) is running: it rebuilds its projection now...",
              file=sys.stderr)
        done = HttpReader(service.url, timeout=None, token=service.token).rebuild()  # as long as the log takes
        return _rebuilt(args, out, int(done["records"]), float(done["seconds"]), "service")
    import time

    t0 = time.monotonic()
    streams: dict[str, Any] = {}
    if bootstrap:  # fold the topics, one consumer each (log/kafka_reader.py), not the embedded log
        from easysched_es.cli.common import kafka_settings
        from easysched_es.log.kafka_reader import projection_streams

        streams["events"], streams["commands"] = projection_streams(kafka_settings(args, bootstrap))
    try:
        with LocalProjection(args.data_dir, wait=5.0, **streams) as local:
            records = local.projector.rebuild(progress=not args.json)
    finally:
        for stream in streams.values():
            stream.close()
    return _rebuilt(args, out, records, time.monotonic() - t0, "local")


def _rebuilt(args: argparse.Namespace, out: TextIO, records: int, seconds: float, by: str) -> int:
    """Report a finished rebuild; `by` says who refolded it (the running service, or this process)."""
    if args.json:
        _dump_json({"records": records, "seconds": round(seconds, 3), "by": by}, out)
    else:
        print(f"rebuilt: {records} records in {seconds:.1f} s", file=out)
    return EXIT_OK


# ------------------------------------------------------------------------------ output


def _print_result(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        _dump_json([dict(zip(_unique(columns), row, strict=True)) for row in rows], out)
    elif fmt == "csv":
        import csv

        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_csv_cell(v) for v in row] for row in rows])
    else:
        _table(list(columns), [[_cell(v) for v in row] for row in rows], out)
        print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", file=out)


def _records_table(records: Sequence[dict[str, Any]], out: TextIO, ms: Sequence[str] = ()) -> None:
    if not records:
        print("(none yet)", file=out)
        return
    columns = list(records[0])
    rows = [[_duration(r[c]) if c in ms else _cell(r[c]) for c in columns] for r in records]
    _table([c.removesuffix("_ms") if c in ms else c for c in columns], rows, out)


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    """Aligned columns: numbers to the right, everything else to the left."""
    cells = [[str(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numeric = [bool(rows) and all(isinstance(r[i], int | float) or r[i] == "NULL" for r in rows)
               for i in range(len(columns))]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in cells:
        line = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(row, widths, numeric, strict=True)]
        print("  ".join(line).rstrip(), file=out)


def _cell(value: Any) -> Any:
    if value is None:
        return "NULL"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, str):
        return _time(value) if _looks_like_time(value) else value.replace("\n", "\\n")
    return value


def _csv_cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else value


def _looks_like_time(value: str) -> bool:
    return len(value) >= 20 and value[4] == "-" and value[10] == "T" and value.endswith("Z")


def _time(value: str | None) -> str:
    """ISO 8601 UTC from the API as 'YYYY-MM-DD HH:MM:SS.mmm' (UTC, like DuckDB prints it)."""
    if value is None:
        return "NULL"
    text = value.removesuffix("Z").replace("T", " ")
    return text[:23]


def _duration(ms: float | None) -> str:
    """Milliseconds as a short human duration: 850ms, 12.3s, 4m05s, 2h03m."""
    if ms is None:
        return "NULL"
    if ms < 1000:
        return f"{ms:.0f}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _unique(columns: Sequence[str]) -> list[str]:
    """Column names made unique (a, a_2) so that JSON objects keep every column."""
    seen: dict[str, int] = {}
    names = []
    for c in columns:
        seen[c] = seen.get(c, 0) + 1
        names.append(c if seen[c] == 1 else f"{c}_{seen[c]}")
    return names


def _dump_json(value: Any, out: TextIO) -> None:
    json.dump(value, out, indent=2, ensure_ascii=False)
    out.write("\n")
