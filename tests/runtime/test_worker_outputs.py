"""The worker collects output parameters of a real process: `${setValue()}` lines and `$EASYSCHED_OUTPUT`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from easysched_es.core import commands as c
from easysched_es.core import outputs
from easysched_es.runtime.task_outputs import collect
from easysched_es.runtime.worker import Worker
from tests.harness import kill_leftovers
from tests.runtime.test_worker import Reports, dispatch


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[Worker, Reports]]:
    reports = Reports()
    w = Worker(tmp_path / "runs", tmp_path / "logs", reports, name="w1", kill_grace=0.5)
    w.start()
    yield w, reports
    w.stop()
    kill_leftovers(tmp_path)


def test_a_successful_attempt_reports_its_outputs(worker: tuple[Worker, Reports]) -> None:
    w, reports = worker
    # In sh, `${...}` is an expansion: the marker is printed quoted or escaped.
    script = 'n=12; echo "\\${setValue(rows=$n)}"; echo noise; printf "file=yes\\nrows=13\\n" > "$EASYSCHED_OUTPUT"'
    w.submit(dispatch(script))
    finished = reports.next(c.TaskFinished)
    assert finished.exit_code == 0
    assert finished.outputs == {"rows": "13", "file": "yes"}


def test_a_failed_attempt_reports_none(worker: tuple[Worker, Reports]) -> None:
    w, reports = worker
    w.submit(dispatch("echo '${setValue(rows=12)}'; exit 3"))
    finished = reports.next(c.TaskFinished)
    assert finished.exit_code == 3 and finished.outputs == {}


def test_collect_from_a_large_log_stays_bounded(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    with log.open("w") as f:
        for i in range(20_000):
            f.write(f"line {i} " + "x" * 100 + "\n")
            if i % 100 == 0:
                f.write(f"${{setValue(k{i}=v)}}\n")
        f.write("${setValue(long=" + "y" * 3_000_000 + ")}\n")
    found = collect(log, tmp_path / "absent.out")
    assert len(found) == outputs.MAX_OUTPUTS + 1
    assert outputs.problem(found)
