"""Starting `easysched run` as a child process and waiting on conditions: for the demo, benches and tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition did not hold before its deadline."""


def wait_for(what: str, probe: Callable[[], T], timeout: float = 15.0, every: float = 0.01) -> T:
    """Poll `probe` until it returns a truthy value; raise WaitTimeout naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a zombie has finished its work)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def start_run(root: Path, log: IO[bytes], *extra: str) -> subprocess.Popen[bytes]:
    """Start `easysched run` on `root` and return once it is ready (its run.json exists)."""
    ready = root / "run.json"
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "easysched_es", "--data-dir", str(root), "run", *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_for("`easysched run` to be ready", lambda: ready.exists() or proc.poll() is not None, timeout=30)
    if proc.poll() is not None:
        raise RuntimeError(f"`easysched run` exited with {proc.returncode} before it was ready")
    return proc


def stop_run(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def task_processes(runs_dir: Path) -> set[bytes]:
    """Attempt keys of the live (non-zombie) task processes of a data directory's worker, from /proc.

    Every process a task starts carries its attempt key in its environment, so a task's shell and
    its children count once.
    """
    needle = f"EASYSCHED_ATTEMPT_KEY={runs_dir}|".encode()
    keys: set[bytes] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        at = environ.find(needle)
        if at >= 0 and pid_alive(int(entry)):
            end = environ.find(b"\0", at)
            keys.add(environ[at:end if end >= 0 else None])
    return keys
