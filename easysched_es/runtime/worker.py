"""The worker: runs SHELL task attempts as real subprocesses, each in its own process group.

Idempotency comes from a claim file per attempt, created with O_EXCL before the spawn: a
second dispatch of the same attempt (a retried effect after a crash) finds the claim and
adopts or reports the existing process instead of starting another. Every process carries
its attempt key in its environment, so a restarted worker can find it in /proc even if it
died before writing the pid into the claim.

The script runs under a small `sh` wrapper that writes the exit code to `<claim>.rc`: a
worker that adopts a process it did not spawn cannot wait for it, but it can read that.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
import logging
import os
import queue
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from easysched_es.core import commands as c
from easysched_es.core.events import DispatchTask, Event, KillTaskProcess
from easysched_es.runtime.clock import wall_ms
from easysched_es.runtime.spawn import spawn
from easysched_es.runtime.task_outputs import collect as collect_outputs

log = logging.getLogger(__name__)

# `eval` keeps the script in this shell (a builtin-only script spawns nothing more); the EXIT
# trap records the exit code for adoption after a restart. A signal death leaves no file.
WRAPPER = 'trap \'echo $? > "$EASYSCHED_RC"\' EXIT\neval "$EASYSCHED_SCRIPT"'
KILLED_BEFORE_START = "killed"
# The exit code reported for an attempt whose process could not be started (the shell's "not found").
SPAWN_FAILED_RC = 127
_RESET_SIGNALS = tuple(s for s in (signal.SIGPIPE, getattr(signal, "SIGXFSZ", None)) if s is not None)

Key = tuple[str, str, int]
Report = Callable[[c.Command], None]


@dataclass
class _Proc:
    key: Key
    pid: int
    pidfd: int
    claim: Path
    child: bool
    killed: bool = False
    kill_deadline: float | None = None


class Worker:
    """Runs dispatch and kill effects; reports what happened through `report`."""

    def __init__(
        self,
        runs_dir: Path,
        logs_dir: Path,
        report: Report,
        *,
        name: str | None = None,
        kill_grace: float = 5.0,
        spawners: int = 4,
    ) -> None:
        self.runs_dir = runs_dir
        self.logs_dir = logs_dir
        self.report = report
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.kill_grace = kill_grace
        self._procs: dict[Key, _Proc] = {}
        self._lock = threading.Lock()
        # Several effect threads, each owning the attempts of some tasks: a spawn spends most
        # of its time waiting (file creation behind the file system's journal, the child's
        # exec), so one thread alone caps a fan-out far below what the machine can start.
        # A task's effects stay in one thread, so its dispatch and kill keep their order.
        self._effects: list[queue.SimpleQueue[Event | None]] = [queue.SimpleQueue() for _ in range(max(1, spawners))]
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._deadlines: list[tuple[float, Key]] = []
        self._dirs: set[Path] = set()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._effect_loop, args=(q,), name=f"worker-effects-{i}", daemon=True)
            for i, q in enumerate(self._effects)
        ]
        self._threads.append(threading.Thread(target=self._reap_loop, name="worker-reaper", daemon=True))
        self._base_env = {k: v for k, v in os.environ.items() if not k.startswith("EASYSCHED_")}

    # ---- public API ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the effect and reaper threads."""
        for t in self._threads:
            t.start()

    def submit(self, effect: Event) -> None:
        """Queue a DispatchTask or KillTaskProcess; the effects of one task run in submission order."""
        shard = hash((getattr(effect, "instance", ""), getattr(effect, "task", ""))) % len(self._effects)
        self._effects[shard].put(effect)

    def running(self) -> dict[Key, int]:
        """The attempts this worker watches, with their pids."""
        with self._lock:
            return {k: p.pid for k, p in self._procs.items()}

    def kill_all(self) -> list[Key]:
        """SIGKILL the process group of every attempt this worker watches, now (no grace).

        For a worker fenced off (declared lost): its attempts run elsewhere already. The reaper
        still reports each end; the fold ignores those reports.
        """
        with self._lock:
            procs = list(self._procs.values())
            for proc in procs:
                proc.killed = True
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        os.write(self._wake_w, b"x")
        return [proc.key for proc in procs]

    def kill_strays(self, keep: set[Key]) -> list[Key]:
        """SIGKILL the process groups started from this worker's directory for attempts not in `keep`.

        Found in /proc by their attempt marker: processes a previous run of this worker left behind
        (it was killed, or declared lost) whose attempts the fold no longer gives to it. Their
        attempts were rerun elsewhere or ended; letting them run on would run the task twice.
        """
        prefix = f"EASYSCHED_ATTEMPT_KEY={self.runs_dir}|".encode()
        groups: dict[int, Key] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
                at = environ.find(prefix)
                if at < 0 or (at > 0 and environ[at - 1] != 0):
                    continue
                value = environ[at + len(prefix):].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                instance, rest = value.split("|", 1)
                task, attempt = rest.rsplit("|", 1)
                key = (instance, task, int(attempt))
                if key not in keep:
                    groups[os.getpgid(int(entry))] = key
            except (OSError, ValueError):
                continue  # gone meanwhile, or not one of ours
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        return sorted(set(groups.values()))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads. Task processes keep running: a restarted worker adopts them."""
        self._stopping.set()
        for effects in self._effects:
            effects.put(None)
        os.write(self._wake_w, b"x")
        for t in self._threads:
            if t.is_alive():
                t.join(timeout)

    # ---- effects ---------------------------------------------------------------------------

    def _effect_loop(self, effects: queue.SimpleQueue[Event | None]) -> None:
        while True:
            effect = effects.get()
            if effect is None:
                return
            try:
                if isinstance(effect, DispatchTask):
                    self._dispatch(effect)
                elif isinstance(effect, KillTaskProcess):
                    self._kill(effect)
            except Exception:
                log.exception("effect %r failed", effect)

    def _paths(self, instance: str, task: str, attempt: int) -> tuple[Path, Path]:
        run_dir = self.runs_dir / quote(instance, safe="")
        log_dir = self.logs_dir / quote(instance, safe="")
        for d in (run_dir, log_dir):
            if d not in self._dirs:
                d.mkdir(parents=True, exist_ok=True)
                self._dirs.add(d)
        name = attempt_file_name(task, attempt)
        return run_dir / name, log_dir / f"{name}.log"

    def _marker(self, key: Key) -> str:
        return f"{self.runs_dir}|{key[0]}|{key[1]}|{key[2]}"

    def _dispatch(self, eff: DispatchTask) -> None:
        key = (eff.instance, eff.task, eff.attempt)
        try:
            claim, log_path = self._paths(*key)
        except Exception as exc:  # e.g. a name the file system refuses: nothing was claimed or run
            self._spawn_failed(eff, f"could not prepare the attempt's files: {exc}")
            return
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            self._recover(key, claim, killed=False)
            return
        except Exception as exc:
            self._spawn_failed(eff, f"could not claim the attempt: {exc}")
            return
        try:
            env = dict(self._base_env)
            env.update(eff.env)
            env.update(eff.task_env)
            env["EASYSCHED_TASK"] = eff.task
            env["EASYSCHED_ATTEMPT"] = str(eff.attempt)
            env["EASYSCHED_SCRIPT"] = eff.command
            env["EASYSCHED_RC"] = f"{claim}.rc"
            env["EASYSCHED_OUTPUT"] = f"{claim}.out"  # key=value lines: output parameters
            env["EASYSCHED_ATTEMPT_KEY"] = self._marker(key)
            env["EASYSCHED_TASK_LOG"] = str(log_path)
            # The log file is created here (the GIL released), not by a spawn file action run
            # while the parent waits for the child; the fd is close-on-exec, the child gets dups.
            log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                pid = spawn("/bin/sh", ["sh", "-c", WRAPPER], env, log_fd, _RESET_SIGNALS)
            finally:
                os.close(log_fd)
        except Exception as exc:
            # Any reason (OSError, a ValueError for a NUL in the environment...): the attempt
            # failed; nothing may stay in DISPATCH. The rc file answers a restart the same way.
            os.close(fd)
            with contextlib.suppress(OSError):
                Path(f"{claim}.rc").write_text(f"{SPAWN_FAILED_RC}\n")
            self._spawn_failed(eff, f"could not start the process: {type(exc).__name__}: {exc}")
            return
        try:
            os.write(fd, json.dumps({"pid": pid, "worker": self.name}).encode())
        except OSError:
            # The process runs; a restart finds it by its attempt marker instead.
            log.exception("could not record pid %d in %s", pid, claim)
        os.close(fd)
        self._watch(key, pid, claim, child=True, killed=False)
        self.report(
            c.TaskStarted(
                at=wall_ms(),
                instance=eff.instance,
                task=eff.task,
                attempt=eff.attempt,
                pid=pid,
                worker=self.name,
                log_path=str(log_path),
            )
        )

    def _spawn_failed(self, eff: DispatchTask, detail: str) -> None:
        log.error("attempt %s/%s/%d failed to start: %s", eff.instance, eff.task, eff.attempt, detail)
        self.report(
            c.TaskFinished(
                at=wall_ms(), instance=eff.instance, task=eff.task, attempt=eff.attempt,
                exit_code=SPAWN_FAILED_RC, worker=self.name, detail=detail,
            )
        )

    def _kill(self, eff: KillTaskProcess) -> None:
        key = (eff.instance, eff.task, eff.attempt)
        with self._lock:
            proc = self._procs.get(key)
        if proc is not None:
            self._terminate(proc)
            return
        claim, _ = self._paths(*key)
        try:
            # Nothing was spawned yet: leave a claim that forbids a later spawn of this attempt.
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            self._recover(key, claim, killed=True)
            return
        os.write(fd, KILLED_BEFORE_START.encode())
        os.close(fd)
        self._finished(key, -signal.SIGTERM, killed=True, detail="killed before its process started")

    def _recover(self, key: Key, claim: Path, *, killed: bool) -> None:
        """The attempt was claimed before (by us, or by a worker that crashed): adopt or report it."""
        with self._lock:
            known = self._procs.get(key)
        if known is not None:
            if killed:
                self._terminate(known)
            return
        try:
            content = claim.read_text()
        except OSError:
            content = ""
        if content == KILLED_BEFORE_START:
            if killed:
                self._finished(key, -signal.SIGTERM, killed=True, detail="killed before its process started")
            return
        pid = None
        if content:
            with contextlib.suppress(ValueError):
                pid = int(json.loads(content)["pid"])
        if pid is None or not self._is_ours(pid, key):
            pid = self._find_by_marker(key)
        if pid is not None:
            proc = self._watch(key, pid, claim, child=False, killed=False)
            if killed:
                self._terminate(proc)
            else:
                self.report(
                    c.TaskAdopted(at=wall_ms(), instance=key[0], task=key[1], attempt=key[2], pid=pid, worker=self.name)
                )
            return
        rc = _read_rc(claim)
        if rc is not None:
            self._finished(key, rc, killed=killed, detail="finished while the worker was down")
        elif killed:
            self._finished(key, -signal.SIGKILL, killed=True, detail="process already gone")
        else:
            self.report(
                c.TaskLost(
                    at=wall_ms(),
                    instance=key[0],
                    task=key[1],
                    attempt=key[2],
                    worker=self.name,
                    reason="process gone without an exit code while the worker was down",
                )
            )

    def _is_ours(self, pid: int, key: Key) -> bool:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return False
        return f"EASYSCHED_ATTEMPT_KEY={self._marker(key)}\0".encode() in environ + b"\0"

    def _find_by_marker(self, key: Key) -> int | None:
        needle = f"EASYSCHED_ATTEMPT_KEY={self._marker(key)}\0".encode()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    environ = Path(f"/proc/{entry}/environ").read_bytes() + b"\0"
                except OSError:
                    continue
                if needle in environ:
                    return int(entry)
        return None

    def _finished(self, key: Key, exit_code: int, *, killed: bool, detail: str = "") -> None:
        found: dict[str, str] = {}
        if exit_code == 0 and not killed:
            claim, log_path = self._paths(*key)
            found = collect_outputs(log_path, Path(f"{claim}.out"))
        self.report(
            c.TaskFinished(
                at=wall_ms(),
                instance=key[0],
                task=key[1],
                attempt=key[2],
                exit_code=exit_code,
                killed=killed,
                worker=self.name,
                detail=detail,
                outputs=found,
            )
        )

    # ---- processes -------------------------------------------------------------------------

    def _watch(self, key: Key, pid: int, claim: Path, *, child: bool, killed: bool) -> _Proc:
        pidfd = os.pidfd_open(pid)
        proc = _Proc(key, pid, pidfd, claim, child, killed)
        with self._lock:
            self._procs[key] = proc
            self._selector.register(pidfd, selectors.EVENT_READ, proc)
        return proc

    def _terminate(self, proc: _Proc) -> None:
        with self._lock:
            if proc.killed:
                return
            proc.killed = True
            proc.kill_deadline = time.monotonic() + self.kill_grace
            heapq.heappush(self._deadlines, (proc.kill_deadline, proc.key))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        os.write(self._wake_w, b"x")

    def _reap_loop(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                timeout = max(0.0, self._deadlines[0][0] - time.monotonic()) if self._deadlines else None
            for selkey, _ in self._selector.select(timeout):
                if selkey.data is None:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                else:
                    self._reap(selkey.data)
            self._escalate()

    def _escalate(self) -> None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._deadlines or self._deadlines[0][0] > now:
                    return
                _, key = heapq.heappop(self._deadlines)
                proc = self._procs.get(key)
            if proc is not None:
                log.warning("task %s did not exit within %.1fs of SIGTERM: sending SIGKILL", key, self.kill_grace)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)

    def _reap(self, proc: _Proc) -> None:
        if proc.killed:
            # The leader is a zombie and still holds its pid, so the group id cannot have been
            # reused: finish off whatever else the script left in the group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        code: int | None
        if proc.child:
            _, status = os.waitpid(proc.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        else:
            code = _read_rc(proc.claim)
            if code is None and proc.killed:
                code = -signal.SIGTERM
        with self._lock:
            self._selector.unregister(proc.pidfd)
            self._procs.pop(proc.key, None)
        os.close(proc.pidfd)
        if code is None:
            self.report(
                c.TaskLost(
                    at=wall_ms(),
                    instance=proc.key[0],
                    task=proc.key[1],
                    attempt=proc.key[2],
                    worker=self.name,
                    reason="adopted process ended without an exit code",
                )
            )
        else:
            self._finished(proc.key, code, killed=proc.killed)


# File names are at most 255 bytes; the attempt's files add ".N.log" / ".N.rc" to the task's part.
_MAX_TASK_PART = 150


def attempt_file_name(task: str, attempt: int) -> str:
    """The file-system-safe base name of an attempt's claim and log files, whatever the task name.

    The name is percent-quoted (`/`, unicode and control characters cannot escape the directory
    or confuse a shell); a quoted name too long for a file name is cut and made unique again
    by a hash of the full name, so any task name the fold accepts gets a usable log file.
    """
    part = quote(task, safe="")
    if len(part) > _MAX_TASK_PART or part in (".", ".."):
        cut = part[:100]
        if "%" in cut[-2:]:
            cut = cut[:cut.rindex("%")]  # never split a %XX escape
        digest = hashlib.sha256(task.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        part = f"{cut}~{digest}"
    return f"{part}.{attempt}"


def _read_rc(claim: Path) -> int | None:
    try:
        return int(Path(f"{claim}.rc").read_text().strip())
    except (OSError, ValueError):
        return None
