"""Batching rows per table and bulk-loading them into DuckDB through Arrow, in one transaction.

A `TableBuffer` collects the operations of one transaction for one table and reduces them per
key as they arrive: fragments merge with the columns' policies, a `Delete` drops what came
before it. DuckDB 2.0 keeps the *first* row when one upsert statement holds a key twice, so
the reduction is not an optimisation but what makes the upsert correct.

`Writer.prepare` turns the buffers into Arrow tables and statements (Python work, under the
GIL); `Writer.execute` runs them in one transaction (DuckDB work, which releases the GIL, so
the projector prepares the next transaction meanwhile): a DELETE of removed keys, then one
`INSERT ... SELECT` from a registered Arrow table per table, upserting by key. Rows and the
offsets they cover are committed together or not at all.
"""

from __future__ import annotations

import array
import itertools
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from projections.model import FIRST, Delete, ReadModel, Row, quote

_ARROW_TYPES: dict[str, pa.DataType] = {
    "VARCHAR": pa.string(),
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "BOOLEAN": pa.bool_(),
    "DOUBLE": pa.float64(),
    "TIMESTAMP": pa.timestamp("ms"),
    "JSON": pa.string(),
}
# Arrow string offsets are int32: past this, a column is built as large_string instead.
_MAX_STRING_BYTES = 1 << 30


class TableBuffer:
    """The pending operations on one table, reduced per key (or appended, for append-only tables)."""

    __slots__ = ("_append", "_deleted", "_first", "_key", "_last", "_rows", "model")

    def __init__(self, model: ReadModel) -> None:
        self.model = model
        idx = model.key_index
        self._key = itemgetter(*idx) if idx else None
        non_key = [i for i in range(len(model.columns)) if i not in idx]
        self._first = tuple(i for i in non_key if model.columns[i].merge == FIRST)
        self._last = tuple(i for i in non_key if model.columns[i].merge != FIRST)
        self._rows: dict[Any, Row | list[Any]] = {}
        self._append: list[Row] = []
        self._deleted: dict[Any, tuple[Any, ...]] = {}

    def put(self, op: Row | Delete) -> None:
        """Apply one operation: merge a fragment into the pending row of its key, or delete the key."""
        if type(op) is Delete:
            self.delete(op.key)
            return
        # add() inlined, and `type(op) is` rather than isinstance: this runs for every row
        # of every event (mypy cannot narrow on `type(...) is`, hence the ignores).
        key_of = self._key
        if key_of is None:
            self._append.append(op)  # type: ignore[arg-type]
            return
        key = key_of(op)  # type: ignore[arg-type]
        rows = self._rows
        old = rows.get(key)
        if old is None:
            rows[key] = op  # type: ignore[assignment]
        elif type(old) is list:
            self._merge_into(old, op)  # type: ignore[arg-type]
        else:
            merged = list(old)
            self._merge_into(merged, op)  # type: ignore[arg-type]
            rows[key] = merged

    def add(self, row: Row) -> None:
        """Merge a row fragment (append it, for an append-only table)."""
        self.put(row)

    def delete(self, key: tuple[Any, ...]) -> None:
        """Remove the key: from the table, and any fragment of it seen earlier in this batch."""
        if self._key is None:
            raise TypeError(f"{self.model.name} is append-only; it has no keys to delete")
        lookup = key if len(key) > 1 else key[0]  # itemgetter of one index returns a scalar
        self._rows.pop(lookup, None)
        self._deleted[lookup] = key

    def _merge_into(self, merged: list[Any], new: Row) -> None:
        # Rows arrive as tuples (handlers' output); a key's first merge copies its row into
        # a list owned by the buffer, later merges update that list in place.
        for i in self._last:
            value = new[i]
            if value is not None:
                merged[i] = value
        for i in self._first:
            if merged[i] is None:
                merged[i] = new[i]

    def rows(self) -> list[Row | list[Any]]:
        """The reduced rows to write (append-only: every row, in order)."""
        if self._key is None:
            return list(self._append)
        return list(self._rows.values())

    def deleted_keys(self) -> list[tuple[Any, ...]]:
        """Keys to delete before the rows are upserted."""
        return list(self._deleted.values())

    def __len__(self) -> int:
        return len(self._rows) + len(self._append) + len(self._deleted)

    def clear(self) -> None:
        """Forget everything (after a commit or a rollback)."""
        self._rows.clear()
        self._append.clear()
        self._deleted.clear()


def arrow_table(
    model: ReadModel, rows: Sequence[Sequence[Any]], names: Sequence[str] | None = None,
    notes: list[str] | None = None,
) -> pa.Table:
    """Handler rows (tuples in `model.staged_columns` order) as an Arrow table typed like those columns.

    `names` says which columns the rows hold, in that order, when they are not whole rows
    (the keys to delete). A value the column cannot hold (a time past year 9999, an integer
    out of range) becomes NULL, and `notes` gets a line saying which.
    """
    by_name = {c.name: c for c in model.columns}
    columns = model.staged_columns if names is None else tuple(by_name[n] for n in names)
    # One pass per column: zip(*rows) over a million rows is several times slower.
    arrays = []
    for i, col in enumerate(columns):
        values = list(map(itemgetter(i), rows))
        array, nulled = _arrow_column(col.type, values)
        if nulled and notes is not None:
            notes.append(f"{model.name}.{col.name}: {len(nulled)} value(s) out of range stored as NULL "
                         f"(first: {nulled[0]!r})")
        arrays.append(array)
    return pa.Table.from_arrays(arrays, names=[c.name for c in columns])


# What DuckDB can store: TIMESTAMP (epoch ms here) from year 1 to 9999, BIGINT and INTEGER.
_RANGES: dict[str, tuple[int, int]] = {
    "TIMESTAMP": (-62_135_596_800_000, 253_402_300_799_999),
    "BIGINT": (-(2**63), 2**63 - 1),
    "INTEGER": (-(2**31), 2**31 - 1),
}


def _arrow_column(sql_type: str, values: list[Any]) -> tuple[pa.Array, list[Any]]:
    """The column as Arrow, and the values that had to become NULL (usually none: one fast pass)."""
    if sql_type == "JSON":
        return _json_column(values), []
    bounds = _RANGES.get(sql_type)
    if bounds is None:
        return pa.array(values, _ARROW_TYPES[sql_type]), []
    try:
        ints = pa.array(values, pa.int64())
        low, high = pc.min_max(ints).values()
        if (low.as_py() is None or low.as_py() >= bounds[0]) and (high.as_py() is None or high.as_py() <= bounds[1]):
            return ints.cast(_ARROW_TYPES[sql_type]), []
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
        pass
    lo, hi = bounds
    nulled = [v for v in values if v is not None and not (isinstance(v, int) and lo <= v <= hi)]
    kept = [v if v is None or (isinstance(v, int) and lo <= v <= hi) else None for v in values]
    return pa.array(kept, _ARROW_TYPES[sql_type]), nulled


def _json_column(values: Sequence[bytes | None]) -> pa.Array:
    """Encoded JSON values as a string array, built from one buffer.

    pa.array over a million Python bytes objects costs about 1 us each; joining them and
    handing Arrow the offsets costs a tenth of that, and JSON columns are the widest we write.
    """
    n = len(values)
    has_null = None in values
    parts: list[bytes] = [b"" if v is None else v for v in values]
    data = b"".join(parts)
    if len(data) > _MAX_STRING_BYTES:  # beyond int32 offsets' comfort: the slow, safe way
        return pa.array([None if v is None else v.decode() for v in values], pa.large_string())
    offsets = array.array("i", itertools.accumulate(map(len, parts), initial=0))
    validity = pa.array([v is not None for v in values], pa.bool_()).buffers()[1] if has_null else None
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data), validity)


class _Statements:
    """The SQL one table needs, built once from its model."""

    def __init__(self, model: ReadModel) -> None:
        table = quote(model.name)
        self.stage = f"_stage_{model.name}"
        self.delete_stage = f"_delete_{model.name}"
        cols = ", ".join(quote(c.name) for c in model.columns)
        if model.expand:
            insert = f"INSERT INTO {table} ({cols}) {model.expand.format(stage=quote(self.stage))}"
        else:
            insert = f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {quote(self.stage)}"
        if not model.key:
            self.write = insert
            self.delete = ""
            return
        keys = ", ".join(quote(k) for k in model.key)
        updates = []
        for col in model.columns:
            if col.name in model.key:
                continue
            c = quote(col.name)
            # Unqualified names are the stored row; `excluded` is the incoming fragment.
            if col.merge == FIRST:
                updates.append(f"{c} = coalesce({table}.{c}, excluded.{c})")
            else:
                updates.append(f"{c} = coalesce(excluded.{c}, {table}.{c})")
        action = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
        self.write = f"{insert} ON CONFLICT ({keys}) {action}"
        match = " AND ".join(f"{table}.{quote(k)} = d.{quote(k)}" for k in model.key)
        self.delete = f"DELETE FROM {table} USING {quote(self.delete_stage)} d WHERE {match}"


@dataclass(frozen=True, slots=True)
class Load:
    """One statement of a transaction and the Arrow table it reads, registered as `stage`."""

    stage: str
    table: pa.Table
    statement: str


class Writer:
    """Loads `TableBuffer`s into DuckDB in one transaction per commit, through Arrow."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, models: Sequence[ReadModel]) -> None:
        self._conn = conn
        self._sql = {m.name: _Statements(m) for m in models}
        # What `prepare` stored as NULL because a column could not hold it (taken by the projector).
        self.notes: list[str] = []

    def prepare(self, buffers: Sequence[TableBuffer]) -> list[Load]:
        """The loads of every non-empty buffer, in buffer order; clears the buffers."""
        loads: list[Load] = []
        for buf in buffers:
            if not len(buf):
                continue
            model = buf.model
            sql = self._sql[model.name]
            deleted = buf.deleted_keys()
            if deleted:
                loads.append(Load(sql.delete_stage, arrow_table(model, deleted, model.key, self.notes), sql.delete))
            rows = buf.rows()
            if rows:
                loads.append(Load(sql.stage, arrow_table(model, rows, notes=self.notes), sql.write))
            buf.clear()
        return loads

    def execute(self, loads: Sequence[Load]) -> None:
        """Run the loads in one transaction: all of them are committed, or none.

        The whole transaction is one multi-statement `execute`: DuckDB releases the GIL for
        its length, whereas a call per statement would wait for the GIL between statements
        while the projector maps the next transaction on the other thread.
        """
        conn = self._conn
        # register() rather than a replacement scan of a local variable: the connection
        # runs with enable_external_access=false, which disables those.
        for load in loads:
            conn.register(load.stage, load.table)
        try:
            body = "".join(f"{load.statement};\n" for load in loads)
            conn.execute(f"BEGIN TRANSACTION;\n{body}COMMIT")
        except BaseException:
            with suppress(duckdb.Error):
                conn.execute("ROLLBACK")
            raise
        finally:
            for load in loads:
                conn.unregister(load.stage)

    def commit(self, buffers: Sequence[TableBuffer]) -> None:
        """prepare() then execute(): write every buffer in one transaction."""
        self.execute(self.prepare(buffers))
