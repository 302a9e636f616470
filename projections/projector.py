"""The projector: folds the events log (and the commands log) into the DuckDB tables.

Each step reads what is available from every partition of both streams, maps each record
through the read models into per-table buffers, and commits the rows with the new offsets in
one DuckDB transaction. A crash at any instant leaves the file at the last commit, and the
next start resumes from the offsets stored there: nothing is lost or counted twice. Records
below the stored offset (a re-delivery) and batches whose command offset does not grow (a
repeated batch) are skipped.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import msgspec
from tqdm import tqdm

from easysched_es.core.codec import decode_batch, decode_command
from easysched_es.log.base import Record, Stream
from projections.errors import ProjectionError, ProjectionLockedError
from projections.model import Handler, ReadModel, Source, Undecodable, tag_of
from projections.schema import ALL_VIEWS, META_DDL, META_TABLE, MODELS, OFFSETS, fingerprint
from projections.writer import TableBuffer, Writer

log = logging.getLogger(__name__)

EVENTS = "events"
COMMANDS = "commands"
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)
# The run loop applies at most this many records per transaction, so it notices `stop` and
# commits often during a long catch-up; catch_up() without a limit keeps going until done.
_RUN_CHUNK = 20_000


@dataclass(slots=True)
class Position:
    """How far one stream partition has been applied (mirrors a projection_offsets row)."""

    next_offset: int = 0
    last_command_offset: int = -1
    records: int = 0


@dataclass(frozen=True, slots=True)
class Commit:
    """What one transaction applied: passed to `on_commit` listeners after it is durable."""

    records: int
    events: int
    positions: dict[tuple[str, int], int]
    committed_at: float = field(default_factory=time.monotonic)


def open_database(db_path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open the projection file for writing, translating DuckDB's lock error into ours.

    External access is off: queries (which run on cursors of this connection, possibly sent
    over HTTP) can read the projection but no file, URL or extension on the machine.
    """
    try:
        return duckdb.connect(str(db_path), config={"enable_external_access": False})
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" not in text.lower():
            raise ProjectionError(f"cannot open {db_path}: {text}") from exc
        pid = re.search(r"PID (\d+)", text)
        holder = f"process {pid.group(1)}" if pid else "another process"
        raise ProjectionLockedError(
            f"{db_path} is held by {holder}: DuckDB allows one process per file. If it is the "
            "scheduler (`easysched run`), query through it: the CLI does so when its service is up"
        ) from exc


class Projector:
    """Folds `events` (and `commands`, if given) into the DuckDB file at `db_path`.

    Thread-safe: `catch_up`, `rebuild` and `run` serialise on an internal lock; `cursor()`
    gives readers their own connection to the same database at any time.
    """

    def __init__(
        self,
        db_path: str | Path,
        events: Stream,
        commands: Stream | None = None,
        *,
        read_bytes: int = 4 << 20,
        on_commit: Callable[[Commit], None] | None = None,
    ) -> None:
        self.db_path = db_path
        self._streams: list[tuple[str, Stream]] = [(EVENTS, events)]
        if commands is not None:
            self._streams.append((COMMANDS, commands))
        self._read_bytes = read_bytes
        self._on_commit = on_commit
        self._lock = threading.RLock()
        self._cursor_lock = threading.Lock()
        self._root = open_database(db_path)
        # Writes go through their own connection; the root only hands out cursors, so a
        # reader never touches the connection in the middle of a write transaction.
        self._conn = self._root.cursor()
        self._buffers = {m.name: TableBuffer(m) for m in (*MODELS, OFFSETS)}
        self._event_dispatch = _dispatch(MODELS, "on_event", self._buffers)
        self._command_dispatch = _dispatch(MODELS, "on_command", self._buffers)
        self._writer = Writer(self._conn, (*MODELS, OFFSETS))
        self._positions: dict[tuple[str, int], Position] = {}
        self.commits = 0
        self.events_applied = 0
        self.skipped = 0
        self.last_commit_wall: float | None = None
        self.last_error: str | None = None
        self._closed = False
        try:
            self._open_schema()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------------- schema

    def _open_schema(self) -> None:
        conn = self._conn
        conn.execute(META_DDL)
        row = conn.execute(f"SELECT value FROM {META_TABLE} WHERE key = 'schema'").fetchone()
        expected = fingerprint()
        if row is None or row[0] != expected:
            existing = {r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
            if existing & {m.name for m in (*MODELS, OFFSETS)}:
                log.warning(
                    "the projection tables in %s were made by another version (schema %s, expected %s); "
                    "rebuilding them from the log", self.db_path, row[0] if row else "unknown", expected,
                )
            self._reset()
        else:
            self._create_views()
        self._load_positions()

    def _reset(self) -> None:
        """Drop and recreate every table (empty, offsets at the start of the log)."""
        conn = self._conn
        conn.execute("BEGIN TRANSACTION")
        try:
            for view in ALL_VIEWS:
                conn.execute(f"DROP VIEW IF EXISTS {view.name}")
            for model in (*MODELS, OFFSETS):
                conn.execute(f'DROP TABLE IF EXISTS "{model.name}"')
                conn.execute(model.ddl())
            conn.execute(
                f"INSERT OR REPLACE INTO {META_TABLE} VALUES ('schema', ?)", [fingerprint()]
            )
            for view in ALL_VIEWS:
                conn.execute(view.ddl())
            conn.execute("COMMIT")
        except BaseException:
            with suppress(duckdb.Error):
                conn.execute("ROLLBACK")
            raise
        for buf in self._buffers.values():
            buf.clear()
        self._positions = {}

    def _create_views(self) -> None:
        for view in ALL_VIEWS:
            self._conn.execute(view.ddl())

    def _load_positions(self) -> None:
        rows = self._conn.execute(
            "SELECT stream, partition, next_offset, last_command_offset, records FROM projection_offsets"
        ).fetchall()
        self._positions = {(s, p): Position(n, c, r) for s, p, n, c, r in rows}

    # ------------------------------------------------------------------------- folding

    def catch_up(self, max_batches: int | None = None, progress: bool = False) -> int:
        """Apply what the streams hold now; return how many records (event batches and commands) were applied.

        `max_batches` bounds the records applied by this call. `progress` shows a tqdm bar on
        stderr. Each transaction covers up to `read_bytes` per stream partition.
        """
        with self._lock:
            return self._catch_up(max_batches, progress, None)

    def rebuild(self, progress: bool = True) -> int:
        """Drop every table and refold both streams from their start; return the records applied."""
        with self._lock:
            self._check_open()
            self._reset()
            return self._catch_up(None, progress, None)

    def run(self, stop: threading.Event, poll_interval: float = 0.05) -> None:
        """Follow the streams until `stop` is set: the body of the projector thread.

        Errors are logged and retried with a growing pause (up to 5 s), so a transient
        failure (disk full, a log being repaired) does not end the projection.
        """
        pause = poll_interval
        while not stop.is_set():
            try:
                with self._lock:
                    applied = self._catch_up(_RUN_CHUNK, False, stop)
                self.last_error = None
                pause = poll_interval
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("projector step failed; retrying in %.1f s", pause)
                stop.wait(pause)
                pause = min(pause * 2, 5.0)
                continue
            if applied < _RUN_CHUNK:
                stop.wait(poll_interval)

    def _catch_up(self, limit: int | None, progress: bool, stop: threading.Event | None) -> int:
        self._check_open()
        total = 0
        with self._progress(progress) as bar:
            while limit is None or total < limit:
                if stop is not None and stop.is_set():
                    break
                applied = self._step(None if limit is None else limit - total, bar)
                if applied == 0:
                    break
                total += applied
        return total

    def _step(self, limit: int | None, bar: tqdm[Any] | None) -> int:
        """Read, map and commit one transaction's worth of records; return the records applied."""
        moved: dict[tuple[str, int], Position] = {}
        records = events = 0
        for name, stream in self._streams:
            for partition in range(stream.partitions):
                if limit is not None and records >= limit:
                    break
                key = (name, partition)
                pos = self._positions.get(key) or Position()
                batch = stream.read(pos.next_offset, partition, self._read_bytes)
                if not batch:
                    continue
                room = None if limit is None else limit - records
                new = Position(pos.next_offset, pos.last_command_offset, pos.records)
                if name == EVENTS:
                    n, ev = self._apply_events(batch, partition, new, room)
                else:
                    n, ev = self._apply_commands(batch, partition, new, room), 0
                if new.next_offset != pos.next_offset:
                    moved[key] = new
                    if bar is not None:
                        bar.update(new.next_offset - pos.next_offset)
                records += n
                events += ev
        if not moved:
            return 0
        now_ms = int(time.time() * 1000)
        offsets = self._buffers[OFFSETS.name]
        for (name, partition), pos in moved.items():
            offsets.add((name, partition, pos.next_offset, pos.last_command_offset, pos.records, now_ms))
        try:
            self._writer.commit(list(self._buffers.values()))
        except BaseException:
            for buf in self._buffers.values():
                buf.clear()
            raise
        self._positions.update(moved)
        self.commits += 1
        self.events_applied += events
        self.last_commit_wall = time.time()
        if bar is not None:
            bar.set_postfix_str(f"{sum(p.records for p in self._positions.values())} records", refresh=False)
        if self._on_commit is not None:
            self._on_commit(Commit(records, events, {k: p.next_offset for k, p in moved.items()}))
        # A step that only skipped records still moved the offsets; report it as progress.
        return max(records, 1)

    def _apply_events(self, batch: list[Record], partition: int, pos: Position, room: int | None) -> tuple[int, int]:
        dispatch = self._event_dispatch
        applied = events = 0
        for rec in batch:
            if rec.offset < pos.next_offset:
                continue  # re-delivered: already in the tables
            if room is not None and applied >= room:
                break
            pos.next_offset = rec.next
            pos.records += 1
            applied += 1
            if rec.corrupt is not None:
                self._skip(EVENTS, partition, rec.offset, rec.corrupt)
                continue
            try:
                eb = decode_batch(rec.payload)
            except _DECODE_ERRORS as exc:
                self._skip(EVENTS, partition, rec.offset, f"undecodable event batch: {exc}")
                continue
            if eb.offset <= pos.last_command_offset:
                self._skip(
                    EVENTS, partition, rec.offset,
                    f"repeated batch of command {eb.offset} (already applied up to {pos.last_command_offset})",
                )
                continue
            pos.last_command_offset = eb.offset
            src = Source(EVENTS, partition, rec.offset, eb.offset, eb.at, eb.command)
            for seq, ev in enumerate(eb.events):
                for put, handler in dispatch.get(type(ev), ()):
                    op = handler(src, seq, ev)
                    if op is not None:
                        put(op)
            events += len(eb.events)
        return applied, events

    def _apply_commands(self, batch: list[Record], partition: int, pos: Position, room: int | None) -> int:
        dispatch = self._command_dispatch
        applied = 0
        for rec in batch:
            if rec.offset < pos.next_offset:
                continue
            if room is not None and applied >= room:
                break
            pos.next_offset = rec.next
            pos.last_command_offset = rec.offset
            pos.records += 1
            applied += 1
            item: Any
            at, tag = 0, "?"
            if rec.corrupt is not None:
                item = Undecodable(rec.corrupt)
            else:
                try:
                    item = decode_command(rec.payload)
                    at, tag = item.at, _COMMAND_TAGS[type(item)]
                except _DECODE_ERRORS as exc:
                    item = Undecodable(f"undecodable command: {exc}")
            src = Source(COMMANDS, partition, rec.offset, rec.offset, at, tag)
            for put, handler in dispatch.get(type(item), ()):
                op = handler(src, 0, item)
                if op is not None:
                    put(op)
        return applied

    def _skip(self, stream: str, partition: int, offset: int, why: str) -> None:
        # Not silent: a skipped events record means facts missing from the tables.
        self.skipped += 1
        log.error("projection skips %s record at partition %d offset %d: %s", stream, partition, offset, why)

    @contextmanager
    def _progress(self, enabled: bool) -> Iterator[tqdm[Any] | None]:
        if not enabled:
            yield None
            return
        total = 0
        for name, stream in self._streams:
            for partition in range(stream.partitions):
                pos = self._positions.get((name, partition)) or Position()
                total += max(stream.end(partition) - pos.next_offset, 0)
        # Offsets are log positions (bytes in the embedded log), so the bar counts those.
        bar = tqdm(total=total, desc="projecting", unit="B", unit_scale=True, file=sys.stderr, leave=True)
        try:
            yield bar
        finally:
            bar.close()

    # ------------------------------------------------------------------------- reading

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the same database for one reader thread (close it when done)."""
        with self._cursor_lock:
            self._check_open()
            return self._root.cursor()

    def status(self) -> dict[str, Any]:
        """How far the projection is: per stream partition, its offset, the log end and what is pending."""
        streams = []
        with self._lock:
            positions = {k: Position(p.next_offset, p.last_command_offset, p.records) for k, p in self._positions.items()}
        for name, stream in self._streams:
            for partition in range(stream.partitions):
                pos = positions.get((name, partition)) or Position()
                end = stream.end(partition)
                streams.append({
                    "stream": name, "partition": partition, "next_offset": pos.next_offset,
                    "end_offset": end, "pending": max(end - pos.next_offset, 0), "records": pos.records,
                })
        return {
            "caught_up": all(s["pending"] == 0 for s in streams),
            "streams": streams,
            "commits": self.commits,
            "events_applied": self.events_applied,
            "skipped_records": self.skipped,
            "last_commit_at": self.last_commit_wall,
            "last_error": self.last_error,
        }

    def close(self) -> None:
        """Close the database (the streams belong to the caller). Idempotent."""
        with self._lock, self._cursor_lock:
            if self._closed:
                return
            self._closed = True
            for conn in (getattr(self, "_conn", None), self._root):
                if conn is not None:
                    with suppress(duckdb.Error):
                        conn.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ProjectionError(f"the projector of {self.db_path} is closed")

    def __enter__(self) -> Projector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_COMMAND_TAGS: dict[type, str] = {}


def _dispatch(
    models: tuple[ReadModel, ...], attr: str, buffers: dict[str, TableBuffer]
) -> dict[type, tuple[tuple[Callable[[Any], None], Handler], ...]]:
    """For each event (or command) class, the (buffer.put, handler) pairs of every model that maps it."""
    table: dict[type, list[tuple[Callable[[Any], None], Handler]]] = {}
    for model in models:
        for cls, handler in getattr(model, attr).items():
            table.setdefault(cls, []).append((buffers[model.name].put, handler))
    return {cls: tuple(pairs) for cls, pairs in table.items()}


def _command_tags() -> dict[type, str]:
    from typing import get_args

    from easysched_es.core.commands import Command

    return {cls: tag_of(cls) for cls in get_args(Command)}


_COMMAND_TAGS.update(_command_tags())
