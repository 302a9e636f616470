"""The projector on real DuckDB files and embedded logs written by the real core."""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from easysched_es.core import commands as c
from easysched_es.core.codec import encode
from easysched_es.core.state import DISPATCH, RUNNING, TASK_FINAL, State
from easysched_es.log.base import Record, Stream
from easysched_es.log.embedded import EmbeddedStream
from projections.projector import Projector
from projections.schema import META_TABLE
from tests.projections.helpers import dump, ms, timers_of, timers_table, wait_for, write_workload
from tests.projections.workload import T0, Simulation


def open_logs(data_dir: Path) -> tuple[EmbeddedStream, EmbeddedStream]:
    return EmbeddedStream(data_dir / "events", fsync=False), EmbeddedStream(data_dir / "commands", fsync=False)


def project(data_dir: Path, db: Path, **kw: Any) -> dict[str, list[tuple[Any, ...]]]:
    """A clean projection of the logs of `data_dir` into `db`, dumped."""
    events, commands = open_logs(data_dir)
    with events, commands, Projector(db, events, commands, **kw) as projector:
        projector.catch_up()
        conn = projector.cursor()
        try:
            return dump(conn)
        finally:
            conn.close()


# ---------------------------------------------------------------------------- a recorded scenario


def scenario(data_dir: Path) -> tuple[Simulation, dict[str, str]]:
    """A retry, a stop with a kill the worker confirms later, and a DEPENDENT stopped while it waits."""
    events, commands = open_logs(data_dir)
    sim = Simulation(0, commands, events)
    run = sim.submit
    sim.define_all()
    etl = run(c.StartWorkflow(at=T0 + 1000, workflow="etl_daily")).events[0].instance  # type: ignore[union-attr]
    run(c.TaskStarted(at=T0 + 2000, instance=etl, task="extract", attempt=1, pid=11, worker="w1"))
    run(c.TaskFinished(at=T0 + 5000, instance=etl, task="extract", attempt=1, exit_code=1))
    run(c.CheckDue(at=T0 + 10_000, now=T0 + 10_000))  # the retry timer fires: attempt 2
    run(c.TaskStarted(at=T0 + 11_000, instance=etl, task="extract", attempt=2, pid=12, worker="w2"))
    report = run(c.StartWorkflow(at=T0 + 15_000, workflow="report")).events[0].instance  # type: ignore[union-attr]
    run(c.StopWorkflow(at=T0 + 16_000, instance=etl))
    run(c.TaskFinished(at=T0 + 17_500, instance=etl, task="extract", attempt=2, exit_code=-15, killed=True))
    run(c.CheckDue(at=T0 + 25_000, now=T0 + 25_000))  # the DEPENDENT re-checks: etl failed, it waits on
    run(c.StopWorkflow(at=T0 + 26_000, instance=report))
    run(c.CheckDue(at=T0 + 40_000, now=T0 + 40_000))
    events.close()
    commands.close()
    return sim, {"etl": etl, "report": report}


def test_recorded_scenario_gives_the_expected_tables(tmp_path: Path) -> None:
    sim, ids = scenario(tmp_path)
    etl, report = ids["etl"], ids["report"]
    events, commands = open_logs(tmp_path)
    with events, commands, Projector(tmp_path / "p.duckdb", events, commands) as projector:
        assert projector.catch_up() == 2 * len(sim.batches)
        conn = projector.cursor()
        tasks = conn.execute(
            "SELECT instance, task, attempt, task_type, state, epoch_ms(started_at) - $1, epoch_ms(ended_at) - $1,"
            " duration_ms, reason, exit_code, worker, pid, epoch_ms(kill_requested_at) - $1, kill_command,"
            " epoch_ms(kill_confirmed_at) - $1 FROM task_instances ORDER BY started_at", [T0],
        ).fetchall()
        assert tasks == [
            (etl, "extract", 1, "SHELL", "DELAY_EXECUTION", 1000, 5000, 4000, "exit code 1; retry 1 of 2", 1,
             "w1", 11, None, None, None),
            (etl, "extract", 2, "SHELL", "KILL", 10_000, 16_000, 6000, "workflow stopped", -15, "w2", 12,
             16_000, "stop", 17_500),
            (report, "wait_etl", 0, "DEPENDENT", "KILL", 15_000, 26_000, 11_000, "workflow stopped", None, None,
             None, None, None, None),
        ]
        instances = conn.execute(
            "SELECT instance, workflow, version, state, reason, epoch_ms(started_at) - $1,"
            " epoch_ms(ended_at) - $1, duration_ms, task_states FROM workflow_instances ORDER BY started_at", [T0],
        ).fetchall()
        assert instances == [
            (etl, "etl_daily", 1, "STOP", "stop requested", 1000, 17_500, 16_500, '{"extract":"KILL"}'),
            (report, "report", 1, "STOP", "stop requested", 15_000, 26_000, 11_000, '{"wait_etl":"KILL"}'),
        ]
        assert conn.execute(
            "SELECT task, attempt, kill_command, latency_ms, epoch_ms(killed_at) - epoch_ms(kill_requested_at)"
            " FROM kill_latency"
        ).fetchall() == [("extract", 2, "stop", 1500, 0)]
        assert conn.execute("SELECT count(*) FROM timers").fetchone() == (0,)
        assert conn.execute("SELECT workflow, latest_version, online FROM workflows ORDER BY 1").fetchall() == [
            ("etl_daily", 1, True), ("report", 1, True)]
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (sum(len(b.events) for b in sim.batches),)
        assert conn.execute("SELECT count(*), count(DISTINCT type) FROM commands").fetchone() == (
            len(sim.batches), 6)
        # Raw events keep their batch position and join to their command.
        assert conn.execute(
            "SELECT e.type FROM events e JOIN commands c USING (command_offset)"
            " WHERE c.type = 'stop' AND e.instance = $1 ORDER BY e.seq", [etl],
        ).fetchall() == [("workflow_state",), ("task_state",), ("kill_process",)]


def test_16895_a_stopped_dependent_leaves_no_timer_and_none_comes_back(tmp_path: Path) -> None:
    """DolphinScheduler #16895: the stopped DEPENDENT task kept being re-checked forever."""
    events, commands = open_logs(tmp_path)
    with events, commands, Projector(tmp_path / "p.duckdb", events, commands) as projector:
        sim = Simulation(0, commands, events)
        sim.define_all()
        inst = sim.submit(c.StartWorkflow(at=T0 + 1000, workflow="report")).events[0].instance  # type: ignore[union-attr]
        conn = projector.cursor()
        projector.catch_up()
        count = "SELECT count(*) FROM timers WHERE instance = $1"
        assert conn.execute(count, [inst]).fetchone() == (1,)  # waiting: a DEPENDENT_CHECK entry
        sim.submit(c.StopWorkflow(at=T0 + 2000, instance=inst))
        projector.catch_up()
        assert conn.execute(count, [inst]).fetchone() == (0,)
        for tick in range(1, 6):  # the clock goes on: nothing is re-queued
            now = T0 + 2000 + tick * 10_000
            sim.submit(c.CheckDue(at=now, now=now))
            projector.catch_up()
            assert conn.execute(count, [inst]).fetchone() == (0,)
        assert conn.execute("SELECT state FROM task_instances WHERE instance = $1", [inst]).fetchall() == [("KILL",)]
        assert timers_table(conn) == timers_of(sim.state) == set()


# ---------------------------------------------------------------------------- the fold agrees


def assert_agrees_with_fold(conn: duckdb.DuckDBPyConnection, state: State) -> None:
    """The tables say what the master's state says: timers, instances, current attempts."""
    assert timers_table(conn) == timers_of(state)
    instances = {r[0]: r[1:] for r in conn.execute(
        "SELECT instance, state, started_at, ended_at FROM workflow_instances").fetchall()}
    assert set(instances) == set(state.instances)
    attempts = {(r[0], r[1], r[2]): r[3:] for r in conn.execute(
        "SELECT instance, task, attempt, state, started_at, ended_at, pid, worker, exit_code FROM task_instances"
    ).fetchall()}
    for inst in state.instances.values():
        wf_state, started, ended = instances[inst.id]
        assert (wf_state, ms(started), ms(ended)) == (inst.state, inst.started, inst.ended), inst.id
        for ti in inst.tasks.values():
            row = attempts[(inst.id, ti.name, ti.attempt)]
            t_state, t_started, t_ended, pid, worker, exit_code = row
            assert (t_state, ms(t_started), pid, worker, exit_code) == (
                ti.state, ti.started, ti.pid, ti.worker or None, ti.exit_code), (inst.id, ti.name)
            process_over = ti.state in TASK_FINAL or (ti.type == "SHELL" and ti.state not in (DISPATCH, RUNNING))
            assert (t_ended is not None) == process_over, (inst.id, ti.name, ti.state)
            if t_ended is not None and ti.ended is not None:
                # The attempt's end, not a later kill's (the fold keeps no end for a lost attempt).
                assert ms(t_ended) <= ti.ended, (inst.id, ti.name)
            # Every earlier attempt has its row too.
            for attempt in range(1 if ti.type == "SHELL" else 0, ti.attempt):
                assert (inst.id, ti.name, attempt) in attempts
    assert len(attempts) == sum(max(ti.attempt, 1) for i in state.instances.values() for ti in i.tasks.values())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 1_000_000),
    n=st.integers(1, 300),
    chunks=st.lists(st.integers(1, 40), max_size=6),
)
def test_random_workloads_agree_with_the_fold_however_transactions_fall(seed: int, n: int, chunks: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        sim = write_workload(data, seed, n, max_active=4)
        events, commands = open_logs(data)
        with events, commands, Projector(data / "p.duckdb", events, commands, read_bytes=4096) as projector:
            for size in chunks:  # uneven transactions: reductions across their boundaries must not matter
                projector.catch_up(max_batches=size)
            projector.catch_up()
            conn = projector.cursor()
            assert_agrees_with_fold(conn, sim.state)
            total = sum(len(b.events) for b in sim.batches)
            assert conn.execute("SELECT count(*) FROM events").fetchone() == (total,)
            assert conn.execute("SELECT count(*) FROM commands").fetchone() == (len(sim.batches),)
            conn.close()


def test_a_longer_workload_agrees_with_the_fold_and_with_a_one_shot_projection(tmp_path: Path) -> None:
    sim = write_workload(tmp_path, 11, 3000, max_active=8)
    small = project(tmp_path, tmp_path / "small.duckdb", read_bytes=16 << 10)  # many transactions
    events, commands = open_logs(tmp_path)
    with events, commands, Projector(tmp_path / "big.duckdb", events, commands) as projector:
        projector.catch_up()
        assert projector.commits == 1
        conn = projector.cursor()
        assert_agrees_with_fold(conn, sim.state)
        big = dump(conn)
    big.pop("projection_offsets")
    small.pop("projection_offsets")
    assert small == big


# ---------------------------------------------------------------------------- exactly once


class Redelivering:
    """A Stream that hands back, before the new records, a few it delivered already (at-least-once)."""

    def __init__(self, inner: Stream) -> None:
        self.inner = inner
        self.partitions = inner.partitions
        self.delivered: list[int] = []

    def read(self, start: int, partition: int = 0, max_bytes: int = 4 << 20) -> list[Record]:
        earlier = [o for o in self.delivered if o < start][-3:]
        records = self.inner.read(earlier[0] if earlier else start, partition, max_bytes + 4096)
        self.delivered.extend(r.offset for r in records if r.offset >= start)
        return records

    def end(self, partition: int = 0) -> int:
        return self.inner.end(partition)

    def append(self, payloads: Sequence[bytes], partition: int = 0) -> list[int]:
        return self.inner.append(payloads, partition)

    def close(self) -> None:
        self.inner.close()


def test_redelivered_records_are_not_counted_twice(tmp_path: Path) -> None:
    write_workload(tmp_path, 5, 400)
    clean = project(tmp_path, tmp_path / "clean.duckdb")
    events, commands = open_logs(tmp_path)
    with events, commands, Projector(
        tmp_path / "p.duckdb", Redelivering(events), Redelivering(commands), read_bytes=2048
    ) as projector:
        while projector.catch_up(max_batches=7):
            pass
        conn = projector.cursor()
        assert dump(conn) == clean


def test_a_repeated_batch_is_skipped_not_applied(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sim = write_workload(tmp_path, 6, 200)
    events, commands = open_logs(tmp_path)
    with events, commands, Projector(tmp_path / "p.duckdb", events, commands) as projector:
        projector.catch_up()
        conn = projector.cursor()
        before = dump(conn)
        events.append([encode(sim.batches[-1])])  # the same command's batch, written twice
        with caplog.at_level(logging.ERROR, logger="projections.projector"):
            assert projector.catch_up() == 1
        assert "repeated batch" in caplog.text
        assert projector.skipped == 1
        after = dump(conn)
        assert after.pop("projection_offsets") != before.pop("projection_offsets")
        assert after == before


def test_restart_resumes_from_the_stored_offsets(tmp_path: Path) -> None:
    write_workload(tmp_path, 8, 500)
    clean = project(tmp_path, tmp_path / "clean.duckdb")
    for _ in range(4):  # stop and start again, a few records at a time
        events, commands = open_logs(tmp_path)
        with events, commands, Projector(tmp_path / "p.duckdb", events, commands) as projector:
            projector.catch_up(max_batches=180)
    assert project(tmp_path, tmp_path / "p.duckdb") == clean


def test_rebuild_refolds_to_the_same_tables(tmp_path: Path) -> None:
    sim = write_workload(tmp_path, 9, 300)
    events, commands = open_logs(tmp_path)
    with events, commands, Projector(tmp_path / "p.duckdb", events, commands) as projector:
        projector.catch_up()
        conn = projector.cursor()
        before = dump(conn)
        assert projector.rebuild(progress=False) == 2 * len(sim.batches)
        assert dump(conn) == before


def test_tables_of_another_schema_version_are_rebuilt_on_open(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_workload(tmp_path, 10, 200)
    clean = project(tmp_path, tmp_path / "clean.duckdb")
    project(tmp_path, tmp_path / "p.duckdb")
    conn = duckdb.connect(str(tmp_path / "p.duckdb"))
    conn.execute(f"UPDATE {META_TABLE} SET value = 'from-an-older-version'")
    conn.execute("INSERT INTO timers VALUES ('stale', 'row', 'RETRY', now()::timestamp, NULL)")
    conn.close()
    with caplog.at_level(logging.WARNING, logger="projections.projector"):
        assert project(tmp_path, tmp_path / "p.duckdb") == clean
    assert "rebuilding" in caplog.text


def test_an_unreadable_command_record_is_kept_as_such(tmp_path: Path) -> None:
    events, commands = open_logs(tmp_path)
    with events, commands, Projector(tmp_path / "p.duckdb", events, commands) as projector:
        (offset,) = commands.append([b"\xc1 not msgpack"])
        projector.catch_up()
        conn = projector.cursor()
        row = conn.execute("SELECT command_offset, type, payload, error FROM commands").fetchone()
        assert row is not None and row[:3] == (offset, "?", None) and "undecodable command" in row[3]


def test_run_follows_the_log_until_stopped(tmp_path: Path) -> None:
    events, commands = open_logs(tmp_path)
    with events, commands, Projector(tmp_path / "p.duckdb", events, commands) as projector:
        stop = threading.Event()
        thread = threading.Thread(target=projector.run, args=(stop, 0.01))
        thread.start()
        try:
            sim = Simulation(4, commands, events)
            sim.run(50)
            conn = projector.cursor()
            expected = sum(len(b.events) for b in sim.batches)
            wait_for(lambda: conn.execute("SELECT count(*) FROM events").fetchone() == (expected,), "the events")
            assert_agrees_with_fold(conn, sim.state)
        finally:
            stop.set()
            thread.join()
        assert projector.last_error is None


def test_a_rerun_shows_in_the_instance_row_while_it_runs_and_after_it_ends(tmp_path: Path) -> None:
    with (
        EmbeddedStream(tmp_path / "commands", fsync=False) as cs,
        EmbeddedStream(tmp_path / "events", fsync=False) as es,
    ):
        sim = Simulation(21, cs, es, max_active=2)
        sim.define_all()
        for _ in range(20_000):
            if any(i.state in ("SUCCESS", "FAILURE", "STOP") for i in sim.state.instances.values()):
                break
            sim.submit(sim.random_command())
        done = next(i for i in sim.state.instances.values() if i.state in ("SUCCESS", "FAILURE", "STOP"))
        sim.submit(c.RerunWorkflow(at=sim.now + 1, instance=done.id))

        def row() -> tuple[Any, ...]:
            events, commands = open_logs(tmp_path)
            with events, commands, Projector(tmp_path / "p.duckdb", events, commands) as projector:
                projector.catch_up()
                found = projector.cursor().execute(
                    "SELECT state, task_states, reopened_as, reopened_at IS NOT NULL, duration_ms,"
                    " ended_at >= reopened_at FROM workflow_instances WHERE instance = ?", [done.id]).fetchone()
            assert found is not None
            return found

        assert row() == ("RUNNING_EXECUTION", "{}", "REPEAT_RUNNING", True, None, False)
        for _ in range(20_000):
            if done.id not in sim.active:
                break
            sim.submit(sim.random_command())
        state, task_states, reopened_as, _, duration, ended_after = row()
        assert state == sim.state.instances[done.id].state and task_states != "{}"
        assert reopened_as == "REPEAT_RUNNING" and ended_after is True and duration is not None and duration >= 0
