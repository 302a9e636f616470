"""What was seen, points 3 and 4: what cannot be encoded or passed to `posix_spawn` is refused at the
door with the field named; a spawn that fails anyway reports the attempt failed (nothing stays in DISPATCH)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from easysched_es.core import commands as c
from easysched_es.core.codec import encode
from easysched_es.core.events import CommandRejected, DispatchTask
from easysched_es.core.state import State
from easysched_es.core.step import step_record
from easysched_es.flows import FlowFileError, load_flow
from easysched_es.runtime.embedded.client import Client, CommandRejectedError
from easysched_es.runtime.worker import SPAWN_FAILED_RC, Worker
from tests.harness import cli, wait_until
from tests.robust.helpers import flow, shell


def _define_reason(definition: object) -> str:
    _, events, _ = step_record(State(), encode(c.DefineWorkflow(at=1, definition=definition)), 0)  # type: ignore[arg-type]
    assert isinstance(events[0], CommandRejected), events
    return events[0].reason


@pytest.mark.parametrize(
    ("definition", "named"),
    [
        (flow("w", shell("a", "echo \x00")), "the command holds a NUL"),
        (flow("w", shell("a", env={"K": "v\x00"})), "env 'K' value holds a NUL"),
        (flow("w", shell("a", env={"K\x00": "v"})), "env name 'K\\x00' holds a NUL"),
        (flow("w", shell("a", env={"A=B": "v"})), "env name 'A=B' holds '='"),
        (flow("w", shell("a", env={"": "v"})), "env has an empty name"),
        (flow("w", shell("a"), params={"P": "\x00"}), "parameter 'P' value holds a NUL"),
        (flow("w", shell("a"), params={"P=Q": "x"}), "parameter name 'P=Q' holds '='"),
        (flow("w\x00", shell("a")), "the workflow name holds a NUL"),
        (flow("w", shell("a\x00b")), "the task name holds a NUL"),
    ],
)
def test_what_posix_spawn_cannot_take_is_refused_with_the_field(definition: object, named: str) -> None:
    assert named in _define_reason(definition)


def test_start_params_that_posix_spawn_cannot_take_are_refused(tmp_path: Path) -> None:
    client = Client(tmp_path)
    client.define(flow("w", shell("a")))
    for params, named in (({"K": "a\x00"}, "holds a NUL"), ({"A=B": "x"}, "holds '='"), ({"": "x"}, "empty name")):
        with pytest.raises(CommandRejectedError, match=named):
            client.start("w", params)


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flow.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("name: w\ntasks:\n- {name: a, type: SHELL, command: 'true', retry_times: 18446744073709551616}\n",
         "retry_times: the integer 18446744073709551616 is out of range"),
        ('name: w\ntasks:\n- {name: a, type: SHELL, command: "echo \\ud800"}\n', "command: the text"),
        ('name: w\nparams: {"\\udc80": x}\ntasks:\n- {name: a, type: SHELL, command: "true"}\n', "lone surrogate"),
        ("name: w\ntasks: " + "[" * 600 + "]" * 600 + "\n", "nested too deeply"),
        ("name: w\ndescription: " + "[" * 5000 + "]" * 5000 + "\ntasks: []\n", "nested too deeply"),
    ],
    ids=["int-2**64", "lone-surrogate", "surrogate-key", "yaml-600-deep", "yaml-5000-deep"],
)
def test_yaml_that_cannot_be_encoded_or_read_is_refused(tmp_path: Path, text: str, named: str) -> None:
    path = _yaml(tmp_path, text)
    with pytest.raises(FlowFileError, match=named.replace("(", r"\(")):
        load_flow(path)
    proc = cli(tmp_path / "data", "define", str(path))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "rejected:" in proc.stderr


def test_the_python_client_refuses_what_cannot_be_encoded(tmp_path: Path) -> None:
    client = Client(tmp_path)
    with pytest.raises(CommandRejectedError, match=r"\$\.workflow: the text"):
        client.start("w\ud800")
    with pytest.raises(CommandRejectedError, match="schedule_time: the integer"):
        client.start("w", schedule_time=2**70)


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[Worker, list[c.Command]]]:
    reports: list[c.Command] = []
    w = Worker(tmp_path / "runs", tmp_path / "logs", reports.append, name="w1", kill_grace=0.5)
    w.start()
    yield w, reports
    w.stop()


@pytest.mark.parametrize(
    "env", [{"K": "a\x00b"}, {"A=B": "x"}, {"K\x00": "x"}], ids=["nul-value", "equals-name", "nul-name"]
)
def test_a_spawn_that_raises_reports_the_attempt_failed(
    worker: tuple[Worker, list[c.Command]], tmp_path: Path, env: dict[str, str]
) -> None:
    w, reports = worker
    w.submit(DispatchTask(instance="0-1", task="t", attempt=1, task_type="SHELL", command="true", env=env))
    finished = wait_until(
        "a finished report", lambda: next((r for r in reports if isinstance(r, c.TaskFinished)), None)
    )
    assert finished.exit_code == SPAWN_FAILED_RC and "could not start the process" in finished.detail
    # A restart answers the same from the claim's rc file.
    assert (tmp_path / "runs" / "0-1" / "t.1.rc").read_text().strip() == str(SPAWN_FAILED_RC)
