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
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import duckdb
import msgspec
from tqdm import tqdm

from easysched_es.core.codec import decode_batch, decode_command
from easysched_es.core.commands import Command
from easysched_es.debug.positions import first_offset
from easysched_es.log.base import LogError, Record, Stream
from easysched_es.runtime.clock import wall_ms
from projections.errors import ProjectionError, ProjectionLockedError
from projections.model import Handler, ReadModel, Source, Undecodable, tag_of
from projections.schema import ALL_VIEWS, META_DDL, META_TABLE, MODELS, NOTES, OFFSETS, TABLES, fingerprint
from projections.writer import Load, TableBuffer, Writer

log = logging.getLogger(__name__)

EVENTS = "events"
COMMANDS = "commands"
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)
# DuckDB checkpoints when the WAL passes a threshold, and a big commit checkpoints instead of
# writing the WAL; a checkpoint rewrites the key indexes. Following the log, the default 16 MB
# means one every minute or so at 1,000 events/s. Catching up a backlog, it meant one every
# commit or two, which tripled the catch-up time: there the threshold is raised and the
# projector checkpoints once at the end. A crash mid-catch-up replays a longer WAL on restart.
CHECKPOINT_THRESHOLD = "16MB"
_BULK_CHECKPOINT_THRESHOLD = "1GB"
_COMMAND_TAGS = {cls: tag_of(cls) for cls in get_args(Command)}


@dataclass(slots=True)
class Position:
    """How far one stream partition has been applied (mirrors a projection_offsets row)."""

    next_offset: int = 0
    last_command_offset: int = -1
    records: int = 0


@dataclass(frozen=True, slots=True)
class _Chunk:
    """One transaction's worth of mapped records, ready to execute."""

    loads: list[Load]
    moved: dict[tuple[str, int], Position]
    records: int
    events: int
    full: bool  # a read came back (nearly) as big as allowed: there is a backlog


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
        conn = duckdb.connect(str(db_path), config={"enable_external_access": False})
    except duckdb.Error as exc:
        text = str(exc)
        if not isinstance(exc, duckdb.IOException) or "lock" not in text.lower():
            raise ProjectionError(
                f"cannot open {db_path}: {text}. The file only holds what the log says: if it is damaged or "
                "from another DuckDB version, delete it and it is rebuilt from the log"
            ) from exc
        pid = re.search(r"PID (\d+)", text)
        holder = f"process {pid.group(1)}" if pid else "another process"
        raise ProjectionLockedError(
            f"{db_path} is held by {holder}: DuckDB allows one process per file. If it is the "
            "scheduler (`easysched run`), query through it: the CLI does so when its service is up"
        ) from exc
    conn.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
    return conn


class Projector:
    """Folds `events` (and `commands`, if given) into the DuckDB file at `db_path`.

    `read_bytes` bounds what one transaction reads from each stream partition (memory versus
    fewer, larger commits while catching up). `on_commit` is called with a `Commit` after
    each transaction is durable (the benchmark measures lag with it).

    Thread-safe: `catch_up`, `rebuild` and `run` serialise on an internal lock; `cursor()`
    gives readers their own connection to the same database at any time. One projector per
    file: a second one, in this process or another, gets ProjectionLockedError.
    """

    def __init__(
        self,
        db_path: str | Path,
        events: Stream,
        commands: Stream | None = None,
        *,
        read_bytes: int = 8 << 20,
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
        self._claim = _claim(db_path)
        try:
            self._root = open_database(db_path)
        except BaseException:
            _release(self._claim)
            raise
        # Writes go through their own connection; the root only hands out cursors, so a
        # reader never touches the connection in the middle of a write transaction.
        self._conn = self._root.cursor()
        self._buffers = {m.name: TableBuffer(m) for m in (*MODELS, OFFSETS)}
        self._notes = TableBuffer(NOTES)
        self._event_dispatch = _dispatch(MODELS, "on_event", self._buffers)
        self._command_dispatch = _dispatch(MODELS, "on_command", self._buffers)
        self._writer = Writer(self._conn, TABLES)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="projection-commit")
        self._inflight: Future[None] | None = None
        self._batch_handlers = tuple((self._buffers[m.name].put, m.on_batch) for m in MODELS if m.on_batch)
        self._positions: dict[tuple[str, int], Position] = {}
        # The log's ends as the folding thread last saw them, and for each stream partition the
        # offset up to which everything committed is applied. Kafka's transaction markers take
        # offsets but are no records: a read that finds nothing at our position proves that the
        # end seen before it holds no record for us, so it counts as applied. `status` reads
        # only these, never the log: /health answers at once whatever the broker does.
        self._ends: dict[tuple[str, int], int] = {}
        self._applied_to: dict[tuple[str, int], int] = {}
        self._ends_at = 0.0
        self.commits = 0
        self.events_applied = 0
        self.skipped = 0
        self.last_commit_wall: float | None = None
        self.last_error: str | None = None
        self.value_notes = 0
        self.last_note: str | None = None
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
            if existing & {m.name for m in TABLES}:
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
            for model in TABLES:
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
        self._ends, self._applied_to, self._ends_at = {}, {}, 0.0

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
            return self._catch_up(max_batches, progress, None, delay=1.0)

    def rebuild(self, progress: bool = True) -> int:
        """Drop every table and refold both streams from their start; return the records applied."""
        with self._lock:
            self._check_open()
            self._reset()
            return self._catch_up(None, progress, None, delay=0.0)

    def run(self, stop: threading.Event, poll_interval: float = 0.05) -> None:
        """Follow the streams until `stop` is set: the body of the projector thread.

        Catches up with whatever is there (checking `stop` between transactions), then polls
        every `poll_interval` seconds. Errors are logged and retried with a growing pause (up
        to 5 s), so a transient failure (disk full, a log being repaired) does not end the
        projection; `last_error` says what went wrong meanwhile.
        """
        pause = poll_interval
        while not stop.is_set():
            try:
                with self._lock:
                    self._catch_up(None, False, stop)
                self.last_error = None
                pause = poll_interval
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("projector step failed; retrying in %.1f s", pause)
                stop.wait(pause)
                pause = min(pause * 2, 5.0)
                continue
            stop.wait(poll_interval)

    def _catch_up(self, limit: int | None, progress: bool, stop: threading.Event | None, delay: float = 0.0) -> int:
        """Read and map transaction k+1 while transaction k commits on the writer thread.

        DuckDB releases the GIL while it loads and commits, so the two overlap; offsets
        advance in memory only once their transaction is committed, and a failed commit
        discards what was mapped after it.
        """
        self._check_open()
        total = 0
        ends = self._observe_ends()
        ahead = dict(self._positions)  # as far as read: committed or in flight
        pending: tuple[Future[None], _Chunk] | None = None
        bulk = False
        with self._progress(progress, delay) as bar:
            try:
                while limit is None or total < limit:
                    if stop is not None and stop.is_set():
                        break
                    chunk = self._read(ahead, None if limit is None else limit - total)
                    if pending is not None:
                        previous, pending = pending, None
                        self._complete(*previous, bar)
                    if chunk is None:
                        break
                    if chunk.full and not bulk:
                        # A full read means a backlog (a start, a rebuild): checkpoint once at
                        # the end rather than every few commits. Nothing is in flight here.
                        self._conn.execute(f"SET checkpoint_threshold = '{_BULK_CHECKPOINT_THRESHOLD}'")
                        bulk = True
                    ahead.update(chunk.moved)
                    total += chunk.records
                    pending = (self._pool.submit(self._writer.execute, chunk.loads), chunk)
                    self._inflight = pending[0]
                if pending is not None:
                    previous, pending = pending, None
                    self._complete(*previous, bar)
                if bulk:
                    self._conn.execute("CHECKPOINT")
            finally:
                if pending is not None:
                    # Reading failed while a commit was in flight: let it finish before the
                    # connection is used again; the reading error is the one to report.
                    try:
                        self._complete(*pending, bar)
                    except Exception:
                        log.exception("projection commit failed while handling another error")
                if bulk:
                    with suppress(duckdb.Error):
                        self._conn.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
        if total == 0 and limit is None and not (stop is not None and stop.is_set()):
            # Every partition was read at its position after `ends` was taken, and held nothing.
            self._applied_to = dict(ends)
        return total

    def _observe_ends(self, every: float = 0.25) -> dict[tuple[str, int], int]:
        """The streams' ends (asked of the log at most every `every` seconds; cached otherwise)."""
        now = time.monotonic()
        if self._ends and now - self._ends_at < every:
            return self._ends
        ends = {(name, partition): stream.end(partition)
                for name, stream in self._streams for partition in range(stream.partitions)}
        self._ends, self._ends_at = ends, now
        return ends

    def _read_from(self, stream: Stream, key: tuple[str, int], pos: Position) -> list[Record]:
        """The next records of one stream partition from `pos`.

        When retention (`easysched gc`) deleted the log below `pos`, for a rebuild or a projector
        that lagged behind, the projection goes on from where the stream now starts and says so
        (`last_note`), rather than stalling on a position that no longer exists.
        """
        try:
            return stream.read(pos.next_offset, key[1], self._read_bytes)
        except LogError:
            low = first_offset(stream, key[1])
            if pos.next_offset >= low:
                raise
        self.last_note = (f"{key[0]} partition {key[1]}: retention deleted the log before offset {low}; "
                          f"the projection holds what came after it")
        log.warning("%s", self.last_note)
        pos.next_offset = low
        return stream.read(low, key[1], self._read_bytes)

    def _read(self, ahead: dict[tuple[str, int], Position], limit: int | None) -> _Chunk | None:
        """Read and map one transaction's worth of records from the positions in `ahead`."""
        moved: dict[tuple[str, int], Position] = {}
        records = events = 0
        full = False
        for name, stream in self._streams:
            prefetch = getattr(stream, "prefetch", None)
            if callable(prefetch):  # Kafka (log/kafka_reader.py): fetch every partition side by side
                prefetch({p: (ahead.get((name, p)) or Position()).next_offset for p in range(stream.partitions)})
            for partition in range(stream.partitions):
                if limit is not None and records >= limit:
                    break
                key = (name, partition)
                pos = ahead.get(key) or Position()
                batch = self._read_from(stream, key, pos)
                if not batch:
                    continue
                full = full or sum(len(r.payload) for r in batch) >= self._read_bytes // 2
                room = None if limit is None else limit - records
                new = Position(pos.next_offset, pos.last_command_offset, pos.records)
                if name == EVENTS:
                    n, ev = self._apply_events(batch, partition, new, room)
                else:
                    n, ev = self._apply_commands(batch, partition, new, room), 0
                if new.next_offset != pos.next_offset:
                    moved[key] = new
                records += n
                events += ev
        if not moved:
            return None
        now_ms = wall_ms()
        offsets = self._buffers[OFFSETS.name]
        for (name, partition), pos in moved.items():
            offsets.add((name, partition, pos.next_offset, pos.last_command_offset, pos.records, now_ms))
        try:
            loads = self._writer.prepare(list(self._buffers.values()))
        finally:
            for buf in self._buffers.values():
                buf.clear()
        if self._writer.notes:
            # Never stall on a value: it is stored as NULL, and said so here, in status() and in
            # a projection_notes row written in the same transaction.
            read = ", ".join(f"{name}/{partition} {(ahead.get((name, partition)) or Position()).next_offset}"
                             f"..{pos.next_offset}" for (name, partition), pos in moved.items())
            for note in self._writer.notes:
                log.warning("projection: %s (read %s)", note, read)
                self._notes.add((now_ms, read, note))
            self.value_notes += len(self._writer.notes)
            self.last_note = self._writer.notes[-1]
            self._writer.notes.clear()
            loads += self._writer.prepare([self._notes])
        return _Chunk(loads, moved, records, events, full)

    def _complete(self, future: Future[None], chunk: _Chunk, bar: tqdm[Any] | None) -> None:
        """Wait for a chunk's commit; once it is durable, advance the committed positions."""
        future.result()
        before = {k: (self._positions.get(k) or Position()).next_offset for k in chunk.moved}
        self._positions.update(chunk.moved)
        self.commits += 1
        self.events_applied += chunk.events
        self.last_commit_wall = time.time()
        if bar is not None:
            bar.update(sum(p.next_offset - before[k] for k, p in chunk.moved.items()))
            bar.set_postfix_str(f"{sum(p.records for p in self._positions.values())} records", refresh=False)
        if self._on_commit is not None:
            self._on_commit(Commit(chunk.records, chunk.events, {k: p.next_offset for k, p in chunk.moved.items()}))

    def _apply_events(self, batch: list[Record], partition: int, pos: Position, room: int | None) -> tuple[int, int]:
        dispatch = self._event_dispatch
        batch_handlers = self._batch_handlers
        applied = events = 0
        for rec in batch:
            if rec.offset < pos.next_offset:
                continue  # re-delivered: already in the tables
            if room is not None and applied >= room:
                break
            if not applied & 63 and self._committing():
                # Hand the GIL over now and then: the commit thread needs it for a moment
                # before and after its DuckDB work and would otherwise wait a whole switch
                # interval (5 ms) each time.
                time.sleep(0)
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
            for put_batch, on_batch in batch_handlers:
                staged = on_batch(src, 0, eb)
                if staged is not None:
                    put_batch(staged)
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
            if not applied & 63 and self._committing():
                time.sleep(0)  # see _apply_events
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

    def _committing(self) -> bool:
        inflight = self._inflight
        return inflight is not None and not inflight.done()

    def _skip(self, stream: str, partition: int, offset: int, why: str) -> None:
        # Not silent: a skipped events record means facts missing from the tables.
        self.skipped += 1
        log.error("projection skips %s record at partition %d offset %d: %s", stream, partition, offset, why)

    @contextmanager
    def _progress(self, enabled: bool, delay: float) -> Iterator[tqdm[Any] | None]:
        if not enabled:
            yield None
            return
        total = 0
        for name, stream in self._streams:
            for partition in range(stream.partitions):
                pos = self._positions.get((name, partition)) or Position()
                total += max(stream.end(partition) - pos.next_offset, 0)
        # Offsets are log positions (bytes in the embedded log), so the bar counts those.
        # `delay`: a catch-up of a few records shows no bar at all.
        bar = tqdm(total=total, desc="projecting", unit="B", unit_scale=True, file=sys.stderr, delay=delay)
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
        # No lock: the projector thread holds it through a whole catch-up. Committed
        # positions and the observed ends are replaced, never changed in place, so copies are
        # consistent. Nothing here asks the log (see `_ends`).
        positions, ends, applied_to = dict(self._positions), self._ends, self._applied_to
        for name, stream in self._streams:
            for partition in range(stream.partitions):
                key = (name, partition)
                pos = positions.get(key) or Position()
                end = ends.get(key)
                done = max(pos.next_offset, applied_to.get(key, 0))
                streams.append({
                    "stream": name, "partition": partition, "next_offset": pos.next_offset,
                    "end_offset": end, "pending": 0 if end is None else max(end - done, 0),
                    "records": pos.records,
                })
        return {
            "caught_up": all(s["end_offset"] is not None and s["pending"] == 0 for s in streams),
            "ends_observed_at": None if not ends else time.time() - (time.monotonic() - self._ends_at),
            "streams": streams,
            "commits": self.commits,
            "events_applied": self.events_applied,
            "skipped_records": self.skipped,
            "last_commit_at": self.last_commit_wall,
            "last_error": self.last_error,
            "value_notes": self.value_notes,
            "last_note": self.last_note,
        }

    def close(self) -> None:
        """Close the database (the streams belong to the caller). Idempotent."""
        with self._lock, self._cursor_lock:
            if self._closed:
                return
            self._closed = True
            self._pool.shutdown(wait=True)
            for conn in (getattr(self, "_conn", None), self._root):
                if conn is not None:
                    with suppress(duckdb.Error):
                        conn.close()
            _release(self._claim)

    def _check_open(self) -> None:
        if self._closed:
            raise ProjectionError(f"the projector of {self.db_path} is closed")

    def __enter__(self) -> Projector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# DuckDB's file lock keeps other processes out, but a second connect() to the same path in
# this process silently shares the open database: two projectors would both write it.
_open_files: set[str] = set()
_open_files_lock = threading.Lock()


def _claim(db_path: str | Path) -> str | None:
    if str(db_path) == ":memory:":
        return None
    key = str(Path(db_path).resolve())
    with _open_files_lock:
        if key in _open_files:
            raise ProjectionLockedError(f"{db_path} is already open in this process by another projector")
        _open_files.add(key)
    return key


def _release(key: str | None) -> None:
    if key is not None:
        with _open_files_lock:
            _open_files.discard(key)


def _dispatch(
    models: tuple[ReadModel, ...], attr: str, buffers: dict[str, TableBuffer]
) -> dict[type, tuple[tuple[Callable[[Any], None], Handler], ...]]:
    """For each event (or command) class, the (buffer.put, handler) pairs of every model that maps it."""
    table: dict[type, list[tuple[Callable[[Any], None], Handler]]] = {}
    for model in models:
        for cls, handler in getattr(model, attr).items():
            table.setdefault(cls, []).append((buffers[model.name].put, handler))
    return {cls: tuple(pairs) for cls, pairs in table.items()}
