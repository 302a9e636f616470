"""A Kafka partition's snapshots: the compacted `<prefix>.snapshots` topic, one key per partition.

A snapshot is an optimisation, never the truth: a master writes one every `--snapshot-every`
commands of a partition, in the transaction of its decisions, and a new owner starts from the
newest good one and folds the commands after it. A snapshot over the topics' record limit is
not written (`SNAPSHOT_LIMIT`: the master says so), since it would fail the whole transaction.
"""

from __future__ import annotations

import logging

import msgspec

from easysched_es.core.codec import decode_snapshot
from easysched_es.core.state import State
from easysched_es.log.kafka import MAX_RECORD_BYTES, KafkaStream

log = logging.getLogger(__name__)

SNAPSHOT_LIMIT = MAX_RECORD_BYTES - (64 << 10)
"""The largest snapshot record a master writes (the topics' record limit, less room for the batch)."""


def snapshot_key(partition: int) -> bytes:
    """The compaction key of a partition's snapshots."""
    return f"p{partition}".encode()


def load_snapshot(snapshots: KafkaStream, partition: int, covering_at_most: int | None = None) -> State | None:
    """The newest good snapshot of `partition` whose position is at most `covering_at_most`."""
    end = snapshots.end(partition)
    best: State | None = None
    for record in snapshots.iter_records(partition, max(0, end - 16)):
        try:
            snap = decode_snapshot(record.payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("snapshot at offset %d of partition %d is unusable: %s", record.offset, partition, exc)
            continue
        if snap.partition != partition or (covering_at_most is not None and snap.position > covering_at_most):
            continue
        if best is None or snap.last_offset >= best.last_offset:
            best = State.restore(snap)
    return best
