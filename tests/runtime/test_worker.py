"""The worker with real subprocesses: idempotent dispatch, kills of whole groups, adoption."""

from __future__ import annotations

import os
import queue
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from easysched_es.core import commands as c
from easysched_es.core.events import DispatchTask, KillTaskProcess
from easysched_es.runtime.worker import Worker
from tests.harness import group_members, kill_leftovers, pid_alive, wait_until


class Reports:
    """Collects what the worker reports (in place of the log append)."""

    def __init__(self) -> None:
        self.q: queue.SimpleQueue[c.Command] = queue.SimpleQueue()
        self.seen: list[c.Command] = []
        self._taken = 0

    def __call__(self, command: c.Command) -> None:
        self.q.put(command)

    def next(self, kind: type, timeout: float = 10.0) -> Any:
        """The next report of `kind` not returned before."""

        def probe() -> c.Command | None:
            while not self.q.empty():
                self.seen.append(self.q.get())
            return next((r for r in self.seen[self._taken :] if isinstance(r, kind)), None)

        found = wait_until(f"a {kind.__name__} report", probe, timeout)
        self._taken = self.seen.index(found) + 1
        return found


def dispatch(command: str, attempt: int = 1, task: str = "t") -> DispatchTask:
    return DispatchTask(
        instance="0-1", task=task, attempt=attempt, task_type="SHELL", command=command, env={"GREETING": "hi"}
    )


@pytest.fixture
def reports() -> Reports:
    return Reports()


@pytest.fixture
def worker(tmp_path: Path, reports: Reports) -> Iterator[Worker]:
    w = Worker(tmp_path / "runs", tmp_path / "logs", reports, name="w1", kill_grace=0.5)
    w.start()
    yield w
    w.stop()
    kill_leftovers(tmp_path)


def test_runs_a_script_with_its_environment_and_log(worker: Worker, reports: Reports, tmp_path: Path) -> None:
    worker.submit(dispatch('echo "$GREETING $EASYSCHED_TASK $EASYSCHED_ATTEMPT"; exit 4'))
    started = reports.next(c.TaskStarted)
    finished = reports.next(c.TaskFinished)
    assert isinstance(started, c.TaskStarted) and isinstance(finished, c.TaskFinished)
    assert finished.exit_code == 4 and not finished.killed
    assert Path(started.log_path).read_text() == "hi t 1\n"


def test_the_same_attempt_dispatched_twice_runs_once(worker: Worker, reports: Reports, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    worker.submit(dispatch(f"echo x >> {marker}; sleep 0.3"))
    worker.submit(dispatch(f"echo x >> {marker}; sleep 0.3"))
    reports.next(c.TaskStarted)
    reports.next(c.TaskFinished)
    assert marker.read_text() == "x\n"
    assert sum(isinstance(r, c.TaskStarted) for r in reports.seen) == 1


def test_kill_terminates_every_process_of_the_group(worker: Worker, reports: Reports) -> None:
    worker.submit(dispatch("sleep 300 & sleep 301 & wait"))
    started = reports.next(c.TaskStarted)
    assert isinstance(started, c.TaskStarted)
    members = wait_until(
        "three processes in the group", lambda: len(group_members(started.pid)) >= 3 and group_members(started.pid)
    )
    worker.submit(KillTaskProcess(instance="0-1", task="t", attempt=1))
    finished = reports.next(c.TaskFinished)
    assert isinstance(finished, c.TaskFinished) and finished.killed
    assert finished.exit_code == -signal.SIGTERM
    wait_until("group gone", lambda: not any(pid_alive(p) for p in members), timeout=10)


def test_a_script_ignoring_sigterm_gets_sigkill_after_the_grace(worker: Worker, reports: Reports) -> None:
    worker.submit(dispatch("trap '' TERM; while true; do sleep 0.05; done"))
    started = reports.next(c.TaskStarted)
    assert isinstance(started, c.TaskStarted)
    wait_until("trap installed", lambda: len(group_members(started.pid)) >= 1)
    worker.submit(KillTaskProcess(instance="0-1", task="t", attempt=1))
    finished = reports.next(c.TaskFinished, timeout=15)
    assert isinstance(finished, c.TaskFinished) and finished.killed
    assert finished.exit_code == -signal.SIGKILL
    # SIGKILL went to the whole group; on a loaded machine a straggler may take a moment to die.
    wait_until("the group gone", lambda: group_members(started.pid) == [], timeout=10)


def test_a_kill_before_the_dispatch_means_it_never_runs(worker: Worker, reports: Reports, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    worker.submit(KillTaskProcess(instance="0-1", task="t", attempt=1))
    worker.submit(dispatch(f"touch {marker}"))
    finished = reports.next(c.TaskFinished)
    assert isinstance(finished, c.TaskFinished) and finished.killed
    worker.submit(dispatch("true", attempt=2, task="other"))  # a later effect proves the first was handled
    reports.next(c.TaskFinished)
    assert not marker.exists()
    assert not any(isinstance(r, c.TaskStarted) and r.task == "t" for r in reports.seen)


def test_a_new_worker_adopts_a_running_attempt_and_reads_its_exit_code(tmp_path: Path, reports: Reports) -> None:
    gate = tmp_path / "gate"
    first = Worker(tmp_path / "runs", tmp_path / "logs", reports, name="w1")
    first.start()
    try:
        first.submit(dispatch(f"while [ ! -e {gate} ]; do sleep 0.02; done; exit 7"))
        started = reports.next(c.TaskStarted)
        first.stop()  # the worker goes away; its task lives on
        assert isinstance(started, c.TaskStarted) and pid_alive(started.pid)
        second = Worker(tmp_path / "runs", tmp_path / "logs", reports, name="w2")
        second.start()
        try:
            second.submit(dispatch("never run again"))  # the owed effect, re-applied after a restart
            adopted = reports.next(c.TaskAdopted)
            assert isinstance(adopted, c.TaskAdopted) and adopted.pid == started.pid
            gate.touch()
            finished = reports.next(c.TaskFinished)
            assert isinstance(finished, c.TaskFinished) and finished.exit_code == 7
        finally:
            second.stop()
    finally:
        kill_leftovers(tmp_path)


def test_an_attempt_that_vanished_without_exit_code_is_reported_lost(tmp_path: Path, reports: Reports) -> None:
    first = Worker(tmp_path / "runs", tmp_path / "logs", reports, name="w1")
    first.start()
    first.submit(dispatch("sleep 300"))
    started = reports.next(c.TaskStarted)
    first.stop()
    assert isinstance(started, c.TaskStarted)
    os.killpg(started.pid, signal.SIGKILL)  # dies with no exit code written, while no worker watches
    wait_until("gone", lambda: not pid_alive(started.pid))
    second = Worker(tmp_path / "runs", tmp_path / "logs", reports, name="w2")
    second.start()
    try:
        second.submit(dispatch("sleep 300"))
        lost = reports.next(c.TaskLost)
        assert isinstance(lost, c.TaskLost) and "without an exit code" in lost.reason
    finally:
        second.stop()


def test_a_restarted_worker_kills_the_strays_of_attempts_no_longer_its_own(
    worker: Worker, reports: Reports, tmp_path: Path
) -> None:
    """Processes a previous run of the worker left behind, for attempts the fold gave to nobody or
    to another worker (rerun after a loss), are killed (whole group); the kept ones run on."""
    worker.submit(dispatch("sleep 60 & sleep 60; wait", attempt=1))
    worker.submit(dispatch("sleep 60", attempt=2, task="kept"))
    started = {r.task: r.pid for r in (reports.next(c.TaskStarted), reports.next(c.TaskStarted))}
    stray, kept = started["t"], started["kept"]  # the two may start in either order (effect threads)
    members = wait_until("the stray's group has its children", lambda: len(group_members(stray)) >= 2 and
                         group_members(stray))
    worker.stop()  # the worker dies; its processes run on (as after a kill -9)
    restarted = Worker(tmp_path / "runs", tmp_path / "logs", reports, name="w1", kill_grace=0.5)
    try:
        assert restarted.kill_strays({("0-1", "kept", 2)}) == [("0-1", "t", 1)]
        wait_until("the stray's whole group gone", lambda: not any(pid_alive(p) for p in members))
        assert pid_alive(kept)
    finally:
        os.killpg(kept, signal.SIGKILL)
        kill_leftovers(tmp_path)
