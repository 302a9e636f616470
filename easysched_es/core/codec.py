"""msgpack codecs for the three streams. One encoder/decoder per type, built once."""

from __future__ import annotations

import msgspec

from easysched_es.core.commands import Command
from easysched_es.core.events import EventBatch
from easysched_es.core.state import Snapshot

_encoder = msgspec.msgpack.Encoder()
_command_decoder = msgspec.msgpack.Decoder(Command)
_batch_decoder = msgspec.msgpack.Decoder(EventBatch)
_snapshot_decoder = msgspec.msgpack.Decoder(Snapshot)


def encode(value: object) -> bytes:
    """Encode a command, an event batch or a snapshot as msgpack."""
    return _encoder.encode(value)


def decode_command(payload: bytes) -> Command:
    """Decode one commands-log record (raises msgspec.DecodeError / ValidationError)."""
    command: Command = _command_decoder.decode(payload)
    return command


def decode_batch(payload: bytes) -> EventBatch:
    """Decode one events-log record."""
    batch: EventBatch = _batch_decoder.decode(payload)
    return batch


def decode_snapshot(payload: bytes) -> Snapshot:
    """Decode one snapshot record."""
    snapshot: Snapshot = _snapshot_decoder.decode(payload)
    return snapshot
