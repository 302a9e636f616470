"""JSON-encoded commands on the commands topic: a record with the header `content-type: application/json`.

A team in any language can produce a command as JSON (the same fields as the msgpack form; see
`easysched schema --json`). The Kafka adapter turns such a record into the msgpack command the
fold reads, the same way on every read (master, CLI, verify), so replay sees the same command.
A JSON record that is not a valid command reaches the fold as a corrupt record with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from easysched_es.core.codec import MAX_COMMAND_BYTES, encode
from easysched_es.core.commands import Command

CONTENT_TYPE = "content-type"
JSON = b"application/json"

_decoder = msgspec.json.Decoder(Command)


def is_json(headers: Sequence[tuple[str, bytes | None]] | None) -> bool:
    """True when the record's headers mark its value as a JSON command."""
    return bool(headers) and any(k.lower() == CONTENT_TYPE and (v or b"").split(b";")[0].strip() == JSON
                                 for k, v in headers or ())


def to_msgpack(value: bytes) -> tuple[bytes, str | None]:
    """The msgpack form of a JSON command, or (value, reason) when it is not one."""
    if len(value) > MAX_COMMAND_BYTES:
        return value, f"JSON command of {len(value)} bytes is larger than {MAX_COMMAND_BYTES}"
    try:
        return encode(_decoder.decode(value)), None
    except Exception as exc:  # anything a record can make the decoder raise is the record's fault
        return value, f"JSON command does not decode: {type(exc).__name__}: {exc}"[:1000]
