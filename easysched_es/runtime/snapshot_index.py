"""The sparse snapshot index: which snapshots to keep, and what each one covers, without decoding it.

Replay to an offset or a time starts from the newest snapshot at or before it, so its cost is
one snapshot decode plus the fold of the gap after it. The index keeps many recent snapshots
and fewer old ones (geometric spacing), with a ceiling on the spacing so that the gap, and so
the cost of reaching any point, is bounded however long the log grows.

The spacing rule (`thin`) is stable: a snapshot it keeps is the lowest of an aligned bucket,
and a bucket of width 2w is the union of two of width w, so growing older only ever merges
buckets and never asks for a snapshot that was already deleted.

Each snapshot `<offset>.snap` has a sidecar `<offset>.meta` (msgspec JSON, a few hundred
bytes): the command offset and read position it covers, the state's time, and the position
in the events stream of the first batch after it (for `verify` from a snapshot). A snapshot
without a sidecar (written before the index existed) is still used: its time is then unknown
until it is decoded.
"""

from __future__ import annotations

import msgspec

# Offsets are bytes in the embedded log: 1 MiB is about 10k commands. With the master writing a
# snapshot every 50k commands (~5 MB), the newest three are kept, older ones thin out to one per
# 8 MiB bucket: a replay to any point folds at most ~16 MB (~160k commands) after its snapshot.
DEFAULT_RECENT = 3
DEFAULT_BASE = 1 << 20
DEFAULT_MAX_GAP = 8 << 20


class SnapshotMeta(msgspec.Struct, omit_defaults=True):
    """What one snapshot covers, readable without decoding the snapshot itself."""

    offset: int
    position: int
    now: int | None = None
    events_position: int | None = None
    bytes: int = 0
    instances: int = 0


class Policy(msgspec.Struct, frozen=True):
    """Geometric spacing: keep the `recent` newest, then one per bucket whose width doubles with age.

    The width never exceeds `max_gap`, so two kept snapshots are at most about 2 * max_gap apart.
    """

    recent: int = DEFAULT_RECENT
    base: int = DEFAULT_BASE
    max_gap: int = DEFAULT_MAX_GAP


def thin(offsets: list[int], policy: Policy | None = None) -> set[int]:
    """The offsets to keep among `offsets` (snapshot offsets, any order)."""
    policy = policy or Policy()
    ordered = sorted(set(offsets))
    if len(ordered) <= max(policy.recent, 1):
        return set(ordered)
    newest = ordered[-1]
    cut = len(ordered) - max(policy.recent, 1)  # the newest is always kept
    kept = set(ordered[cut:])
    buckets: set[tuple[int, int]] = set()
    base = max(policy.base, 1)
    ceiling = max(policy.max_gap, base)
    for offset in ordered[:cut]:
        age = newest - offset
        width = base
        while width * 2 <= min(age, ceiling):
            width *= 2
        key = (width, offset // width)
        if key not in buckets:
            buckets.add(key)
            kept.add(offset)
    return kept


def nearest(metas: list[SnapshotMeta], *, until: int | None = None, at: int | None = None) -> list[SnapshotMeta]:
    """The candidates for a fold up to offset `until` or time `at`, best (newest) first.

    A snapshot whose time is unknown (no sidecar) stays a candidate: the loader checks its time
    once decoded and moves on to an older one if it is too late.
    """
    fit = []
    for meta in metas:
        if until is not None and meta.offset > until:
            continue
        if at is not None and meta.now is not None and meta.now > at:
            continue
        fit.append(meta)
    return sorted(fit, key=lambda m: m.offset, reverse=True)
