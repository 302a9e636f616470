"""What was seen, point 1: a record that does not decode (nested thousands deep, oversized...) is a
rejection naming its offset, never an exception, in the fold, the CLI readers and a real `run`."""

from __future__ import annotations

from pathlib import Path

import pytest

from easysched_es.core import codec
from easysched_es.core.events import CommandRejected
from easysched_es.core.state import State
from easysched_es.core.step import step_record
from easysched_es.runtime.embedded.client import Client
from easysched_es.runtime.fold import load_state
from tests.harness import Run, cli, wait_until
from tests.robust.helpers import append_raw, deep_record, flow, shell


@pytest.mark.parametrize(
    "payload",
    [deep_record(5000), deep_record(200_000), b"\xdd\xff\xff\xff\xff", b"\x91" * 100_000, b"\xc1", b""],
    ids=["deep", "very-deep", "huge-array-header", "deep-bare", "reserved-byte", "empty"],
)
def test_step_record_rejects_what_does_not_decode(payload: bytes) -> None:
    state, events, tag = step_record(State(), payload, 7)
    assert tag == "?"
    assert isinstance(events[0], CommandRejected) and "(offset 7)" in events[0].reason
    assert state.last_offset == 7


def test_oversized_record_is_rejected_before_decoding() -> None:
    _, events, _ = step_record(State(), b"\x00" * (codec.MAX_COMMAND_BYTES + 1), 0)
    assert isinstance(events[0], CommandRejected) and "over the limit" in events[0].reason


def test_decoders_raise_only_record_error() -> None:
    for decode in (codec.decode_command, codec.decode_batch, codec.decode_snapshot):
        with pytest.raises(codec.RecordError):
            decode(b"\x91" * 50_000)


@pytest.mark.slow
def test_a_deep_record_neither_stops_run_nor_the_cli(run: Run, tmp_path: Path) -> None:
    offset = append_raw(tmp_path, deep_record())
    run.client.define(flow("after_poison", shell("t")))
    instance = run.client.start("after_poison")
    wait_until("the instance after the poison succeeds", lambda: run.state().instances[instance].state == "SUCCESS")
    assert run.proc.poll() is None
    status = cli(tmp_path, "status")
    assert status.returncode == 0 and "Traceback" not in status.stderr
    assert cli(tmp_path, "verify").returncode == 0
    rejected = []
    load_state(Client(tmp_path).data, sink=lambda r, evs, tag: rejected.extend(
        ev for ev in evs if r.offset == offset and isinstance(ev, CommandRejected)))
    assert "nested too deeply" in rejected[0].reason
