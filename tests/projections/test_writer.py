"""The writer: per-key reduction in a buffer, and bulk loads into a real DuckDB in one transaction."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from projections.model import FIRST, Column, Delete, ReadModel
from projections.writer import TableBuffer, Writer, arrow_table

KEYED = ReadModel(
    "t",
    "a test table",
    (
        Column("k", "VARCHAR", "key"),
        Column("state", "VARCHAR", "last non-null wins"),
        Column("started", "BIGINT", "first non-null wins", FIRST),
        Column("doc", "JSON", "a JSON value"),
    ),
    key=("k",),
)
APPEND = ReadModel("log", "append-only", (Column("n", "INTEGER", ""), Column("at", "TIMESTAMP", "")))


def test_fragments_merge_with_the_column_policies() -> None:
    buf = TableBuffer(KEYED)
    buf.put(("a", "DISPATCH", 10, None))
    buf.put(("a", "RUNNING", 20, None))
    buf.put(("a", None, None, b'{"x":1}'))
    buf.put(("a", "SUCCESS", 30, None))
    assert buf.rows() == [["a", "SUCCESS", 10, b'{"x":1}']]


def test_a_delete_drops_earlier_fragments_and_a_later_add_starts_fresh() -> None:
    buf = TableBuffer(KEYED)
    buf.put(("a", "X", 1, None))
    buf.put(Delete(("a",)))
    assert (buf.rows(), buf.deleted_keys()) == ([], [("a",)])
    buf.put(("a", "Y", 2, None))
    assert (buf.rows(), buf.deleted_keys()) == ([("a", "Y", 2, None)], [("a",)])


def test_append_only_keeps_every_row_in_order_and_refuses_deletes() -> None:
    buf = TableBuffer(APPEND)
    buf.put((1, 5))
    buf.put((1, 6))
    assert buf.rows() == [(1, 5), (1, 6)]
    with pytest.raises(TypeError):
        buf.put(Delete((1,)))


def test_json_column_with_nulls_and_timestamps_convert_to_arrow() -> None:
    table = arrow_table(KEYED, [("a", None, 1, b'{"x":1}'), ("b", "S", None, None)])
    assert table.column("doc").to_pylist() == ['{"x":1}', None]
    assert table.schema.field("started").type == pa.int64()
    log = arrow_table(APPEND, [(1, 1_767_225_600_000)])
    assert log.column("at").to_pylist()[0].isoformat() == "2026-01-01T00:00:00"


def _db(tmp_path: Path) -> tuple[duckdb.DuckDBPyConnection, Writer]:
    conn = duckdb.connect(str(tmp_path / "w.duckdb"), config={"enable_external_access": False})
    for model in (KEYED, APPEND):
        conn.execute(model.ddl())
    return conn, Writer(conn, (KEYED, APPEND))


def test_duckdb_keeps_the_first_duplicate_so_the_buffer_must_reduce(tmp_path: Path) -> None:
    # Why the reduction exists: one upsert statement holding a key twice keeps the FIRST row.
    conn, _ = _db(tmp_path)
    conn.register("dup", pa.table({"k": ["a", "a"], "state": ["old", "new"], "started": [1, 2], "doc": [None, None]}))
    conn.execute("INSERT INTO t SELECT * FROM dup ON CONFLICT (k) DO UPDATE SET state = excluded.state")
    assert conn.execute("SELECT state FROM t").fetchall() == [("old",)]


def test_commits_merge_with_stored_rows_across_transactions(tmp_path: Path) -> None:
    conn, writer = _db(tmp_path)
    buf, log = TableBuffer(KEYED), TableBuffer(APPEND)
    buf.put(("a", "DISPATCH", 10, None))
    buf.put(("b", "DISPATCH", 11, b"[1]"))
    log.put((1, 1000))
    writer.commit([buf, log])
    assert len(buf) == len(log) == 0
    buf.put(("a", "SUCCESS", 99, None))  # started stays 10 (FIRST), state moves on (LAST)
    buf.put(Delete(("b",)))
    log.put((2, 2000))
    writer.commit([buf, log])
    assert conn.execute("SELECT * FROM t ORDER BY k").fetchall() == [("a", "SUCCESS", 10, None)]
    assert conn.execute("SELECT n FROM log ORDER BY n").fetchall() == [(1,), (2,)]


def test_a_failed_commit_leaves_nothing(tmp_path: Path) -> None:
    conn, writer = _db(tmp_path)
    buf = TableBuffer(KEYED)
    buf.put(("a", "X", 1, None))
    loads = writer.prepare([buf])
    conn.execute("DROP TABLE log")  # the second statement of the transaction will fail
    log = TableBuffer(APPEND)
    log.put((1, 1))
    loads += writer.prepare([log])
    with pytest.raises(duckdb.Error):
        writer.execute(loads)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
