"""`easysched demo`: the DolphinScheduler #16895 scenario and a SHELL kill, end to end.

It starts a real `easysched run` on a fresh temporary data directory, drives it with the
same client the CLI uses, checks the rules of DESIGN.md section 6 against what the state,
the log and the operating system say, and exits non-zero if any rule is broken.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from easysched_es.core.definitions import WorkflowDefinition
from easysched_es.debug.trace import trace
from easysched_es.runtime.embedded.client import Client
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.embedded.local_run import WaitTimeout, pid_alive, start_run, stop_run, wait_for
from easysched_es.runtime.fold import load_state

CHECK_INTERVAL = 1.0


class Demo:
    """One demo run; `say` prints progress, `check` records a rule."""

    def __init__(self, data: DataDir) -> None:
        self.data = data
        self.client = Client(data.root)
        self.failures: list[str] = []

    def say(self, text: str) -> None:
        print(text, flush=True)

    def check(self, ok: bool, text: str) -> None:
        self.say(f"  {'ok ' if ok else 'BROKEN'}  {text}")
        if not ok:
            self.failures.append(text)

    def instance(self, instance: str) -> dict[str, object]:
        inst = load_state(self.data).instances[instance]
        return {"state": inst.state, "tasks": {t.name: t for t in inst.tasks.values()}}

    def timers_of(self, instance: str) -> list[str]:
        return [f"{t.kind} {t.task}" for t in load_state(self.data).queue.entries() if t.instance == instance]

    def checks_of(self, instance: str) -> list[int]:
        return [e["offset"] for e in trace(self.data, instance) if e["type"] == "dependent_checked"]

    def scenario_16895(self) -> None:
        self.say("\n1. DolphinScheduler #16895: a DEPENDENT task waits on a workflow that never ran; stop it")
        instance = self.client.start("etl_daily")
        self.say(f"   started etl_daily as {instance}; wait_upstream re-checks every {CHECK_INTERVAL:g}s")
        wait_for("two dependent checks", lambda: len(self.checks_of(instance)) >= 2)
        self.say(f"   delay queue: {self.timers_of(instance)}")
        stop_offset = self.client.stop(instance).offset
        self.say(f"   stop {instance} (offset {stop_offset})")
        state = self.instance(instance)
        task = state["tasks"]["wait_upstream"]  # type: ignore[index]
        self.check(task.state == "KILL", f"wait_upstream is {task.state} right after the stop")
        self.check(state["state"] == "STOP", f"the instance is {state['state']}")
        self.check(self.timers_of(instance) == [], "the delay queue holds nothing for it (same step as the kill)")
        # Let three check intervals pass on the scheduler's own clock: a probe instance whose
        # timer fires every half interval proves the ticks happened.
        probe = self.client.start("heartbeat_probe")
        wait_for("three check intervals of clock ticks", lambda: self._ticks(probe) >= 7, timeout=20, every=0.1)
        later = [o for o in self.checks_of(instance) if o > stop_offset]
        self.check(later == [], f"no dependent check ran after the stop ({len(later)} found over 3 intervals)")
        self.check(self.timers_of(instance) == [], "still nothing in the delay queue for it")

    def _ticks(self, probe: str) -> int:
        return sum(1 for e in trace(self.data, probe) if e["type"] == "timer_fired")

    def shell_kill(self) -> None:
        self.say("\n2. A SHELL task running `sleep 300`, killed with kill-task")
        instance = self.client.start("sleeper")
        pid = wait_for("the task's process", lambda: self.instance(instance)["tasks"]["nap"].pid)  # type: ignore[index]
        self.check(pid_alive(pid), f"process {pid} is running")
        t0 = time.monotonic()
        self.client.kill_task(instance, "nap")
        wait_for("the process to be gone", lambda: not pid_alive(pid), timeout=10, every=0.002)
        gone = time.monotonic() - t0
        self.check(True, f"process {pid} is gone {gone * 1000:.0f} ms after the kill-task command")
        task = self.instance(instance)["tasks"]["nap"]  # type: ignore[index]
        self.check(task.state == "KILL", f"nap is {task.state}")
        wait_for("the kill confirmation", lambda: not self.instance(instance)["tasks"]["nap"].kill_pending)  # type: ignore[index]
        state = self.instance(instance)
        self.check("after" not in state["tasks"], "its downstream task was never dispatched")  # type: ignore[operator]
        self.check(state["state"] == "FAILURE", f"the instance ended {state['state']}")
        self.check(self.timers_of(instance) == [], "the delay queue holds nothing for it")


def demo_definitions() -> list[WorkflowDefinition]:
    """The workflows the demo defines."""
    import msgspec

    raw = [
        {"name": "upstream", "tasks": [{"name": "publish", "type": "SHELL", "command": "echo published"}]},
        {
            "name": "etl_daily",
            "tasks": [
                {
                    "name": "wait_upstream",
                    "type": "DEPENDENT",
                    "dependence": {
                        "relation": "AND",
                        "check_interval": CHECK_INTERVAL,
                        "items": [{"workflow": "upstream", "task": "publish", "cycle": "DAY", "date_value": "today"}],
                    },
                },
                {"name": "load", "type": "SHELL", "command": "echo loading $DS_DATE", "upstream": ["wait_upstream"]},
            ],
        },
        {
            "name": "heartbeat_probe",
            "tasks": [
                {
                    "name": "tick",
                    "type": "DEPENDENT",
                    "dependence": {"check_interval": CHECK_INTERVAL / 2, "items": [{"workflow": "never_defined"}]},
                }
            ],
        },
        {
            "name": "sleeper",
            "tasks": [
                {"name": "nap", "type": "SHELL", "command": "sleep 300"},
                {"name": "after", "type": "SHELL", "command": "echo after", "upstream": ["nap"]},
            ],
        },
    ]
    return [msgspec.convert(r, WorkflowDefinition) for r in raw]


def run_demo(keep: bool = False) -> int:
    """Run the demo; 0 when every rule held."""
    root = Path(tempfile.mkdtemp(prefix="easysched-demo-"))
    data = DataDir(root)
    demo = Demo(data)
    demo.say(f"easysched demo: data directory {root}")
    log_path = root / "run.log"
    failures = demo.failures
    run = None
    try:
        with open(log_path, "wb") as log_file:
            run = start_run(root, log_file, "--kill-grace", "2")
        for definition in demo_definitions():
            demo.client.define(definition)
        demo.scenario_16895()
        demo.shell_kill()
    except (WaitTimeout, RuntimeError) as exc:
        failures.append(str(exc))
        demo.say(f"  BROKEN  {exc}")
    finally:
        if run is not None:
            stop_run(run)
        if not keep and not failures:
            shutil.rmtree(root, ignore_errors=True)
    if demo.failures:
        demo.say(f"\n{len(demo.failures)} rule(s) broken; data kept in {root}")
        return 1
    demo.say("\nall rules held: what the scheduler says about each task is what it does with it.")
    return 0
