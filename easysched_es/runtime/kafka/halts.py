"""A Kafka partition stopped by a command whose application raised, and the `skip` that lets it go on.

As on the embedded log (runtime/embedded/master.py, runtime/fold.py): a decoded command whose
application raises is a bug. The master decides nothing at or after it in that partition (the
state may be half changed), commits what it decided before it, says so loudly (the offset, the
command and the error), and stops ticking the partition. An operator appends `skip OFFSET
--reason ...` to that partition (`easysched skip --kafka OFFSET --partition P`); when the master
reads it, it folds the partition again from its snapshot, passing over that command
(`command_skipped` at its offset, `skip_recorded` at the skip's). Every other reader (status,
trace, replay, verify, a new owner after a failover) folds the same way: it finds the same skip
in the log (`runtime.fold.find_skip`), so every replay decides the same.
"""

from __future__ import annotations

import msgspec

from easysched_es.core.codec import decode_command
from easysched_es.core.step import CommandFailed, Skip, skip_target
from easysched_es.log.base import Record
from easysched_es.log.kafka import KafkaSettings, KafkaStream
from easysched_es.runtime.fold import PartitionHalted, Skips, find_skip


class Halts:
    """Per partition: the skips found in its log, and the command it is stopped at (if any)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.skips: dict[int, Skips] = {}
        self.halted: dict[int, PartitionHalted] = {}

    def skip_of(self, partition: int, offset: int) -> Skip | None:
        """The skip of the command at `offset`, if the log holds one (found so far)."""
        skips = self.skips.get(partition)
        return skips.get(offset) if skips else None

    def failed(self, partition: int, failure: CommandFailed) -> bool:
        """Applying a command raised: True if a skip of it is in the log (fold the partition again), else
        the partition is stopped at it (`halted`)."""
        with KafkaStream(self.settings, "commands", create=False) as commands:
            found = find_skip(commands, partition, failure.offset + 1, failure.offset)
        if found is None:
            self.halted[partition] = PartitionHalted(partition, failure, failure.offset + 1)
            return False
        self._found(partition, failure.offset, Skip(found[0], found[1], failure.error))
        return True

    def watch(self, partition: int, record: Record) -> bool:
        """A record read while `partition` is stopped: True if it skips the stopped command (fold again)."""
        halt = self.halted.get(partition)
        if halt is None or record.corrupt is not None or b"skip" not in record.payload:
            return False
        try:
            command = decode_command(record.payload)
        except msgspec.DecodeError:
            return False
        if skip_target(command) != halt.failure.offset:
            return False
        reason = str(getattr(command, "reason", ""))
        self._found(partition, halt.failure.offset, Skip(record.offset, reason, halt.failure.error))
        return True

    def _found(self, partition: int, offset: int, skip: Skip) -> None:
        self.skips.setdefault(partition, {})[offset] = skip
        self.halted.pop(partition, None)
