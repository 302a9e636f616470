"""Spawning a task's shell without holding the GIL (glibc's posix_spawn through ctypes).

CPython before 3.12 holds the GIL for the whole of `os.posix_spawn`: the parent is suspended
(vfork) until the child has exec'ed, and on a loaded machine that child can wait milliseconds
for a CPU. Every other thread of the process (the fold, the appender, the reaper) stops with
it, and a fan-out of a thousand `true`s becomes a thousand such stalls in a row. ctypes
releases the GIL around foreign calls, so the same libc call made through it lets the other
threads run, and several spawner threads overlap their waits.

The child gets exactly what `os.posix_spawn` gave it: stdin from /dev/null, stdout and stderr
on the given fd, a new session (so a kill reaches its whole process group), and the given
signals reset to their defaults. Where the libc functions are not found (not glibc), the
stdlib call is used.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Iterable, Mapping

# glibc's <spawn.h> flags (Linux).
_SETSIGDEF = 0x04
_SETSID = 0x80
# Opaque glibc structures, over-allocated (x86_64: 80, 336 and 128 bytes).
_OPAQUE = 1024


def _load() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        for name in ("posix_spawn", "posix_spawn_file_actions_init", "posix_spawn_file_actions_addopen",
                     "posix_spawn_file_actions_adddup2", "posix_spawn_file_actions_destroy",
                     "posix_spawnattr_init", "posix_spawnattr_setflags", "posix_spawnattr_setsigdefault",
                     "posix_spawnattr_destroy", "sigemptyset", "sigaddset", "gnu_get_libc_version"):
            getattr(libc, name)
    except (OSError, AttributeError):
        return None
    libc.posix_spawn.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_void_p,
                                 ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    libc.posix_spawn_file_actions_addopen.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p,
                                                      ctypes.c_int, ctypes.c_uint]
    libc.posix_spawnattr_setflags.argtypes = [ctypes.c_void_p, ctypes.c_short]
    return libc


_LIBC = _load()


def _c_strings(values: list[bytes]) -> ctypes.Array[ctypes.c_char_p]:
    if b"\0" in b"".join(values):
        raise ValueError("embedded null byte")
    return (ctypes.c_char_p * (len(values) + 1))(*values, None)


def _encode(text: str) -> bytes:
    # os.fsencode's rule (the file system encoding, surrogateescape) without its Python frames:
    # this runs for every environment entry of every spawn.
    return text.encode(_FS_ENCODING, "surrogateescape")


_FS_ENCODING = sys.getfilesystemencoding()


def spawn(path: str, argv: list[str], env: Mapping[str, str], output_fd: int,
          reset_signals: Iterable[signal.Signals]) -> int:
    """Start `path` with `argv` and exactly `env` in a new session; stdout and stderr on `output_fd`.

    Returns the child's pid; raises OSError if it could not be started, ValueError for a NUL
    in an argument or the environment (as `os.posix_spawn` does).
    """
    reset = list(reset_signals)
    if _LIBC is None:
        return os.posix_spawn(
            path, argv, env,
            file_actions=[(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                          (os.POSIX_SPAWN_DUP2, output_fd, 1), (os.POSIX_SPAWN_DUP2, output_fd, 2)],
            setsid=True, setsigdef=reset,
        )
    if any(not k or "=" in k for k in env):
        raise ValueError("illegal environment variable name")  # as os.posix_spawn refuses it
    c_argv = _c_strings([_encode(a) for a in argv])
    c_env = _c_strings([_encode(f"{k}={v}") for k, v in env.items()])
    c_path = _encode(path)
    if b"\0" in c_path:
        raise ValueError("embedded null byte")
    actions = ctypes.create_string_buffer(_OPAQUE)
    attr = ctypes.create_string_buffer(_OPAQUE)
    sigdef = ctypes.create_string_buffer(_OPAQUE)
    libc = _LIBC
    _check(libc.posix_spawn_file_actions_init(actions))
    try:
        _check(libc.posix_spawn_file_actions_addopen(actions, 0, b"/dev/null", os.O_RDONLY, 0))
        _check(libc.posix_spawn_file_actions_adddup2(actions, output_fd, 1))
        _check(libc.posix_spawn_file_actions_adddup2(actions, output_fd, 2))
        _check(libc.posix_spawnattr_init(attr))
        try:
            libc.sigemptyset(sigdef)
            for signum in reset:
                libc.sigaddset(sigdef, int(signum))
            _check(libc.posix_spawnattr_setsigdefault(attr, sigdef))
            _check(libc.posix_spawnattr_setflags(attr, _SETSID | _SETSIGDEF))
            pid = ctypes.c_int(0)
            # The call that waits for the child's exec: made with the GIL released.
            _check(libc.posix_spawn(ctypes.byref(pid), c_path, actions, attr, c_argv, c_env))
            return pid.value
        finally:
            libc.posix_spawnattr_destroy(attr)
    finally:
        libc.posix_spawn_file_actions_destroy(actions)


def _check(err: int) -> None:
    # The posix_spawn family returns an error number instead of setting errno.
    if err:
        raise OSError(err, os.strerror(err))
