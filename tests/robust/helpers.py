"""Shared pieces of the robustness tests: flows, poison records, a log with a command that raises."""

from __future__ import annotations

from pathlib import Path

import msgspec

from easysched_es.core.definitions import WorkflowDefinition
from easysched_es.log.embedded import EmbeddedStream


def flow(name: str, *tasks: dict[str, object], **extra: object) -> WorkflowDefinition:
    """A definition from plain data (as YAML would give it)."""
    return msgspec.convert({"name": name, "tasks": list(tasks), **extra}, WorkflowDefinition)


def shell(name: str, command: str = "true", **extra: object) -> dict[str, object]:
    """A SHELL task as plain data."""
    return {"name": name, "type": "SHELL", "command": command, **extra}


def deep_record(depth: int = 5000) -> bytes:
    """Valid msgpack: a `stop` command with an unknown field nested `depth` arrays deep."""
    return b"\x83\xa4type\xa4stop\xa8instance\xa30-0\xa1x" + b"\x91" * depth + b"\xc0"


def append_raw(root: Path, payload: bytes) -> int:
    """Append one raw record to the commands log of data dir `root`; its offset."""
    with EmbeddedStream(root / "commands") as stream:
        return stream.append([payload])[0]
