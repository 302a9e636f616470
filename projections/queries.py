"""The read side: read-only SQL, the canned queries behind the API and the CLI, JSON results.

Everything a reader can ask goes through `LocalReader` (a cursor on the projection) or
`client.HttpReader` (the same questions over HTTP), which answer with the same JSON-able
shapes, so the CLI prints the same thing whichever it talks to.

Queries are read-only in three layers: only SELECT (and EXPLAIN of a SELECT) statements are
accepted, judged by DuckDB's own parser rather than by pattern matching; each runs inside a
transaction that is rolled back; and the connection has external access disabled, so no
query reads or writes files, URLs or extensions.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import duckdb
import msgspec
import pyarrow as pa

from projections.errors import QueryError, ReadOnlyError

_READ_TYPES = frozenset({duckdb.StatementType.SELECT})
_EXPLAIN_PREFIX = re.compile(r"^\s*EXPLAIN\s+(ANALY[SZ]E\s+)?", re.IGNORECASE)
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class QueryResult:
    """A query's answer as Arrow, with DuckDB's column types (Arrow loses JSON, for one)."""

    columns: list[str]
    types: list[str]
    table: pa.Table
    truncated: bool = False


def check_read_only(conn: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Raise ReadOnlyError unless `sql` is exactly one SELECT (or EXPLAIN of one); QueryError if it does not parse."""
    statements = _parse(conn, sql)
    if len(statements) != 1:
        raise QueryError(f"send exactly one statement per query, not {len(statements)}")
    statement = statements[0]
    kind = statement.type
    if kind == duckdb.StatementType.EXPLAIN:
        # EXPLAIN ANALYZE runs its statement: judge the statement it explains.
        inner = _parse(conn, _EXPLAIN_PREFIX.sub("", statement.query, count=1))
        if len(inner) == 1 and inner[0].type in _READ_TYPES:
            _check_tree(conn, inner[0].query)
            return
        kind = inner[0].type if len(inner) == 1 else kind
    elif kind in _READ_TYPES:
        _check_tree(conn, statement.query)
        return
    name = str(kind).rsplit(".", 1)[-1]
    raise ReadOnlyError(
        f"refused: queries are read-only and this statement is of type {name}. Only the projector writes the "
        "projection, from the log; change the scheduler with its commands (easysched start, stop, ...)"
    )


# A SELECT may still hide a write (`WITH x AS (DELETE ... RETURNING *) SELECT ...`) or reach
# outside the projection (`read_csv('/etc/passwd')`, `FROM 'file.parquet'`, `query('...')`).
# DuckDB's own parse tree (json_serialize_sql) is walked for those; the connection's disabled
# external access stays as a second wall behind this one.
_READ_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"})
_OUTSIDE_FUNCTIONS = frozenset({
    "glob", "query", "query_table", "sniff_csv", "checkpoint", "force_checkpoint", "getenv",
    "parquet_metadata", "parquet_schema", "parquet_file_metadata", "parquet_kv_metadata", "parquet_bloom_probe",
    "iceberg_metadata", "iceberg_snapshots", "load_aws_credentials", "http_get", "http_post", "copy_database",
    "duckdb_secrets", "which_secret", "install", "load", "sqlite_attach", "postgres_attach", "mysql_attach",
})


def _outside(function: str) -> bool:
    name = function.lower()
    return name in _OUTSIDE_FUNCTIONS or name.startswith(("read_", "scan_")) or name.endswith(("_scan", "_attach"))


def _check_tree(conn: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse a SELECT whose parse tree writes, reads files or databases, or runs SQL from a string."""
    try:
        row = conn.execute("SELECT json_serialize_sql($1::VARCHAR), current_database()", [sql]).fetchone()
    except duckdb.Error as exc:
        raise QueryError(_message(exc)) from exc
    tree, own = (msgspec.json.decode(row[0]), row[1]) if row else ({"error": True}, "")
    if tree.get("error"):
        raise ReadOnlyError(f"refused: this statement cannot be checked as read-only ({tree.get('error_message', '')})")
    stack: list[Any] = [tree.get("statements", [])]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        if isinstance(kind, str) and kind.endswith("_NODE") and kind not in _READ_NODES:
            verb = kind.removesuffix("_QUERY_NODE").removesuffix("_NODE")
            raise ReadOnlyError(f"refused: queries are read-only, and this one modifies data ({verb} in a CTE or "
                                "subquery); change the scheduler with its commands (easysched start, stop, ...)")
        function = node.get("function_name")
        if isinstance(function, str) and _outside(function):
            raise ReadOnlyError(f"refused: {function}() reads outside the projection (files, databases, SQL text); "
                                "queries see the projection's tables and views only")
        if kind == "BASE_TABLE":
            name, catalog = str(node.get("table_name", "")), str(node.get("catalog_name", ""))
            if any(ch in name for ch in "./\\:") or catalog not in ("", "system", "temp", "main", own):
                raise ReadOnlyError(f"refused: {catalog + '.' if catalog else ''}{name} is not a table of the "
                                    "projection (files and other databases are out of reach)")
        stack.extend(node.values())


def _parse(conn: duckdb.DuckDBPyConnection, sql: str) -> list[Any]:
    try:
        return list(conn.extract_statements(sql))
    except duckdb.Error as exc:
        raise QueryError(_message(exc)) from exc


def execute(
    conn: duckdb.DuckDBPyConnection,
    sql: str,
    params: Sequence[Any] | None = None,
    max_rows: int | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> QueryResult:
    """Run a read-only query on `conn` (a cursor owned by the caller) inside a rolled-back transaction.

    `max_rows` cuts the answer (and says so in `truncated`); `timeout` interrupts a query that
    runs longer (QueryError).
    """
    check_read_only(conn, sql)
    timer = threading.Timer(timeout, conn.interrupt) if timeout else None
    conn.execute("BEGIN TRANSACTION")
    try:
        if timer is not None:
            timer.start()
        rel = conn.sql(sql, params=list(params) if params else None)
        if rel is None:  # defensive: a SELECT always gives a relation
            raise QueryError("the statement returned no result")
        columns, types = list(rel.columns), [str(t) for t in rel.types]
        if max_rows is not None:
            rel = rel.limit(max_rows + 1)
        table = rel.to_arrow_table()
    except duckdb.InterruptException as exc:
        raise QueryError(f"the query ran longer than {timeout:g} s and was stopped") from exc
    except duckdb.Error as exc:
        raise QueryError(_message(exc)) from exc
    finally:
        if timer is not None:
            timer.cancel()
        conn.execute("ROLLBACK")
    truncated = max_rows is not None and table.num_rows > max_rows
    if truncated:
        table = table.slice(0, max_rows)
    return QueryResult(columns, types, table, truncated)


def _message(exc: duckdb.Error) -> str:
    # DuckDB prefixes messages with their class ("Parser Error: ..."); keep them, they help.
    return str(exc).strip()


# ------------------------------------------------------------------------------ JSON


def _utc(value: Any) -> Any:
    # Projection timestamps are naive UTC: ISO-8601 with "Z" and milliseconds (the precision of
    # the log), the same text as `easysched status --json` and the client (issue 11 point 3);
    # a finer value keeps its microseconds.
    if isinstance(value, dt.datetime):
        aware = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
        spec = "milliseconds" if aware.microsecond % 1000 == 0 else "microseconds"
        return aware.isoformat(timespec=spec).replace("+00:00", "Z")
    return value


def _raw_json(value: Any) -> Any:
    return None if value is None else msgspec.Raw(value.encode() if isinstance(value, str) else value)


def _enc_hook(value: Any) -> Any:
    # Intervals, Arrow scalars and the like: their text is the most useful JSON form.
    return str(value)


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook, decimal_format="number")


def rows_of(result: QueryResult) -> list[list[Any]]:
    """The rows as lists of JSON-encodable values (JSON columns embedded as JSON)."""
    columns: list[list[Any]] = []
    for i, sql_type in enumerate(result.types):
        values = result.table.column(i).to_pylist()
        if sql_type == "JSON":
            values = [_raw_json(v) for v in values]
        elif sql_type.startswith("TIMESTAMP"):
            values = [_utc(v) for v in values]
        columns.append(values)
    return [list(row) for row in zip(*columns, strict=True)] if columns else []


def result_json(result: QueryResult) -> dict[str, Any]:
    """The JSON shape of a query answer (what POST /query returns)."""
    rows = rows_of(result)
    return {
        "columns": result.columns,
        "types": result.types,
        "rows": rows,
        "row_count": len(rows),
        "truncated": result.truncated,
    }


def records(result: QueryResult) -> list[dict[str, Any]]:
    """The rows as {column: value} objects."""
    return [dict(zip(result.columns, row, strict=True)) for row in rows_of(result)]


def encode_json(value: Any) -> bytes:
    """JSON bytes of an API answer."""
    return _encoder.encode(value)


def plain(value: dict[str, Any]) -> dict[str, Any]:
    """An API answer as plain JSON values (what a client decodes), so local and HTTP answers are identical."""
    decoded: dict[str, Any] = msgspec.json.decode(_encoder.encode(value))
    return decoded


# ------------------------------------------------------------------------------ readers

INSTANCES_SQL = """SELECT instance, workflow, version, state, started_at, ended_at, duration_ms, schedule_time, reason
FROM workflow_instances
WHERE ($1 IS NULL OR workflow = $1) AND ($2 IS NULL OR state = $2)
ORDER BY started_at DESC, instance DESC
LIMIT $3"""
INSTANCE_SQL = "SELECT * FROM workflow_instances WHERE instance = $1"
INSTANCE_TASKS_SQL = "SELECT * FROM task_instances WHERE instance = $1 ORDER BY started_at, task, attempt"
TIMERS_SQL = "SELECT * FROM timers WHERE ($1 IS NULL OR instance = $1) ORDER BY due, instance, task, kind"
WORKFLOW_STATS_SQL = "SELECT * FROM workflow_stats ORDER BY workflow"
TASK_STATS_SQL = "SELECT * FROM task_stats ORDER BY workflow, task"


class Reader(Protocol):
    """What the CLI and `connect` ask a projection, locally or over HTTP (answers are plain JSON values)."""

    def query(self, sql: str, params: Sequence[Any] | None = None, max_rows: int | None = None) -> dict[str, Any]:
        """A read-only SQL query: {"columns", "types", "rows", "row_count", "truncated"}."""
        ...

    def query_arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """A read-only SQL query as an Arrow table."""
        ...

    def instances(self, workflow: str | None = None, state: str | None = None, limit: int = 100) -> dict[str, Any]:
        """Workflow instances, newest first: {"instances": [...]}."""
        ...

    def instance(self, instance_id: str) -> dict[str, Any] | None:
        """One instance with its task attempts and timers, or None."""
        ...

    def timers(self, instance: str | None = None) -> dict[str, Any]:
        """Pending timers, earliest first: {"timers": [...]}."""
        ...

    def stats(self) -> dict[str, Any]:
        """Outcome counts and duration percentiles per workflow and task, and the projection's progress."""
        ...


class LocalReader:
    """Answers questions from a projection in this process, through cursors from `cursor()`.

    `status` supplies the projection's progress for `stats`.
    """

    def __init__(
        self,
        cursor: Callable[[], duckdb.DuckDBPyConnection],
        status: Callable[[], dict[str, Any]],
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self._cursor = cursor
        self._status = status
        self._timeout = timeout

    def run(self, sql: str, params: Sequence[Any] | None = None, max_rows: int | None = None) -> QueryResult:
        """Execute a read-only query on a fresh cursor."""
        conn = self._cursor()
        try:
            return execute(conn, sql, params, max_rows, self._timeout)
        finally:
            conn.close()

    def query(self, sql: str, params: Sequence[Any] | None = None, max_rows: int | None = None) -> dict[str, Any]:
        """See `Reader.query`."""
        return plain(result_json(self.run(sql, params, max_rows)))

    def query_arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        """See `Reader.query_arrow`."""
        return self.run(sql, params).table

    def _records(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        return records(self.run(sql, params))

    def instances(self, workflow: str | None = None, state: str | None = None, limit: int = 100) -> dict[str, Any]:
        """See `Reader.instances`."""
        return plain({"instances": self._records(INSTANCES_SQL, [workflow, state, limit])})

    def instance(self, instance_id: str) -> dict[str, Any] | None:
        """See `Reader.instance`."""
        found = self._records(INSTANCE_SQL, [instance_id])
        if not found:
            return None
        return plain({
            "instance": found[0],
            "tasks": self._records(INSTANCE_TASKS_SQL, [instance_id]),
            "timers": self._records(TIMERS_SQL, [instance_id]),
        })

    def timers(self, instance: str | None = None) -> dict[str, Any]:
        """See `Reader.timers`."""
        return plain({"timers": self._records(TIMERS_SQL, [instance])})

    def stats(self) -> dict[str, Any]:
        """See `Reader.stats`."""
        return plain({
            "workflows": self._records(WORKFLOW_STATS_SQL, []),
            "tasks": self._records(TASK_STATS_SQL, []),
            "projection": self._status(),
        })
