"""msgpack codecs for the three streams. One encoder/decoder per type, built once.

Decoding never raises anything but `RecordError` (a `msgspec.DecodeError`): a record nested
thousands of levels deep makes msgspec raise `RecursionError`, and any other surprise from
the decoder is just as much a property of the record, not of the program. The record's size
is bounded before it is decoded at all.
"""

from __future__ import annotations

from typing import Any

import msgspec

from easysched_es.core.commands import Command
from easysched_es.core.events import EventBatch
from easysched_es.core.state import Snapshot

# The largest command record the fold decodes (a 10,000-task definition is about 2 MB).
MAX_COMMAND_BYTES = 32 << 20

_encoder = msgspec.msgpack.Encoder()
_command_decoder = msgspec.msgpack.Decoder(Command)
_batch_decoder = msgspec.msgpack.Decoder(EventBatch)
_snapshot_decoder = msgspec.msgpack.Decoder(Snapshot)


class RecordError(msgspec.DecodeError):
    """A record cannot be decoded; the message says why (subclass of msgspec.DecodeError)."""


class UnencodableError(ValueError):
    """A value cannot be written to the log (an integer out of msgpack's range, a lone surrogate...)."""


# msgpack integers: int64 and uint64.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def encode(value: object) -> bytes:
    """Encode a command, an event batch or a snapshot as msgpack (UnencodableError naming the field)."""
    try:
        return _encoder.encode(value)
    except (OverflowError, UnicodeError, msgspec.EncodeError, TypeError, RecursionError) as exc:
        raise UnencodableError(unencodable(value) or f"cannot be encoded: {exc}") from None


def unencodable(value: object) -> str | None:
    """Where in `value` something cannot be encoded, and why ("$.params['X']: ..."), or None."""
    try:
        root = msgspec.to_builtins(value)
    except Exception as exc:  # the value is not data at all
        return f"cannot be encoded: {exc}"
    stack: list[tuple[str, Any]] = [("$", root)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and not _INT_MIN <= item <= _INT_MAX:
            return f"{path}: the integer {item} is out of range ({_INT_MIN} to {_INT_MAX})"
        if isinstance(item, str) and not _utf8(item):
            return f"{path}: the text {item!r} holds a lone surrogate (not valid Unicode text)"
        if isinstance(item, dict):
            for key, sub in item.items():
                if isinstance(key, str) and not _utf8(key):
                    return f"{path}: the key {key!r} holds a lone surrogate (not valid Unicode text)"
                named = isinstance(key, str) and key.isidentifier()
                stack.append((f"{path}.{key}" if named else f"{path}[{key!r}]", sub))
        elif isinstance(item, list | tuple):
            stack.extend((f"{path}[{i}]", sub) for i, sub in enumerate(item))
    return None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeError:
        return False
    return True


def _decode(decoder: msgspec.msgpack.Decoder[Any], payload: bytes, what: str) -> Any:
    try:
        return decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RecordError(str(exc)) from None
    except RecursionError:
        raise RecordError(f"{what} nested too deeply to decode") from None
    except Exception as exc:  # whatever the decoder raises is the record's fault
        raise RecordError(f"{what} does not decode: {type(exc).__name__}: {exc}") from None


def decode_command(payload: bytes) -> Command:
    """Decode one commands-log record; raises RecordError for anything that is not a command."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise RecordError(f"command record of {len(payload)} bytes is over the limit of {MAX_COMMAND_BYTES} bytes")
    command: Command = _decode(_command_decoder, payload, "command record")
    return command


def decode_batch(payload: bytes) -> EventBatch:
    """Decode one events-log record (raises RecordError)."""
    batch: EventBatch = _decode(_batch_decoder, payload, "event batch")
    return batch


def decode_snapshot(payload: bytes) -> Snapshot:
    """Decode one snapshot record (raises RecordError)."""
    snapshot: Snapshot = _decode(_snapshot_decoder, payload, "snapshot")
    return snapshot
