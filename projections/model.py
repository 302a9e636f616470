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
from typing import Any, Literal, NamedTuple

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


class Source(NamedTuple):
    """Where a record came from: what a handler knows besides the event itself.

    `offset` is the record's offset in its own stream; `command_offset` the offset of the
    command in the commands stream (the same for a commands record); `at` the command's
    time (epoch ms) and `command` its type tag. A NamedTuple: one is made per record, and a
    frozen dataclass costs several times more to build.
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
    `Undecodable`) for models fed by the commands stream; `on_batch` is called once per
    events record with the whole `EventBatch`.

    A model may stage rows of another shape than its table (`stage` columns) and give the
    SELECT that turns the staged rows (`{stage}`) into table rows (`expand`): the raw events
    table stages one row per batch and lets DuckDB unnest the events, which is several
    times faster than building a Python row per event.
    """

    name: str
    doc: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    on_event: Mapping[type, Handler] = field(default_factory=dict)
    on_command: Mapping[type, Handler] = field(default_factory=dict)
    on_batch: Handler | None = None
    generated: tuple[Generated, ...] = ()
    stage: tuple[Column, ...] = ()
    expand: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        names = tuple(c.name for c in self.columns)
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate column names")
        missing = [k for k in self.key if k not in names]
        if missing:
            raise ValueError(f"{self.name}: key columns {missing} are not columns")
        if bool(self.stage) != bool(self.expand) or (self.stage and self.key):
            raise ValueError(f"{self.name}: stage and expand go together, on append-only tables only")

    @property
    def column_names(self) -> tuple[str, ...]:
        """Names of the stored columns, in row order."""
        return tuple(c.name for c in self.columns)

    @property
    def key_index(self) -> tuple[int, ...]:
        """Positions of the key columns in a row."""
        names = self.column_names
        return tuple(names.index(k) for k in self.key)

    @property
    def staged_columns(self) -> tuple[Column, ...]:
        """The columns of the rows handlers produce (the table's, unless the model stages)."""
        return self.stage or self.columns

    def as_dict(self, row: Row) -> dict[str, Any]:
        """A handler's row as {column: value} (for tests and debugging)."""
        names = [c.name for c in self.staged_columns]
        if len(row) != len(names):
            raise ValueError(f"{self.name}: row has {len(row)} values for {len(names)} columns")
        return dict(zip(names, row, strict=True))

    def ddl(self) -> str:
        """The CREATE TABLE statement."""
        parts = [f"{quote(c.name)} {c.type}" for c in self.columns]
        parts += [f"{quote(g.name)} {g.type} GENERATED ALWAYS AS ({g.expression}) VIRTUAL" for g in self.generated]
        if self.key:
            parts.append(f"PRIMARY KEY ({', '.join(quote(k) for k in self.key)})")
        body = ",\n    ".join(parts)
        return f"CREATE TABLE IF NOT EXISTS {quote(self.name)} (\n    {body}\n)"


def fragment_maker(columns: tuple[Column, ...], *names: str) -> Callable[..., Row]:
    """A fast constructor of row fragments: positional values for `names`, None for every other column.

    `fragment_maker(COLUMNS, "instance", "state")("0-1", "KILL")` is a full-width row. The
    function is generated once (its body is a tuple display over argument names and None),
    because fragments are built per event and a generic loop costs several times more.
    """
    index = {c.name: i for i, c in enumerate(columns)}
    unknown = [n for n in names if n not in index]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"fragment_maker: unknown or repeated columns {unknown or list(names)}")
    slot = {index[n]: f"v{i}" for i, n in enumerate(names)}
    args = ", ".join(f"v{i}" for i in range(len(names)))
    body = ", ".join(slot.get(i, "None") for i in range(len(columns)))
    namespace: dict[str, Any] = {}
    exec(f"def make({args}):\n    return ({body},)", namespace)  # only generated identifiers
    make: Callable[..., Row] = namespace["make"]
    make.__doc__ = f"Row fragment with {', '.join(names)}."
    return make


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
