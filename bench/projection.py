"""Projection throughput and lag.

    python bench/projection.py [--events 1000000] [--rate 1000] [--seconds 10]

1. Writes a workload of about `--events` events (the real core folding random commands, see
   tests/projections/workload.py) to an embedded commands and events log.
2. Projects both logs into a fresh DuckDB file and prints events/s.
3. Inserts the same rows (every table's final rows, read back as Arrow) into another fresh
   file with plain `INSERT ... SELECT` from Arrow, no keys, one transaction: DuckDB's raw
   Arrow insert rate, the ceiling for any projector. Prints both and their ratio.
4. Appends events at a steady `--rate` per second for `--seconds` while a projector thread
   follows, and prints the lag from each event's append to the commit that made its row
   visible (p50, p99, max).

Prints figures only; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

# Run as a script from anywhere: the workload generator lives with the tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb
import pyarrow as pa

from easysched_es.core.codec import encode
from easysched_es.log.embedded import EmbeddedStream
from projections.model import ReadModel, quote
from projections.projector import EVENTS, Commit, Projector
from projections.schema import MODELS
from tests.projections.workload import Simulation


def generate(directory: Path, events: int, seed: int) -> tuple[int, int, float]:
    """Write a workload of at least `events` events; return (events, commands, seconds)."""
    t0 = time.perf_counter()
    # Few DEPENDENT workflows: the core's dependency check scans every upstream instance,
    # which would dominate generation time at this size (it does not affect projection).
    sim = Simulation(seed, max_active=40, dependent_share=0.03, record=False)
    count = commands = 0
    with (
        EmbeddedStream(directory / "commands", fsync=False) as cs,
        EmbeddedStream(directory / "events", fsync=False) as es,
    ):
        pending_commands: list[tuple[int, bytes]] = []
        pending_batches: list[bytes] = []

        def flush() -> None:
            # Appending in bulk: the simulation predicted the offsets the log assigns; check.
            offsets = cs.append([payload for _, payload in pending_commands])
            if offsets != [offset for offset, _ in pending_commands]:
                raise RuntimeError("the commands log assigned other offsets than the simulation predicted")
            es.append(pending_batches)
            pending_commands.clear()
            pending_batches.clear()

        queue = sim.definition_commands()
        while count < events:
            command = queue.pop(0) if queue else sim.random_command()
            batch = sim.submit(command)
            pending_commands.append((batch.offset, encode(command)))
            pending_batches.append(encode(batch))
            count += len(batch.events)
            commands += 1
            if len(pending_commands) >= 10_000:
                flush()
        flush()
    return count, commands, time.perf_counter() - t0


def project(directory: Path, db: Path) -> tuple[float, int, int]:
    """Catch a fresh projection up with both logs; return (seconds, events, records)."""
    with (
        EmbeddedStream(directory / "commands", fsync=False) as cs,
        EmbeddedStream(directory / "events", fsync=False) as es,
        Projector(db, es, cs) as projector,
    ):
        t0 = time.perf_counter()
        records = projector.catch_up()
        return time.perf_counter() - t0, projector.events_applied, records


def _plain(model: ReadModel) -> str:
    """The model's table without key or generated columns: nothing but the insert."""
    cols = ", ".join(f"{quote(c.name)} {c.type}" for c in model.columns)
    return f"CREATE TABLE {quote(model.name)} ({cols})"


def raw_insert(db: Path, raw_db: Path) -> tuple[float, int]:
    """Insert every projected table's rows into a fresh file through Arrow; return (seconds, rows)."""
    source = duckdb.connect(str(db), read_only=True)
    tables: dict[str, pa.Table] = {}
    for model in MODELS:
        cols = ", ".join(quote(c.name) for c in model.columns)
        tables[model.name] = source.sql(f"SELECT {cols} FROM {quote(model.name)}").to_arrow_table()
    source.close()
    conn = duckdb.connect(str(raw_db))
    for model in MODELS:
        conn.execute(_plain(model))
    t0 = time.perf_counter()
    conn.execute("BEGIN TRANSACTION")
    for name, table in tables.items():
        conn.register("src", table)
        conn.execute(f"INSERT INTO {quote(name)} SELECT * FROM src")
        conn.unregister("src")
    conn.execute("COMMIT")
    seconds = time.perf_counter() - t0
    conn.close()
    return seconds, sum(t.num_rows for t in tables.values())


def lag(directory: Path, rate: float, seconds: float, seed: int) -> list[float]:
    """Append at `rate` events/s for `seconds` with a projector following; return each event's lag in s."""
    appended: list[tuple[int, float, int]] = []  # (events offset, append time, events in batch)
    lags: list[float] = []
    lock = threading.Lock()
    seen = 0  # index into `appended` of the first batch not yet committed

    def on_commit(commit: Commit) -> None:
        nonlocal seen
        nxt = commit.positions.get((EVENTS, 0))
        if nxt is None:
            return
        with lock:
            while seen < len(appended) and appended[seen][0] < nxt:
                _, at, n = appended[seen]
                lags.extend([commit.committed_at - at] * n)
                seen += 1

    with (
        EmbeddedStream(directory / "commands") as cs,
        EmbeddedStream(directory / "events") as es,
        Projector(directory / "projections.duckdb", es, cs, on_commit=on_commit) as projector,
    ):
        stop = threading.Event()
        thread = threading.Thread(target=projector.run, args=(stop,), name="projector")
        thread.start()
        sim = Simulation(seed, cs, None, max_active=20, dependent_share=0.1)
        sim.define_all()
        start = time.monotonic()
        sent = 0
        try:
            while time.monotonic() - start < seconds:
                batch = sim.submit(sim.random_command())
                (offset,) = es.append([encode(batch)])
                with lock:
                    appended.append((offset, time.monotonic(), len(batch.events)))
                sent += len(batch.events)
                ahead = start + sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with lock:
                    if seen == len(appended):
                        break
                time.sleep(0.01)
        finally:
            stop.set()
            thread.join()
    return lags


def _pct(ordered: list[float], p: float) -> float:
    """The p-th percentile of sorted values (nearest rank)."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s for the lag run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the lag run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, help="work here and keep the generated log for the next run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="easysched-bench-") as tmp:
        root = Path(tmp)
        log_dir = root / "log"
        if args.dir is not None:
            log_dir = args.dir / f"log-{args.events}-{args.seed}"
        if (log_dir / "done").exists():
            print(f"workload: reusing {log_dir}")
        else:
            events, commands, gen_s = generate(log_dir, args.events, args.seed)
            (log_dir / "done").touch()
            print(f"workload: {events:,} events from {commands:,} commands (generated in {gen_s:.1f} s)")

        proj_s, applied, records = project(log_dir, root / "projection.duckdb")
        proj_rate = applied / proj_s
        print(f"projector: {applied:,} events ({records:,} records, both logs) in {proj_s:.2f} s "
              f"= {proj_rate:,.0f} events/s")

        raw_s, rows = raw_insert(root / "projection.duckdb", root / "raw.duckdb")
        raw_rate = applied / raw_s
        print(f"raw Arrow insert of the same {rows:,} rows: {raw_s:.2f} s = {rows / raw_s:,.0f} rows/s "
              f"= {raw_rate:,.0f} events/s")
        print(f"ratio projector / raw insert: {proj_rate / raw_rate:.2f} (target >= 0.25)")

        lags = lag(root / "live", args.rate, args.seconds, args.seed)
        ms = sorted(x * 1000 for x in lags)
        print(f"lag at {args.rate:,.0f} events/s for {args.seconds:.0f} s ({len(ms):,} events): "
              f"p50 {_pct(ms, 50):.1f} ms, p99 {_pct(ms, 99):.1f} ms, max {ms[-1]:.1f} ms (target p99 < 1000 ms)")


if __name__ == "__main__":
    main()
