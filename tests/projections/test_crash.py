"""kill -9 of a projector process, then a restart: the tables equal a clean rebuild.

The projector runs in a real subprocess on a real DuckDB file; SIGKILL gives it no chance to
clean up. Rows and offsets are committed in one transaction, so whatever instant the kill
lands on, the file holds a prefix of the log, and the restart resumes exactly after it.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from easysched_es.log.embedded import EmbeddedStream
from projections.projector import Projector
from tests.projections.helpers import DEADLINE_S, dump, write_workload

ROOT = Path(__file__).resolve().parents[2]
Tables = dict[str, list[tuple[object, ...]]]

# The projector process. In "pause" mode its fourth transaction stops after writing every
# table but before the offsets and the COMMIT, says MID, and waits to be killed: the worst
# instant, rows without their offsets. In "free" mode it commits small transactions and
# reports each, to be killed wherever it happens to be.
PROJECTOR = """
import sys, time
from pathlib import Path
from easysched_es.log.embedded import EmbeddedStream
from projections import writer
from projections.projector import Projector

data, db, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
if mode == "pause":
    original = writer.Writer.execute
    calls = []

    def execute(self, loads):
        calls.append(1)
        if len(calls) < 4:
            return original(self, loads)
        for load in loads:
            self._conn.register(load.stage, load.table)
        self._conn.execute("BEGIN TRANSACTION")
        assert loads[-1].stage == "_stage_projection_offsets"
        for load in loads[:-1]:
            self._conn.execute(load.statement)
        print("MID", flush=True)
        time.sleep(600)

    writer.Writer.execute = execute
projector = Projector(db, EmbeddedStream(data / "events"), EmbeddedStream(data / "commands"), read_bytes=8192)
print("READY", flush=True)
while projector.catch_up(max_batches=40):
    print("COMMIT", projector.commits, flush=True)
print("DONE", flush=True)
"""


def start(data: Path, db: Path, mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(
        [sys.executable, "-c", PROJECTOR, str(data), str(db), mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )


def wait_line(proc: subprocess.Popen[str], want: str) -> str:
    """Read the process's lines until one starts with `want`; fail at the deadline or if it exits."""
    assert proc.stdout is not None
    deadline = time.monotonic() + DEADLINE_S
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=deadline - time.monotonic()):
                break
            line = proc.stdout.readline()
            if not line:
                _, err = proc.communicate()
                pytest.fail(f"the projector exited ({proc.returncode}) before {want!r}:\n{err}")
            if line.startswith(want):
                return line.strip()
    proc.kill()
    pytest.fail(f"no {want!r} from the projector within {DEADLINE_S}s")


def kill9(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=DEADLINE_S)
    assert proc.returncode == -signal.SIGKILL
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def finish_and_dump(data: Path, db: Path) -> Tables:
    with (
        EmbeddedStream(data / "events") as events,
        EmbeddedStream(data / "commands") as commands,
        Projector(db, events, commands) as projector,
    ):
        projector.catch_up()
        conn = projector.cursor()
        try:
            return dump(conn)
        finally:
            conn.close()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Tables]:
    """A workload and its clean projection, shared by the crash tests."""
    data = tmp_path_factory.mktemp("crash-logs")
    write_workload(data, 21, 1500, max_active=6)
    return data, finish_and_dump(data, data / "clean.duckdb")


def test_kill_9_between_the_rows_and_the_commit(tmp_path: Path, logs: tuple[Path, Tables]) -> None:
    data, clean = logs
    db = tmp_path / "p.duckdb"
    proc = start(data, db, "pause")
    wait_line(proc, "MID")
    kill9(proc)
    # The file holds the three committed transactions only: reopening it must not show the
    # rows of the fourth, and the restart re-applies that one in full.
    assert finish_and_dump(data, db) == clean


def test_kill_9_wherever_it_lands_then_restart(tmp_path: Path, logs: tuple[Path, Tables]) -> None:
    data, clean = logs
    db = tmp_path / "p.duckdb"
    for commits in (2, 5, 9):  # three crashes at different points, each restart resuming the last
        proc = start(data, db, "free")
        wait_line(proc, "READY")
        wait_line(proc, f"COMMIT {commits}")
        kill9(proc)
    assert finish_and_dump(data, db) == clean
