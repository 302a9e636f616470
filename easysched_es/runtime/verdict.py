"""What both clients return for a command (`Verdict`, `CommandRejectedError`) and where an instance lives.

A module of its own, light to import: the Kafka CLI's `start` needs these and nothing of the
fold, the embedded log or the core's step (`bench/kafka.py` prints the import time).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from easysched_es.core.events import Event

__all__ = ["CommandRejectedError", "Verdict", "instance_partition"]


class CommandRejectedError(Exception):
    """The master rejects the command; `reason` says why."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


@dataclass
class Verdict:
    """What the master decides for one appended command."""

    offset: int
    events: list[Event] = field(default_factory=list)
    # True when the running master's own decision was read back (events log tail); False when
    # no master runs and the client folded the log (the command waits for `easysched run`).
    by_master: bool = False


def instance_partition(instance: str) -> int:
    """The partition of an instance id "<partition>-<offset>" (the offset of its StartWorkflow)."""
    head, sep, _ = instance.partition("-")
    if not sep or not head.isdigit():
        raise ValueError(f"{instance!r} is not an instance id (expected PARTITION-OFFSET, e.g. 0-42)")
    return int(head)
