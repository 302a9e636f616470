"""What was seen, point 5: a torn frame at the tail is cut under the append lock before the next append,
so no acknowledged command is lost or unreadable; the crash-consistency property over random cuts."""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import pytest
from crc32c import crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from easysched_es.core.codec import encode
from easysched_es.core.commands import StartWorkflow
from easysched_es.core.events import CommandRejected
from easysched_es.log.embedded import EmbeddedStream
from easysched_es.log.tail import repairs
from easysched_es.runtime.embedded.client import Client
from easysched_es.runtime.fold import load_state
from tests.harness import Run, cli, wait_until
from tests.robust.helpers import flow, shell


def frame(payload: bytes) -> bytes:
    return struct.pack("<II", len(payload), crc32c(payload)) + payload


def last_segment(directory: Path) -> Path:
    return sorted(directory.glob("*.seg"))[-1]


def tear(directory: Path, data: bytes) -> None:
    """What a crashed appender leaves: bytes at the end of the last segment, no lock, no marker."""
    with open(last_segment(directory), "ab") as f:
        f.write(data)


def test_an_append_after_a_torn_frame_cuts_it_and_is_readable(tmp_path: Path) -> None:
    with EmbeddedStream(tmp_path) as stream:
        stream.append([b"one"])
        torn_at = stream.end()
        tear(tmp_path, frame(b"never completely written")[:13])
        assert stream.append([b"two"]) == [torn_at]
        assert [r.payload for r in stream.read(0)] == [b"one", b"two"]
    (cut,) = repairs(tmp_path)
    assert cut["offset"] == torn_at and cut["bytes"] == 13
    assert (tmp_path / str(cut["kept"])).read_bytes() == frame(b"never completely written")[:13]


def test_garbage_that_parses_as_records_is_cut_from_the_last_intact_append(tmp_path: Path) -> None:
    with EmbeddedStream(tmp_path) as stream:
        stream.append([b"one"])
        end = stream.end()
        # Two "complete" frames with bad CRCs, then a good-looking one: all after the marker.
        tear(tmp_path, struct.pack("<II", 2, 0) + b"xx" + struct.pack("<II", 1, 0) + b"y" + frame(b"z"))
        stream.append([b"two"])
        assert [(r.payload, r.corrupt) for r in stream.read(0)] == [(b"one", None), (b"two", None)]
        assert stream.read(0)[1].offset == end


def _acked_starts(client: Client, n: int) -> list[int]:
    return [client.submit(StartWorkflow(workflow="w")).offset for _ in range(n)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rounds=st.lists(
        st.tuples(st.integers(1, 3), st.one_of(st.integers(0, 200), st.binary(min_size=1, max_size=40))),
        min_size=1, max_size=5,
    )
)
def test_every_command_acknowledged_before_a_torn_tail_is_there_and_applied(
    tmp_path_factory: pytest.TempPathFactory, rounds: list[tuple[int, int | bytes]]
) -> None:
    root = tmp_path_factory.mktemp("crash")
    client = Client(root)
    client.define(flow("w", shell("a")))
    acked: list[int] = []
    for count, damage in rounds:
        acked += _acked_starts(client, count)
        if isinstance(damage, int):  # a crashed append: a record cut at a random byte
            whole = frame(encode(StartWorkflow(at=1, workflow="w", params={"N": "x" * 50})))
            tear(root / "commands", whole[: damage % len(whole)] or whole[:1])
        else:  # garbage
            tear(root / "commands", damage)
    acked += _acked_starts(client, 1)
    state = load_state(client.data)
    for offset in acked:
        assert f"0-{offset}" in state.instances, f"acknowledged start at {offset} lost"
    rejected: list[int] = []
    load_state(client.data, sink=lambda r, evs, tag: rejected.extend(
        r.offset for e in evs if isinstance(e, CommandRejected)))
    assert rejected == [], "a torn tail must be cut, not left in the log as a rejected record"


@pytest.mark.slow
def test_a_stop_after_a_torn_frame_while_run_runs_is_applied_and_kept(run: Run, tmp_path: Path) -> None:
    run.client.define(flow("sleepy", shell("nap", "sleep 300")))
    instance = run.client.start("sleepy")
    wait_until("nap running", lambda: getattr(run.task(instance, "nap"), "pid", None))
    tear(tmp_path / "commands", frame(encode(StartWorkflow(at=1, workflow="sleepy")))[:21])
    stop = cli(tmp_path, "stop", instance)
    assert stop.returncode == 0, stop.stderr
    wait_until("the master applies the stop", lambda: run.state().instances[instance].state == "STOP", timeout=60)
    again = cli(tmp_path, "start", "sleepy")
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    run.kill9()
    restarted = Run(tmp_path)
    try:
        wait_until("restarted", lambda: (tmp_path / "run.json").exists())
        assert restarted.state().instances[instance].state == "STOP"  # the acknowledged stop survived
    finally:
        restarted.stop()
    run.proc = restarted.proc  # the fixture stops nothing twice
    run._log = open(os.devnull, "wb")  # noqa: SIM115


@pytest.mark.slow
def test_the_running_master_cuts_a_frame_it_is_stuck_at(run: Run, tmp_path: Path) -> None:
    run.client.define(flow("w", shell("a")))
    tear(tmp_path / "commands", random.Random(1).randbytes(5))
    wait_until("the master cuts the torn frame", lambda: repairs(tmp_path / "commands"), timeout=60)
    instance = run.client.start("w")
    wait_until("the start after it runs", lambda: run.state().instances[instance].state == "SUCCESS")
