"""The fast CLI on Kafka (issue 14 scope 6): queries from the newest snapshot plus the tail, verdicts after a seek.

The queries fold the commands topic, so the snapshot tests need no master: they produce the
commands themselves, fold them here, and put a snapshot of that fold in the snapshots topic at
a chosen point (the snapshot is then behind the tail), leaving another partition without one.
Every answer is compared with a fold of the whole partition from offset 0 (`KafkaLog`, the old
path) and says in `source` what it used. The verdict tests run a real `KafkaMaster`.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from easysched_es.core import commands as c
from easysched_es.core.codec import encode
from easysched_es.core.definitions import Dependence, DependentTask, DependItem, ShellTask, WorkflowDefinition
from easysched_es.core.state import State
from easysched_es.debug.trace import trace
from easysched_es.debug.views import status_view, timers_view
from easysched_es.log.kafka import KafkaSettings, KafkaStream, ensure_topics
from easysched_es.runtime.fold import fold_stream, load_states
from easysched_es.runtime.kafka.client import KafkaClient
from easysched_es.runtime.kafka.master import KafkaLog, KafkaMaster, snapshot_key
from easysched_es.runtime.kafka.query_log import QueryLog

pytestmark = [pytest.mark.kafka]

_n = itertools.count()
T0 = 1_796_000_000_000


def _prefix(kind: str) -> str:
    return f"fastcli-{kind}-{os.getpid()}-{next(_n)}"


def _cli(settings: KafkaSettings, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EASYSCHED_KAFKA": settings.bootstrap, "EASYSCHED_KAFKA_PREFIX": settings.prefix}
    return subprocess.run([sys.executable, "-m", "easysched_es", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=180)


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr + proc.stdout
    return json.loads(proc.stdout)


def _waiting_flow() -> WorkflowDefinition:
    # A DEPENDENT task on a workflow that never runs holds a timer (its re-check); `after` waits.
    wait = DependentTask(name="wait", dependence=Dependence(items=[DependItem(workflow="never", cycle="DAY",
                                                                               date_value="today")]))
    return WorkflowDefinition(name="waiter", tasks=[wait, ShellTask(name="after", command="true", upstream=["wait"])])


class Log:
    """Commands produced to a fresh prefix of the shared broker, with a snapshot of partition 0 mid-way."""

    def __init__(self, bootstrap: str) -> None:
        self.settings = KafkaSettings(bootstrap, prefix=_prefix("snap"), partitions=2)
        ensure_topics(self.settings)
        self.commands = KafkaStream(self.settings, "commands", create=False)
        self.snapshots = KafkaStream(self.settings, "snapshots", create=False)
        self.at = itertools.count(T0, 1000)
        self.started: dict[int, list[str]] = {0: [], 1: []}

    def send(self, partition: int, command: c.Command) -> int:
        command.at = next(self.at)
        return self.commands.append([encode(command)], partition)[0]

    def start(self, partition: int, workflow: str) -> str:
        instance = f"{partition}-{self.send(partition, c.StartWorkflow(workflow=workflow))}"
        self.started[partition].append(instance)
        return instance

    def snapshot(self, partition: int) -> int:
        """Fold the partition as it is and write that state as its snapshot; returns its position."""
        state = State(partition)
        fold_stream(self.commands, state, partition=partition)
        self.snapshots.append([encode(state.snapshot())], partition, key=snapshot_key(partition))
        return state.position

    def full(self, partition: int) -> State:
        """The partition folded from offset 0 (no snapshot)."""
        state = State(partition)
        fold_stream(self.commands, state, partition=partition)
        return state

    def close(self) -> None:
        self.commands.close()
        self.snapshots.close()


@pytest.fixture(scope="module")
def log(kafka_bootstrap: str) -> Iterator[Log]:
    made = Log(kafka_bootstrap)
    try:
        for p in (0, 1):
            made.send(p, c.DefineWorkflow(definition=_waiting_flow()))
            made.send(p, c.DefineWorkflow(definition=WorkflowDefinition(
                name="plain", tasks=[ShellTask(name="a", command="true")])))
        first = made.start(0, "waiter")
        made.start(0, "plain")
        made.send(0, c.CheckDue(now=next(made.at)))
        made.position = made.snapshot(0)  # type: ignore[attr-defined]
        # The tail after the snapshot: a stop of the first instance, another start, a tick.
        made.send(0, c.StopWorkflow(instance=first))
        made.start(0, "waiter")
        made.send(0, c.CheckDue(now=next(made.at)))
        made.start(1, "waiter")  # partition 1 has no snapshot at all
        made.start(1, "plain")
        yield made
    finally:
        made.close()


def test_status_of_one_instance_folds_its_partition_from_the_snapshot_behind_the_tail(log: Log,
                                                                                      tmp_path: Path) -> None:
    full = log.full(0)
    for instance in log.started[0]:
        answer = _json(_cli(log.settings, tmp_path, "status", instance, "--json"))
        source = answer.pop("source")
        assert source["kind"] == "snapshot+tail"
        assert [row["partition"] for row in source["partitions"]] == [0]
        assert source["partitions"][0]["snapshot_position"] == log.position  # type: ignore[attr-defined]
        assert source["partitions"][0]["tail_end"] > log.position  # type: ignore[attr-defined]
        assert answer == _cli_view(full, instance)
    stopped = _json(_cli(log.settings, tmp_path, "status", log.started[0][0], "--json"))
    assert stopped["state"] == "STOP"  # decided in the tail, after the snapshot


def test_status_of_an_instance_in_a_partition_without_a_snapshot(log: Log, tmp_path: Path) -> None:
    instance = log.started[1][0]
    answer = _json(_cli(log.settings, tmp_path, "status", instance, "--json"))
    assert answer.pop("source")["partitions"][0]["snapshot_position"] is None
    assert answer == _cli_view(log.full(1), instance)


def test_status_and_timers_of_every_partition_equal_a_fold_from_the_start(log: Log, tmp_path: Path) -> None:
    proc = _cli(log.settings, tmp_path, "status", "--json")
    every = _json(proc)
    assert "snapshot at" in proc.stderr and "no snapshot" in proc.stderr  # it says what it answered from
    old_states = load_states(KafkaLog(log.settings))  # the old path: every partition from its one snapshot
    assert [(i["instance"], i["state"]) for i in every] == [
        (i["instance"], i["state"]) for i in status_view(old_states)]
    timers = _json(_cli(log.settings, tmp_path, "timers", "--json"))
    expected = _json_round(timers_view([log.full(0), log.full(1)]))
    assert [(t["instance"], t["task"], t["kind"], t["due_ms"]) for t in timers if t["due_ms"] is not None] == [
        (t["instance"], t["task"], t["kind"], t["due_ms"]) for t in expected]
    assert expected, "the waiting instances hold re-check timers"


def test_trace_of_one_instance_equals_the_fold_from_the_start(log: Log, tmp_path: Path) -> None:
    for instance in (log.started[0][0], log.started[0][-1], log.started[1][0]):
        answer = _json(_cli(log.settings, tmp_path, "trace", instance, "--json"))
        assert answer == _json_round(trace(KafkaLog(log.settings), instance))
        assert answer and answer[0]["type"] == "start"


def test_a_query_log_reads_on_past_what_it_fetched(log: Log) -> None:
    """`wait` and `logs --follow` fold the same source again: new commands must show up."""
    with QueryLog(log.settings) as source:
        before = load_states(source)[1]
        instance = log.start(1, "plain")
        after = load_states(source)[1]
    assert instance not in before.instances and instance in after.instances


# ---- verdicts after a seek (a real master) ------------------------------------------------------


@pytest.fixture(scope="module")
def master(kafka_bootstrap: str) -> Iterator[KafkaSettings]:
    settings = KafkaSettings(kafka_bootstrap, prefix=_prefix("verdict"), partitions=2, timeout=30.0)
    ensure_topics(settings)
    runner = KafkaMaster(settings, name="fast-cli", session_timeout_ms=6000, snapshot_every=5)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    try:
        with KafkaClient(settings, timeout=120) as client:
            client.define(WorkflowDefinition(name="plain", tasks=[ShellTask(name="a", command="true")]))
        yield settings
    finally:
        stop.set()
        thread.join(60)


def test_start_reads_its_own_verdict_after_seeking_the_events_partition(master: KafkaSettings,
                                                                        tmp_path: Path) -> None:
    with KafkaClient(master, timeout=120) as client:
        earlier = [client.start("plain", partition=0) for _ in range(6)]  # events before the next start
        assert len(set(earlier)) == 6
        rejected = _cli(master, tmp_path, "start", "nope", "--json", "--timeout", "120")
        assert rejected.returncode == 1 and "nope" in json.loads(rejected.stdout)["error"]
        started = [_json(_cli(master, tmp_path, "start", "plain", "--json", "--timeout", "120"))["instance"]
                   for _ in range(2)]
        assert len(set(started) | set(earlier)) == 8
        for instance in started:
            partition, offset = (int(x) for x in instance.split("-"))
            record = next(r for r in client.commands.read(offset, partition) if r.offset == offset)
            assert b"plain" in record.payload  # the id names the offset of its own StartWorkflow
            assert client.status(instance)["workflow"] == "plain"
        stop = _json(_cli(master, tmp_path, "stop", started[0], "--json", "--timeout", "120"))
        assert stop["accepted"] is True and stop["offset"] > int(started[0].split("-")[1])


def _cli_view(state: State, instance: str) -> Any:
    """What `status INSTANCE --json` prints for `state` (without `source`)."""
    from easysched_es.cli.status_columns import add_task_columns
    from easysched_es.debug.waits import annotate_status

    return _json_round(add_task_columns(annotate_status(status_view(state, instance), state), state)[0])


def _json_round(value: Any) -> Any:
    """`value` as the CLI's JSON prints it."""
    import msgspec

    return json.loads(msgspec.json.encode(value, enc_hook=str))


def test_rebuild_on_kafka_equals_the_live_projection(master: KafkaSettings, tmp_path: Path) -> None:
    import duckdb

    from easysched_es.log.kafka_reader import projection_streams
    from projections.service import ProjectionService
    from tests.projections.helpers import dump, serving

    with KafkaClient(master, timeout=120) as client:
        for p in (0, 1):
            client.start("plain", partition=p)
    events, commands = projection_streams(master)
    live = ProjectionService(tmp_path / "live", events=events, commands=commands)
    (tmp_path / "live").mkdir()
    try:
        with serving(live):
            expected = dump(live.projection.projector.cursor())
    finally:
        events.close()
        commands.close()
    rebuilt = _json(_cli(master, tmp_path, "projections", "rebuild", "--data-dir", str(tmp_path / "again"), "--json"))
    assert rebuilt["by"] == "local" and rebuilt["records"] > 0
    conn = duckdb.connect(str(tmp_path / "again" / "projections.duckdb"), read_only=True)
    try:
        assert dump(conn) == expected
    finally:
        conn.close()
    assert expected["workflow_instances"], "the instances the tests started are in both"


def test_the_projector_gives_up_within_kafka_timeout_when_the_broker_is_down(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = KafkaSettings(f"127.0.0.1:{port}", prefix="nobody")
    proc = _cli(down, tmp_path, "--kafka-timeout", "2", "projector", "--data-dir", str(tmp_path / "p"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    # A service shows kafka-python's warnings (rate-limited); its error is the one last line.
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0] and "within 2s" in errors[0], proc.stderr
