"""Golden logs: small recorded command logs in tests/golden, replayed byte for byte.

Each `NAME.json` holds a description and the commands, readable: times are ISO-8601 UTC
strings (converted to epoch milliseconds for `at`, `now`, `schedule_time`, `base_time`),
and `{"record_hex": ...}` is a raw log record (for corrupt input). `NAME.expected.json`
holds, for every command, its offset, its type tag and the events the master decided,
then the final state (the snapshot). The test replays the commands through the log path
(msgpack records into `step_record`) and compares the JSON text byte for byte.

A change of the core that alters a golden outcome is a reviewed decision: the diff of the
expected file is the review. To write the expected files after such a decision:
`python -c "from tests.core.test_golden import write_expected; write_expected()"`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from easysched_es.core.codec import decode_snapshot, encode
from easysched_es.core.commands import Command
from easysched_es.core.state import State
from easysched_es.core.step import step_record

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
NAMES = sorted(p.name.removesuffix(".json") for p in GOLDEN.glob("*.json") if not p.name.endswith(".expected.json"))
TIME_FIELDS = ("at", "now", "schedule_time", "base_time")


def _ms(value: Any) -> Any:
    if isinstance(value, str):
        return round(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    return value


def records(name: str) -> list[bytes]:
    """The golden commands as log records (msgpack), as the master would read them."""
    doc = msgspec.json.decode((GOLDEN / f"{name}.json").read_bytes())
    out = []
    for raw in doc["commands"]:
        if "record_hex" in raw:
            out.append(bytes.fromhex(raw["record_hex"]))
            continue
        fields = {k: _ms(v) if k in TIME_FIELDS else v for k, v in raw.items()}
        out.append(encode(msgspec.convert(fields, Command)))
    return out


def render(name: str) -> str:
    """Replay a golden log and render what the master decided, as stable, diffable JSON."""
    state = State()
    steps = []
    for offset, record in enumerate(records(name)):
        _, events, tag = step_record(state, record, offset)
        steps.append({"offset": offset, "command": tag, "events": msgspec.to_builtins(events)})
    snapshot = encode(state.snapshot())
    # The snapshot survives its own codec: the golden final state is what a restart sees.
    assert encode(State.restore(decode_snapshot(snapshot)).snapshot()) == snapshot
    doc = {"steps": steps, "final_state": msgspec.to_builtins(decode_snapshot(snapshot))}
    return msgspec.json.format(msgspec.json.encode(doc), indent=2).decode() + "\n"


def write_expected() -> None:
    for name in NAMES:
        (GOLDEN / f"{name}.expected.json").write_text(render(name))


def test_golden_logs_exist() -> None:
    assert {"dolphinscheduler_16895", "shell_kill"} <= set(NAMES)
    for name in NAMES:
        assert (GOLDEN / f"{name}.expected.json").exists(), f"{name}.expected.json is missing"


@pytest.mark.parametrize("name", NAMES)
def test_golden_replay(name: str) -> None:
    expected = (GOLDEN / f"{name}.expected.json").read_text()
    assert render(name) == expected
    # Twice in one process gives the same bytes (no hidden state between replays).
    assert render(name) == expected
