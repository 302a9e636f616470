"""`connect(data_dir)`: read-only SQL over the projection from Python.

    import easysched_es as es
    con = es.connect(".easysched")
    con.sql("SELECT state, count(*) FROM task_instances GROUP BY state").fetchall()

Each `sql()` call asks the running scheduler's projection service if there is one, else
opens the DuckDB file, catches up with the log and queries it; the answer is materialised
as Arrow and returned as a DuckDB relation over it (`.fetchall()`, `.df()`, `.arrow()`,
`.pl()`, ... and further SQL on it with `con.local`). The file is never held between calls,
so a scheduler can start at any time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from projections.client import open_reader


class Connection:
    """Read-only access to the projection of one data directory."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)
        # Answers live in a private in-memory database, where they can be queried further.
        self.local = duckdb.connect(":memory:")

    def sql(self, query: str, params: Sequence[Any] | None = None) -> duckdb.DuckDBPyRelation:
        """Run one read-only statement; raises ReadOnlyError for a statement that writes, QueryError for bad SQL."""
        with open_reader(self.data_dir) as reader:
            table = reader.query_arrow(query, params)
        return self.local.from_arrow(table)

    def arrow(self, query: str, params: Sequence[Any] | None = None) -> pa.Table:
        """The answer of one read-only statement as a pyarrow Table (no pandas needed).

        (`sql(...).df()` needs pandas: `pip install 'easysched-es[pandas]'`.)
        """
        with open_reader(self.data_dir) as reader:
            return reader.query_arrow(query, params)

    def close(self) -> None:
        """Release the in-memory database holding the answers."""
        self.local.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(data_dir: Path | str = ".easysched") -> Connection:
    """Read-only access to the projection of `data_dir` (see the module docstring)."""
    return Connection(data_dir)
