"""The GIL-free spawn gives the child what os.posix_spawn gave it: env, fds, session, signals."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from easysched_es.runtime import spawn as spawn_module
from easysched_es.runtime.spawn import spawn


def _run(tmp_path: Path, script: str, env: dict[str, str]) -> tuple[int, str]:
    out = tmp_path / "out.log"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        pid = spawn("/bin/sh", ["sh", "-c", script], env, fd, (signal.SIGPIPE,))
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.read_text()


def test_uses_libc_here() -> None:
    assert spawn_module._LIBC is not None  # glibc: the GIL-free path is the one under test


def test_child_gets_exactly_the_env_the_fds_and_a_new_session(tmp_path: Path) -> None:
    script = 'echo "A=$A"; echo "U=$UNI"; echo err >&2; read x; echo "read=$?"; ps -o pid=,pgid=,sid= -p $$; exit 3'
    code, out = _run(tmp_path, script, {"A": "1 2", "UNI": "h\u00e9", "PATH": os.environ.get("PATH", "/bin")})
    assert code == 3
    lines = out.splitlines()
    assert lines[:4] == ["A=1 2", "U=h\u00e9", "err", "read=1"]  # stdin is /dev/null: read fails at EOF
    pid, pgid, sid = lines[4].split()
    assert pid == pgid == sid  # its own session and process group: a killpg reaches all of it


def test_reset_signals_are_default_in_the_child(tmp_path: Path) -> None:
    old = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        # SIGPIPE ignored here would be inherited as ignored; reset, the child's `kill -PIPE $$` kills it.
        code, _ = _run(tmp_path, "kill -PIPE $$; exit 0", {})
    finally:
        signal.signal(signal.SIGPIPE, old)
    assert code == -signal.SIGPIPE


def test_no_other_fd_leaks_into_the_child(tmp_path: Path) -> None:
    keep = os.open(tmp_path, os.O_RDONLY)  # close-on-exec by default, as every fd Python opens
    try:
        _, out = _run(tmp_path, f"[ -e /proc/$$/fd/{keep} ] && echo leaked || echo closed", {})
    finally:
        os.close(keep)
    assert out.strip() == "closed"


@pytest.mark.parametrize("env", [{"A": "x\0y"}, {"A=B": "1"}, {"": "1"}])
def test_refuses_what_os_posix_spawn_refuses(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        _run(tmp_path, "true", env)
