"""Retention on Kafka (a real broker): the master appends `ApplyRetention` to the partitions it owns.

A finished instance older than its workflow's retention leaves the partition's hot state (status
no longer lists it), its worker's claim and log directories go, `trace` still finds it in the log,
and a DEPENDENT on it decides the same as a fold of the same commands without the retention passes.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.codec import decode_command
from easysched_es.core.state import State
from easysched_es.core.step import step_record
from easysched_es.flows import load_flow
from easysched_es.log.base import Record
from easysched_es.log.kafka import KafkaStream
from tests.e2e.test_kafka_e2e import SESSION_S, Cluster, cli, cluster, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
__all__ = ["cluster"]  # the fixture, imported for this module's tests

UP = """
name: up
retention_days: 0.0001
tasks:
  - {name: work, type: SHELL, command: "echo up-ran"}
"""

DOWN = """
name: down
tasks:
  - name: wait_up
    type: DEPENDENT
    dependence:
      check_interval: 1
      items:
        - {workflow: up, cycle: DAY, date_value: today}
"""


def _flow(tmp: Path, text: str, name: str) -> object:
    path = tmp / f"{name}.yaml"
    path.write_text(text)
    return load_flow(path)


def _records(cluster: Cluster, partition: int) -> list[Record]:
    """The partition's commands as they are now (read once: the master and worker keep appending)."""
    with KafkaStream(cluster.settings, "commands", create=False) as commands:
        return list(commands.iter_records(partition))


def _decisions(records: list[Record], partition: int, *, retention: bool) -> list[tuple[int, list[tuple[str, ...]]]]:
    """Fold the partition's commands from scratch (skipping ApplyRetention if not `retention`):
    for every other command, what its events decided (type, instance, task, state or result, detail).

    Times are left out: a command's `at` moves the fold's clock, and the processes stamping
    commands (client, worker, master) are not in one clock order in the log.
    """
    state = State(partition)
    out = []
    for record in records:
        is_retention = isinstance(decode_command(record.payload), c.ApplyRetention)
        if is_retention and not retention:
            continue
        _, events, _ = step_record(state, record.payload, record.offset)
        if not is_retention:
            out.append((record.offset, [
                (type(ev).__name__, str(getattr(ev, "instance", "")), str(getattr(ev, "task", "")),
                 str(getattr(ev, "state", getattr(ev, "result", ""))), str(getattr(ev, "detail", "")))
                for ev in events]))
    return out


def test_master_retention_pass_on_kafka(cluster: Cluster) -> None:
    cluster.spawn("master-a", "master", "--name", "master-a", "--events-to-stdout", "--session-timeout",
                  str(SESSION_S), "--retention-every", "1")
    cluster.worker("worker-a")
    started = wait_until("the master's start line", lambda: [
        ev for ev in cluster.master_events("master-a") if ev["event"] == "master_started"])
    assert started[0]["retention_every_s"] == 1.0
    cluster.client.define(_flow(cluster.tmp, UP, "up"))  # type: ignore[arg-type]
    cluster.client.define(_flow(cluster.tmp, DOWN, "down"))  # type: ignore[arg-type]
    up = cluster.client.start("up", partition=0)
    # Not `wait`: with 8.6 s of retention the instance may be retired before a `wait` folds the log.
    finished = wait_until("up finished", lambda: [ev for _, ev in cluster.events_of(up)
                                                  if isinstance(ev, e.WorkflowFinished)])
    assert finished[0].state == "SUCCESS"
    run_dir, log_dir = (cluster.tmp / "worker-a" / sub / quote(up, safe="") for sub in ("runs", "logs"))
    wait_until("the task log written", lambda: log_dir.is_dir() and any(log_dir.iterdir()))

    # 8.6 s of retention and a pass every second: the instance leaves the hot state.
    wait_until("up retired", lambda: up not in {i["instance"] for i in cli(cluster, "status")}, timeout=90)
    assert any(isinstance(ev, e.InstancesRetired) and up in ev.instances for b in cluster.batches() for ev in b.events)
    wait_until("the worker's directories of up removed", lambda: not run_dir.exists() and not log_dir.exists())

    # The DEPENDENT index still holds up's record: the downstream succeeds.
    down = cluster.client.start("down", partition=0)
    assert cli(cluster, "wait", down, "--timeout", "60")["state"] == "SUCCESS"

    entries = cli(cluster, "trace", up)
    types = [x["type"] for x in entries]
    assert entries[0]["type"] == "start" and "workflow_finished" in types, types

    records = _records(cluster, 0)
    with_retention = _decisions(records, 0, retention=True)
    assert with_retention == _decisions(records, 0, retention=False)  # the DEPENDENT's decisions included
    checked = [d for _, ds in with_retention for d in ds if d[0] == "DependentChecked" and d[1] == down]
    assert checked and checked[-1][3] == "SUCCESS", checked
    assert cli(cluster, "verify")["ok"]
