"""Output parameters: what a task hands to its downstream tasks (DolphinScheduler's varPool).

A SHELL task sets them by printing `${setValue(key=value)}` (anywhere in a line of its
output, DolphinScheduler's convention) or by writing `key=value` lines to the file named
by `$EASYSCHED_OUTPUT`; the worker parses them with the functions here and reports them
with the finished report, so they are in the log and replay sees them. The fold decides
whether they are acceptable (`problem`): the limits below are the fold's, and a task that
exceeds them fails with the reason.

Propagation follows DolphinScheduler: a task receives the merged pools of its direct
upstream tasks (each pool is the upstream's own inputs plus its outputs, so values flow
along paths); when two upstreams carry the same name, the one that ended first wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_OUTPUTS = 64
"""Most output parameters one task may set."""
MAX_NAME = 128
"""Longest name (characters)."""
MAX_VALUE = 8192
"""Longest value (characters)."""
MAX_TOTAL = 65536
"""Most characters of names and values together, per task."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SET_VALUE = re.compile(r"\$\{setValue\((.*?)\)\}")
MARKER = "${setValue("
"""A line without this text sets nothing (a cheap pre-filter for the worker)."""


def _pair(text: str) -> tuple[str, str]:
    name, _, value = text.partition("=")
    return name.strip(), value


def from_output_line(line: str) -> list[tuple[str, str]]:
    """The `${setValue(name=value)}` settings in one line of task output, in order."""
    if MARKER not in line:
        return []
    return [_pair(m.group(1)) for m in _SET_VALUE.finditer(line)]


def from_output_file(text: str) -> list[tuple[str, str]]:
    """The `name=value` lines of an `$EASYSCHED_OUTPUT` file (blank lines and `#` comments skipped)."""
    pairs = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            pairs.append(_pair(line))
    return pairs


class Collector:
    """Gathers settings in order (a later value of a name replaces the earlier one), bounded.

    It keeps at most one name more than the limit, values one character longer than the
    limit and one character more than the total limit, so that a worker never ships
    unbounded data and the fold still sees (and names) the excess. Once the total limit is
    passed, later settings are dropped (the task fails anyway).
    """

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self._total = 0
        self._full = False

    def add(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Record settings."""
        for name, value in pairs:
            if self._full:
                return
            name = name[: MAX_NAME + 1]
            old = self.values.get(name)
            if old is None and len(self.values) > MAX_OUTPUTS:
                continue
            value = value[: MAX_VALUE + 1]
            total = self._total - (0 if old is None else len(name) + len(old)) + len(name) + len(value)
            if total > MAX_TOTAL:
                value = value[: max(0, len(value) - (total - MAX_TOTAL - 1))]
                total = MAX_TOTAL + 1
                self._full = True
            self.values[name] = value
            self._total = total


def problem(outputs: dict[str, str]) -> str:
    """Why a finished report's output parameters cannot be accepted, or "" if they can."""
    if len(outputs) > MAX_OUTPUTS:
        return f"it set more than {MAX_OUTPUTS} output parameters"
    total = 0
    for name, value in outputs.items():
        if not _NAME.fullmatch(name[:MAX_NAME + 1]):
            return (f"output parameter name {name[:60]!r} is not a valid name "
                    "(letters, digits and _, not starting with a digit)")
        if name.startswith("EASYSCHED_"):
            return f"output parameter {name!r} uses the reserved prefix EASYSCHED_"
        if len(name) > MAX_NAME:
            return f"output parameter name {name[:60]!r}... is longer than {MAX_NAME} characters"
        if len(value) > MAX_VALUE:
            return f"output parameter {name!r} has a value longer than {MAX_VALUE} characters"
        total += len(name) + len(value)
    if total > MAX_TOTAL:
        return f"its output parameters hold more than {MAX_TOTAL} characters in all"
    return ""
