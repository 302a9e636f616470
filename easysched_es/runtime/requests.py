"""The client side of idempotent commands (core/requests.py decides): ids, routing, reading a verdict.

A request id is made at the edge (a CLI invocation, a client call that wants to retry safely) and
sent with the command; a retry sends the same id and gets the first decision back. On Kafka a start
with an id goes to the partition the id hashes to, so a retry reaches the partition that remembers it.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterable

from easysched_es.core.events import CommandRejected, Event, RequestRepeated, WorkflowStarted

__all__ = ["new_request_id", "partition_for", "rejection", "started_instance"]


def new_request_id() -> str:
    """A fresh request id (random: made at the edge, never in the fold)."""
    return uuid.uuid4().hex


def partition_for(request_id: str, partitions: int) -> int:
    """The partition a start with this request id goes to (stable across processes and versions)."""
    return zlib.crc32(request_id.encode()) % partitions


def rejection(events: Iterable[Event]) -> str | None:
    """The reason the command (or, for a repeat, its first decision) was rejected, else None."""
    for ev in events:
        if isinstance(ev, CommandRejected):
            return ev.reason
        if isinstance(ev, RequestRepeated) and ev.rejected:
            return ev.rejected
    return None


def started_instance(events: Iterable[Event]) -> str:
    """The instance a start created (or, for a repeat, the one its first decision created)."""
    for ev in events:
        if isinstance(ev, WorkflowStarted) or (isinstance(ev, RequestRepeated) and ev.instance):
            return ev.instance
    raise ValueError("the verdict holds no started instance")
