"""Helpers for integration tests with real processes: wait with a deadline, run the CLI, a live `run`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from easysched_es.core.state import State
from easysched_es.runtime.embedded.client import Client
from easysched_es.runtime.embedded.datadir import DataDir
from easysched_es.runtime.embedded.local_run import pid_alive, start_run, stop_run, wait_for
from easysched_es.runtime.fold import load_state

T = TypeVar("T")

__all__ = ["Run", "cli", "cli_json", "group_members", "kill_leftovers", "pid_alive", "wait_until"]


def wait_until(what: str, probe: Callable[[], T], timeout: float = 60.0, every: float = 0.01) -> T:
    """Poll until `probe()` is truthy; fail with `what` after the deadline (generous: a loaded CI machine)."""
    return wait_for(what, probe, timeout, every)


def cli(data_dir: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `easysched --data-dir DIR ARGS...` as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "easysched_es", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"easysched {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def cli_json(data_dir: Path, *args: str) -> Any:
    """Run a CLI command with --json and decode its output."""
    return json.loads(cli(data_dir, *args, "--json", check=True).stdout)


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(") ", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                found.append(int(entry))
    return found


class Run:
    """A real `easysched run` process on a data directory."""

    def __init__(self, root: Path, *extra: str) -> None:
        self.root = root
        self.data = DataDir(root)
        self.client = Client(root)
        self.log_path = root / f"run-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = start_run(root, self._log, "--kill-grace", "2", "--no-projections", *extra)

    def log(self) -> str:
        """What the run process printed."""
        return self.log_path.read_text(errors="replace")

    def state(self) -> State:
        """The state folded from the log."""
        return load_state(self.data)

    def task(self, instance: str, task: str) -> Any:
        """A task instance as the state holds it (None if not submitted)."""
        return self.state().instances[instance].tasks.get(task)

    def kill9(self) -> None:
        """Crash the run process (task processes live on in their own sessions)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def stop(self) -> None:
        """Stop it gracefully."""
        stop_run(self.proc)
        self._log.close()


def kill_leftovers(root: Path) -> None:
    """Kill any task process group a test left behind (found by its attempt marker)."""
    needle = f"EASYSCHED_ATTEMPT_KEY={DataDir(root).runs}|".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
            if needle in environ:
                with contextlib.suppress(OSError):
                    os.killpg(int(entry), signal.SIGKILL)
