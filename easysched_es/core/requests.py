"""Idempotent commands: a client's `request_id` and the first decision the fold made for it.

A client that retries (a timeout, a lost connection) sends the same command again with the same
`request_id`. The fold remembers, per partition, the recent request ids and what it decided for
each: the offset of the first command, its instance (the new one, for a start) and the reason if
it was rejected. A repeat changes nothing and yields one `RequestRepeated` carrying that first
decision, so a retried `start` returns the instance the first one created.

Bounded, and decided in the fold (so every replay forgets the same ids at the same step): an id is
remembered for `REQUEST_WINDOW_MS` after its first command, and at most `MAX_REQUESTS` ids per
partition (the oldest go first). A repeat after that is decided again as a new command.
"""

from __future__ import annotations

import msgspec

from easysched_es.core import commands as c
from easysched_es.core import events as e

# How long (command time) and how many request ids a partition remembers.
REQUEST_WINDOW_MS = 24 * 3600 * 1000
MAX_REQUESTS = 10_000
# A request id is the client's: any printable text up to this length.
MAX_REQUEST_ID = 128


class RequestRecord(msgspec.Struct, array_like=True, omit_defaults=True):
    """The first decision for one request id (kept in the state and its snapshots)."""

    offset: int
    at: int
    command: str
    instance: str = ""
    rejected: str = ""


def check(command: c.Command) -> str | None:
    """Why the command's request id cannot be used, or None (no id, or a good one)."""
    rid = command.request_id
    if len(rid) > MAX_REQUEST_ID:
        return f"request_id is {len(rid)} characters long; at most {MAX_REQUEST_ID}"
    if not rid.isprintable():
        return "request_id must be printable text (no control characters)"
    return None


def repeat(requests: dict[str, RequestRecord], command: c.Command, tag: str) -> e.Event | None:
    """The event answering a repeat of a remembered request id, or None when it is new here."""
    first = requests.get(command.request_id)
    if first is None:
        return None
    if first.command != tag:
        return e.CommandRejected(
            command=tag, reason=f"request_id {command.request_id!r} was used for a {first.command!r} command "
            f"at offset {first.offset}; a new request needs a new id")
    return e.RequestRepeated(request_id=command.request_id, first_offset=first.offset, command=tag,
                             instance=first.instance, rejected=first.rejected)


def remember(requests: dict[str, RequestRecord], command: c.Command, tag: str, offset: int,
             events: list[e.Event], now: int) -> None:
    """Record the first decision for the command's request id; forget ids out of the window."""
    instance = str(getattr(command, "instance", ""))
    rejected = ""
    for ev in events:
        if isinstance(ev, e.BackfillStarted) and not instance:
            instance = ev.backfill  # a backfill's request: its id, not its first date's instance
        elif isinstance(ev, e.WorkflowStarted) and not instance:
            instance = ev.instance
        elif isinstance(ev, e.CommandRejected):
            rejected = ev.reason
    requests[command.request_id] = RequestRecord(offset, command.at, tag, instance, rejected)
    # Insertion order is command order: the oldest ids are at the front.
    horizon = now - REQUEST_WINDOW_MS
    while requests:
        oldest = next(iter(requests))
        if len(requests) <= MAX_REQUESTS and requests[oldest].at >= horizon:
            break
        del requests[oldest]
