"""Capacity limits checked at the door (`define` and `start`): what the runtime can actually do.

Everything a SHELL task gets reaches it through `posix_spawn` as environment strings: its
parameters, its `env`, the runtime's own variables and its command (`EASYSCHED_SCRIPT`). Linux
refuses a single string longer than MAX_ARG_STRLEN (128 KiB) and a whole environment plus
arguments beyond ARG_MAX (2 MiB by default), and the spawn would fail at dispatch time, long
after the definition was accepted. These checks refuse such input first, naming the field.
(NUL characters, `=` in names and unencodable values are refused by `spawn_rules.py`.)

Precedence, for names a definition may set: the worker's inherited environment (PATH, HOME,
...) < workflow parameters < the task's `env` < the variables the runtime sets. Parameters may
override inherited variables on purpose (PATH, LANG) and DolphinScheduler's built-in
`system_*` time values; names the runtime itself sets after them (`EASYSCHED_*`, `DS_DATE`,
`DS_TIME`) would be silently replaced, so they are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

MAX_NAME = 256
"""Characters in a workflow, task, parameter, pool or worker-group name."""
MAX_PARAMS = 1_000
"""Parameters of a workflow (or of one start), and `env` entries of one task."""
MAX_ENV_STRING = 128 * 1024 - 1
"""Bytes of one environment string `NAME=value` (Linux MAX_ARG_STRLEN, less its NUL)."""
MAX_ENV_TOTAL = 1024 * 1024
"""Bytes of everything the fold puts in a task's environment (half of Linux's default ARG_MAX:
the rest is left to the worker's inherited environment)."""
MAX_DEFINITION_BYTES = 4 * 1024 * 1024
"""Encoded size of one workflow definition (every snapshot holds every version)."""
MAX_RETRY_TIMES = 1_000
MAX_RETENTION_DAYS = 3650.0
MIN_RETRY_INTERVAL = 0.1
"""Seconds: a positive retry_interval below this is refused (0 retries at once)."""
RUNTIME_PREFIX = "EASYSCHED_"
RUNTIME_NAMES = frozenset({"DS_DATE", "DS_TIME"})
# The runtime variables' own share of the environment (names, ids, times, paths of the worker).
RUNTIME_ENV_BYTES = 4 * 1024

_encoder = msgspec.msgpack.Encoder()


def _env_bytes(name: str, value: str) -> int:
    return len(name.encode("utf-8", "surrogatepass")) + len(value.encode("utf-8", "surrogatepass")) + 2


def name_problem(field: str, name: str) -> str | None:
    """Why a name is too long, or None."""
    if len(name) > MAX_NAME:
        return f"{field} is {len(name)} characters long; at most {MAX_NAME}"
    return None


def env_limits(field: str, env: Mapping[str, str], *, runtime_names: bool = True) -> tuple[str | None, int]:
    """Why an environment mapping exceeds a limit (or None), and its size in bytes."""
    if len(env) > MAX_PARAMS:
        return f"{field}: {len(env)} entries; at most {MAX_PARAMS}", 0
    total = 0
    for name, value in env.items():
        if len(name) > MAX_NAME:  # name_problem's test, checked before its message is built
            return name_problem(f"{field} name {name[:40]!r}", name), 0
        if runtime_names and (name.startswith(RUNTIME_PREFIX) or name in RUNTIME_NAMES):
            return (f"{field} {name!r} would be replaced by the variable the runtime sets under that name "
                    f"(EASYSCHED_*, DS_DATE, DS_TIME are reserved); rename it"), 0
        size = _env_bytes(name, value)
        if size > MAX_ENV_STRING:
            return (f"{field} {name!r} is {size:,} bytes; a process accepts at most {MAX_ENV_STRING:,} bytes "
                    "per environment variable (pass large data as a file path)"), 0
        total += size
    return None, total


def definition_problem(definition: Any) -> str | None:
    """The first field of a definition beyond what the runtime can do, or None."""
    size = len(_encoder.encode(definition))
    if size > MAX_DEFINITION_BYTES:
        return f"the definition is {size:,} bytes encoded; at most {MAX_DEFINITION_BYTES:,}"
    problem = name_problem("the workflow name", definition.name) or name_problem(
        "worker_group", definition.worker_group)
    if problem:
        return problem
    if definition.max_parallel_tasks < 0 or definition.max_active_instances < 0:
        return "max_parallel_tasks and max_active_instances must be >= 0 (0 = no limit)"
    days = definition.retention_days
    if days is not None and not 0 < days <= MAX_RETENTION_DAYS:  # also false for NaN
        return f"retention_days must be more than 0 and at most {MAX_RETENTION_DAYS:g}"
    problem, params = env_limits("parameter", definition.params)
    if problem:
        return problem
    for task in definition.tasks:
        problem = task_problem(task, params)
        if problem:
            return f"task {task.name[:60]!r}: {problem}"
    return None


def task_problem(task: Any, params_bytes: int) -> str | None:
    """Why one task is beyond the runtime's limits (its environment counted with `params_bytes`), or None."""
    problem = name_problem("the task name", task.name) or name_problem("worker_group", task.worker_group or "")
    problem = problem or name_problem("pool", getattr(task, "pool", None) or "")
    if problem:
        return problem
    if task.retry_times > MAX_RETRY_TIMES:
        return f"retry_times is {task.retry_times}; at most {MAX_RETRY_TIMES}"
    if 0 < task.retry_interval < MIN_RETRY_INTERVAL:
        return f"retry_interval must be 0 (retry at once) or >= {MIN_RETRY_INTERVAL:g} seconds"
    env = getattr(task, "env", None)
    if not isinstance(env, dict):
        return None
    problem, env_bytes = env_limits("env", env)
    if problem:
        return problem
    script = _env_bytes(f"{RUNTIME_PREFIX}SCRIPT", task.command)
    if script > MAX_ENV_STRING:
        return (f"the command is {script:,} bytes; a process accepts at most {MAX_ENV_STRING:,} bytes per "
                "environment string (put a long script in a file and run that)")
    total = params_bytes + env_bytes + script + RUNTIME_ENV_BYTES
    if total > MAX_ENV_TOTAL:
        return (f"parameters, env and command make a {total:,}-byte environment; at most {MAX_ENV_TOTAL:,} "
                "(Linux ARG_MAX, less room for the worker's own environment)")
    return None


def start_problem(definition: Any, params: Mapping[str, str]) -> str | None:
    """Why a start's parameters (merged over the definition's) are beyond the runtime's limits, or None."""
    if not params:
        return None  # the definition's own parameters passed `define`
    problem, _ = env_limits("parameter", params)
    if problem:
        return problem
    merged = {**definition.params, **params}
    problem, size = env_limits("parameter", merged)
    if problem:
        return problem
    if size <= _start_headroom(definition):
        return None  # no task's environment can exceed MAX_ENV_TOTAL with these parameters
    for task in definition.tasks:
        problem = task_problem(task, size)
        if problem:
            return f"with these parameters, task {task.name[:60]!r}: {problem}"
    return None


# id(definition) -> (definition, headroom): kept alive by the entry, so an id is never reused.
_HEADROOM: dict[int, tuple[Any, int]] = {}


def _start_headroom(definition: Any) -> int:
    """The largest parameter size for which `task_problem` is None for every task, else -1.

    Every check of `task_problem` but the total depends on the task alone, so it is decided
    once per definition (a start is the fold's hot path) instead of once per task per start.
    """
    cached = _HEADROOM.get(id(definition))
    if cached is not None and cached[0] is definition:
        return cached[1]
    headroom = MAX_ENV_TOTAL
    for task in definition.tasks:
        if task_problem(task, 0) is not None:
            headroom = -1  # some task is refused whatever the parameters: the full loop says which
            break
        env = getattr(task, "env", None)
        if isinstance(env, dict):
            fixed = env_limits("env", env)[1] + _env_bytes(f"{RUNTIME_PREFIX}SCRIPT", task.command)
            headroom = min(headroom, MAX_ENV_TOTAL - fixed - RUNTIME_ENV_BYTES)
    if len(_HEADROOM) >= 1024:
        _HEADROOM.clear()
    _HEADROOM[id(definition)] = (definition, headroom)
    return headroom
