"""Helpers shared by the projection tests: logs on disk, table dumps, waiting with a deadline."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from easysched_es.core.state import State
from easysched_es.log.embedded import EmbeddedStream
from easysched_es.runtime.embedded import local_run
from projections.model import quote
from projections.schema import MODELS, OFFSETS
from projections.service import ProjectionService
from tests.projections.workload import Simulation

T = TypeVar("T")
DEADLINE_S = 20.0


def wait_for(predicate: Callable[[], T], what: str, timeout: float = DEADLINE_S) -> T:
    """Poll `predicate` until it returns something truthy; fail with `what` at the deadline."""
    return local_run.wait_for(what, predicate, timeout)


@contextmanager
def serving(svc: ProjectionService) -> Iterator[ProjectionService]:
    """Start `svc`, wait until it has caught up, and stop it when the block ends."""
    svc.start()
    try:
        wait_for(lambda: svc.health()["caught_up"], "the service to catch up")
        yield svc
    finally:
        svc.stop()


def write_workload(data_dir: Path, seed: int, commands: int, **sim: Any) -> Simulation:
    """Run a simulation of `commands` random commands into the embedded logs of `data_dir`."""
    with (
        EmbeddedStream(data_dir / "commands", fsync=False) as cs,
        EmbeddedStream(data_dir / "events", fsync=False) as es,
    ):
        simulation = Simulation(seed, cs, es, **sim)
        simulation.run(commands)
        simulation.commands_stream = simulation.events_stream = None
    return simulation


def ms(value: dt.datetime | None) -> int | None:
    """A naive UTC TIMESTAMP from DuckDB as epoch milliseconds."""
    return None if value is None else round(value.replace(tzinfo=dt.UTC).timestamp() * 1000)


def dump(conn: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    """Every projection table, rows sorted, for comparing two projections.

    The offsets' updated_at is wall-clock time, so it is left out.
    """
    out: dict[str, list[tuple[Any, ...]]] = {}
    for model in (*MODELS, OFFSETS):
        cols = [quote(c.name) for c in model.columns if c.name != "updated_at" or model is not OFFSETS]
        rows = conn.execute(f"SELECT {', '.join(cols)} FROM {quote(model.name)}").fetchall()
        out[model.name] = sorted(rows, key=repr)
    return out


def timers_of(state: State) -> set[tuple[str, str, str, int]]:
    """The fold's delay queue as (instance, task, kind, due)."""
    return {(t.instance, t.task, t.kind, t.due) for t in state.queue.entries()}


def timers_table(conn: duckdb.DuckDBPyConnection) -> set[tuple[str, str, str, int]]:
    """The timers table as (instance, task, kind, due)."""
    rows = conn.execute("SELECT instance, task, kind, due FROM timers").fetchall()
    return {(i, t, k, ms(d)) for i, t, k, d in rows}  # type: ignore[misc]
