"""Read-model building blocks: columns, a read model, the source of a record, row operations.

A read model is one DuckDB table plus a pure mapping: for each event (or command) a handler
returns a row fragment to upsert, a `Delete` of a key, or None. The writer reduces the
fragments of one transaction per key with the columns' merge policies and bulk-loads them;
nothing in this module touches DuckDB or Arrow, so mappings are tested as plain functions.

Rows are tuples with one value per stored column, in declaration order. Times are epoch
milliseconds (the writer stores them as UTC `TIMESTAMP`), JSON columns hold the encoded
bytes, and None means "this event does not know the value", never "set it to NULL".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

Merge = Literal["last", "first"]
LAST: Merge = "last"
"""A later non-null value replaces the stored one (state, pid, ...)."""
FIRST: Merge = "first"
"""The first non-null value stays (when an attempt started, when a kill was requested, ...)."""

SQL_TYPES = frozenset({"VARCHAR", "BIGINT", "INTEGER", "BOOLEAN", "DOUBLE", "TIMESTAMP", "JSON"})

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Column:
    """One stored column: DuckDB type, how fragments for the same key combine, and its meaning."""

    name: str
    type: str
    doc: str
    merge: Merge = LAST

    def __post_init__(self) -> None:
        if self.type not in SQL_TYPES:
            raise ValueError(f"column {self.name}: type {self.type!r} is not one of {sorted(SQL_TYPES)}")


@dataclass(frozen=True, slots=True)
class Generated:
    """A column DuckDB computes from the stored ones (never written by the projector)."""

    name: str
    type: str
    expression: str
    doc: str


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove the row with this key (key values in the model's key order)."""

    key: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record came from: what a handler knows besides the event itself.

    `offset` is the record's offset in its own stream; `command_offset` the offset of the
    command in the commands stream (the same for a commands record); `at` the command's
    time (epoch ms) and `command` its type tag.
    """

    stream: str
    partition: int
    offset: int
    command_offset: int
    at: int
    command: str


class Undecodable(msgspec.Struct, frozen=True):
    """Stands for a commands-log record that is corrupt or does not decode."""

    reason: str


Op = Row | Delete | None
Handler = Callable[[Source, int, Any], Op]
"""`handler(source, seq, item)`: `seq` is the item's position in its record (0 for commands)."""


@dataclass(frozen=True)
class ReadModel:
    """One table of the projection and the pure mapping that fills it.

    `key` empty means append-only (raw logs); otherwise fragments are upserted by key.
    `on_event` maps event classes to handlers; `on_command` maps command classes (and
    `Undecodable`) for models fed by the commands stream.
    """

    name: str
    doc: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    on_event: Mapping[type, Handler] = field(default_factory=dict)
    on_command: Mapping[type, Handler] = field(default_factory=dict)
    generated: tuple[Generated, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate column names")
        missing = [k for k in self.key if k not in names]
        if missing:
            raise ValueError(f"{self.name}: key columns {missing} are not columns")

    @property
    def column_names(self) -> tuple[str, ...]:
        """Names of the stored columns, in row order."""
        return tuple(c.name for c in self.columns)

    @property
    def key_index(self) -> tuple[int, ...]:
        """Positions of the key columns in a row."""
        names = self.column_names
        return tuple(names.index(k) for k in self.key)

    def as_dict(self, row: Row) -> dict[str, Any]:
        """A row as {column: value} (for tests and debugging)."""
        if len(row) != len(self.columns):
            raise ValueError(f"{self.name}: row has {len(row)} values for {len(self.columns)} columns")
        return dict(zip(self.column_names, row, strict=True))

    def fragment(self, **values: Any) -> Row:
        """A row with the named values and None elsewhere (for the rarer, partial events)."""
        row: list[Any] = [None] * len(self.columns)
        names = self.column_names
        for name, value in values.items():
            row[names.index(name)] = value
        return tuple(row)

    def ddl(self) -> str:
        """The CREATE TABLE statement."""
        parts = [f"{quote(c.name)} {c.type}" for c in self.columns]
        parts += [f"{quote(g.name)} {g.type} GENERATED ALWAYS AS ({g.expression}) VIRTUAL" for g in self.generated]
        if self.key:
            parts.append(f"PRIMARY KEY ({', '.join(quote(k) for k in self.key)})")
        body = ",\n    ".join(parts)
        return f"CREATE TABLE IF NOT EXISTS {quote(self.name)} (\n    {body}\n)"


def quote(identifier: str) -> str:
    """Quote an identifier: some of our column names (partition, time) are SQL keywords."""
    return '"' + identifier.replace('"', '""') + '"'


def json_bytes(value: Any) -> bytes:
    """Encode a value for a JSON column."""
    return _json_encode(value)


_json_encode = msgspec.json.Encoder().encode


def tag_of(cls: type) -> str:
    """The msgspec tag of an event or command class ("task_state", "stop", ...)."""
    tag = cls.__struct_config__.tag  # type: ignore[attr-defined]
    return str(tag)
