"""The errors of the projections package; driver errors are translated into these."""

from __future__ import annotations


class ProjectionError(Exception):
    """Something went wrong reading or writing the projection; the message says what to do."""


class ProjectionLockedError(ProjectionError):
    """Another process holds the DuckDB file (DuckDB allows one writer process per file)."""


class QueryError(ProjectionError):
    """A query failed (bad SQL, unknown table, timeout...). Nothing was changed."""


class ReadOnlyError(QueryError):
    """A query would write; queries are read-only."""


class ServiceUnavailable(ProjectionError):
    """The projection service named in service.json does not answer."""
