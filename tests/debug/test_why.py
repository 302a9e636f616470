"""`why` on each kind of state: every sentence comes from an event of the fold."""

from __future__ import annotations

from pathlib import Path

from easysched_es.core import commands as c
from easysched_es.debug.why import why
from easysched_es.runtime.embedded.datadir import DataDir
from tests.core.helpers import dep, item, shell, wf
from tests.debug.helpers import Script

ETL = wf(
    "etl",
    dep("wait_upstream", item("upstream", "publish"), check_interval=10),
    shell("load", "echo load", upstream=["wait_upstream"]),
)
FLAKY = wf("flaky", shell("run", "exit 1", retry_times=1, retry_interval=5))


def test_a_waiting_dependent_then_the_stop_that_killed_it(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    run = Script(data)
    run(c.DefineWorkflow(definition=ETL))
    inst = run.start("etl")
    run(c.CheckDue(now=0), after_ms=10_000)
    waiting = why(data, inst, "wait_upstream")
    assert waiting is not None and waiting["state"] == "RUNNING_EXECUTION"
    assert "last DEPENDENT check `check_due`" in waiting["summary"]
    assert "upstream `publish` of workflow `upstream` has no instance in window" in waiting["summary"]
    assert "next DEPENDENT_CHECK at" in waiting["summary"]
    assert [p["kind"] for p in waiting["pending"]] == ["DEPENDENT_CHECK"]
    assert "not submitted" in why(data, inst, "load")["summary"]  # type: ignore[index]

    stop = run(c.StopWorkflow(instance=inst))
    killed = why(data, inst, "wait_upstream")
    assert killed is not None and killed["state"] == "KILL" and killed["pending"] == []
    assert killed["summary"].startswith(f"KILL because `stop` at offset {stop} (")
    assert "the DEPENDENT_CHECK timer was cancelled in the same step" in killed["summary"]
    assert killed["chain"][0]["offset"] == stop
    whole = why(data, inst)
    assert whole is not None and whole["state"] == "STOP"
    assert whole["summary"].startswith(f"STOP because `stop` at offset {stop}")
    assert whole["tasks"]["wait_upstream"] == killed["summary"]


def test_a_failure_after_its_retries(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    run = Script(data)
    run(c.DefineWorkflow(definition=FLAKY))
    inst = run.start("flaky")
    run(c.TaskStarted(instance=inst, task="run", attempt=1, pid=11))
    run(c.TaskFinished(instance=inst, task="run", attempt=1, exit_code=1))
    delayed = why(data, inst, "run")
    assert delayed is not None and delayed["state"] == "DELAY_EXECUTION"
    assert "attempt 1 of 2 failed; a retry follows" in delayed["summary"]
    assert "next RETRY at" in delayed["summary"]
    run(c.CheckDue(now=0), after_ms=6_000)
    run(c.TaskStarted(instance=inst, task="run", attempt=2, pid=12))
    last = run(c.TaskFinished(instance=inst, task="run", attempt=2, exit_code=1))
    failed = why(data, inst, "run")
    assert failed is not None and failed["state"] == "FAILURE"
    assert failed["summary"].startswith("FAILURE: attempt 2 exited 1")
    assert f"`task_finished` at offset {last}" in failed["summary"]
    assert "no retries left (retry_times 1)" in failed["summary"]
    assert why(data, inst)["state"] == "FAILURE"  # type: ignore[index]


def test_a_killed_shell_task_and_its_confirmation(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    run = Script(data)
    run(c.DefineWorkflow(definition=wf("long", shell("sleep", "sleep 300"))))
    inst = run.start("long")
    run(c.TaskStarted(instance=inst, task="sleep", attempt=1, pid=11))
    kill = run(c.KillTask(instance=inst, task="sleep"))
    pending = why(data, inst, "sleep")
    assert pending is not None and pending["summary"].startswith(f"KILL because `kill_task` at offset {kill}")
    assert "the worker was told to kill the process of attempt 1" in pending["summary"]
    assert "has not confirmed the process is gone yet" in pending["summary"]
    gone = run(c.TaskFinished(instance=inst, task="sleep", attempt=1, exit_code=-15, killed=True))
    done = why(data, inst, "sleep")
    assert done is not None and f"process confirmed gone by `task_finished` at offset {gone}" in done["summary"]


def test_success_and_unknown_names(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    run = Script(data)
    run(c.DefineWorkflow(definition=wf("ok", shell("a"))))
    inst = run.start("ok")
    run(c.TaskStarted(instance=inst, task="a", attempt=1, pid=11))
    run(c.TaskFinished(instance=inst, task="a", attempt=1, exit_code=0))
    ok = why(data, inst, "a")
    assert ok is not None and ok["state"] == "SUCCESS" and "`task_finished` at offset" in ok["summary"]
    assert why(data, inst)["summary"].startswith("SUCCESS because `task_finished`")  # type: ignore[index]
    assert why(data, inst, "nope") is None
    assert why(data, "0-999999") is None
    assert why(data, "garbage") is None
