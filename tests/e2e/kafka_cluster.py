"""Masters, workers and a client on one topic prefix of a real Kafka broker, for the e2e tests.

What the tests wait on is read where it is decided:
- ownership from the masters' own `--events-to-stdout` lines (`owner`), and group membership
  and assignment from the group coordinator (`group`: DescribeGroups), so "settled" means the
  coordinator's assignment is stable and every assigned partition is ready at its owner;
- events from one reader kept open for the cluster's life, which reads only what is new
  (`batches`): a probe costs milliseconds, not a new consumer per call.
Every cluster has a prefix of its own (pid, counter and random part), hence its own consumer
groups and transactional ids: no member or offset of another test or run can be in them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest
from kafka import KafkaAdminClient

from easysched_es.core import events as e
from easysched_es.core.codec import decode_batch
from easysched_es.core.definitions import WorkflowDefinition
from easysched_es.log.base import LogError
from easysched_es.log.kafka import KafkaSettings, KafkaStream
from easysched_es.runtime.embedded.local_run import WaitTimeout, wait_for
from easysched_es.runtime.kafka.client import KafkaClient, instance_partition

T = TypeVar("T")
SESSION_S = 6.0
PARTITIONS = 3
_run = itertools.count()


def wait_until(what: str, probe: Callable[[], T], timeout: float = 60.0, every: float = 0.05) -> T:
    return wait_for(what, probe, timeout, every)


def wait_progressing(what: str, probe: Callable[[], T], progress: Callable[[], object],
                     stall: float = 60.0, every: float = 0.1) -> T:
    """Wait for `probe` as long as `progress()` keeps changing; fail after `stall` s without a change.

    For conditions whose time grows with the machine's load (processes starting, groups joining,
    partitions recovering): a loaded machine gets the time it needs, a stuck one still fails.
    """
    last, since = progress(), time.monotonic()
    while True:
        value = probe()
        if value:
            return value
        now = progress()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > stall:
            raise WaitTimeout(f"nothing moved for {stall}s while waiting for {what} (last: {now})")
        time.sleep(every)


class Cluster:
    """Masters, workers and a client on one topic prefix; processes are stopped at `close`."""

    def __init__(self, bootstrap: str, tmp: Path) -> None:
        self.bootstrap = bootstrap
        self.tmp = tmp
        self.prefix = f"e2e{os.getpid()}x{next(_run)}x{uuid.uuid4().hex[:6]}"
        self.settings = KafkaSettings(bootstrap, prefix=self.prefix, partitions=PARTITIONS)
        self.env = {**os.environ, "EASYSCHED_KAFKA": bootstrap, "EASYSCHED_KAFKA_PREFIX": self.prefix,
                    "EASYSCHED_KAFKA_PARTITIONS": str(PARTITIONS)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._client: KafkaClient | None = None
        self._admin: KafkaAdminClient | None = None
        self._events: KafkaStream | None = None
        self._seen: dict[int, list[e.EventBatch]] = {p: [] for p in range(PARTITIONS)}
        self._next: dict[int, int] = dict.fromkeys(range(PARTITIONS), 0)

    # ---- processes -----------------------------------------------------------------------

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        out = open(self.tmp / f"{name}.out", "wb")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen([sys.executable, "-m", "easysched_es", *args], env={**self.env, **(env or {})},
                                stdout=out,
                                stderr=open(self.tmp / f"{name}.err", "wb"), cwd=self.tmp)  # noqa: SIM115
        self.procs[name] = proc
        return proc

    def master(self, name: str) -> subprocess.Popen[bytes]:
        return self.spawn(name, "master", "--name", name, "--events-to-stdout",
                          "--session-timeout", str(SESSION_S), "--snapshot-every", "5")

    def worker(self, name: str, grace: float = 2.0, heartbeat_timeout: float = 20.0,
               env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self.spawn(name, "worker", "--name", name, "--work-dir", str(self.tmp / name),
                          "--kill-grace", str(grace), "--heartbeat-timeout", str(heartbeat_timeout),
                          "--session-timeout", str(SESSION_S), env=env)

    def stop(self, name: str) -> None:
        """SIGTERM one process and wait for it (SIGKILL after 20 s)."""
        stop_processes([self.procs.pop(name)])

    # ---- ownership -----------------------------------------------------------------------

    def master_events(self, name: str) -> list[dict[str, Any]]:
        lines = (self.tmp / f"{name}.out").read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def owner(self, partition: int) -> str | None:
        """The live master that most recently became ready for `partition` and has not dropped it since."""
        latest: tuple[float, str] | None = None
        for name, proc in self.procs.items():
            if not name.startswith("master") or proc.poll() is not None:
                continue
            ready = None
            for ev in self.master_events(name):
                if ev.get("partition") != partition:
                    continue
                if ev["event"] == "partition_ready":
                    ready = ev["t"]
                elif ev["event"] in ("partition_dropped", "partition_assigned"):
                    ready = None
            if ready is not None and (latest is None or ready > latest[0]):
                latest = (ready, name)
        return latest[1] if latest else None

    @property
    def admin(self) -> KafkaAdminClient:
        if self._admin is None:
            self._admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=f"{self.prefix}-test")
        return self._admin

    def group(self, kind: str = "masters") -> tuple[str, dict[str, list[int]]]:
        """The coordinator's view of a group: its state and each member's partitions, by process name.

        `kind` is "masters" or "workers-<worker group>"; names come from the client ids
        (`easysched-master-NAME`, `easysched-worker-NAME`).
        """
        group_id = f"{self.prefix}-{kind}"
        try:
            info = self.admin.describe_groups([group_id])
        except Exception as exc:  # the group's coordinator may be loading or moving: not yet
            return f"unknown ({type(exc).__name__})", {}
        found = info.get(group_id) if isinstance(info, dict) else info[0]
        members: dict[str, list[int]] = {}
        for member in (found or {}).get("members") or []:
            name = member["client_id"].split("-", 2)[2]
            assignment = member.get("member_assignment") or {}
            members[name] = sorted(p for tps in assignment.get("assigned_partitions") or [] for p in tps["partitions"])
        return str((found or {}).get("group_state")), members

    def masters_settled(self, *names: str) -> dict[str, list[int]] | None:
        """The assignment, once the group is Stable with exactly `names` as members, every partition
        assigned once, and each ready at the master it is assigned to; None until then."""
        state, members = self.group("masters")
        if state != "Stable" or set(members) != set(names):
            return None
        if sorted(p for ps in members.values() for p in ps) != list(range(PARTITIONS)):
            return None
        if any(self.owner(p) != name for name, ps in members.items() for p in ps):
            return None
        return members

    def progress(self) -> tuple[object, ...]:
        """Something that changes while processes start, join and recover (for `wait_progressing`)."""
        lines = tuple(len(self.master_events(n)) for n in self.procs if n.startswith("master"))
        return lines, self.group("masters")

    def start_masters(self, *names: str) -> dict[str, list[int]]:
        """Start masters together and wait until their group has settled (see `masters_settled`)."""
        for name in names:
            self.master(name)
        return wait_progressing(f"the masters {names} settled on the partitions",
                                lambda: self.masters_settled(*names), self.progress)

    # ---- the log -------------------------------------------------------------------------

    @property
    def client(self) -> KafkaClient:
        if self._client is None:
            self._client = KafkaClient(self.settings, timeout=60.0)
        return self._client

    def batches(self) -> list[e.EventBatch]:
        """Every event batch so far; one reader for the cluster's life reads only the new records."""
        try:
            if self._events is None:
                self._events = KafkaStream(self.settings, "events", create=False)
            for p in range(PARTITIONS):
                for record in self._events.iter_records(p, self._next[p]):
                    self._seen[p].append(decode_batch(record.payload))
                    self._next[p] = record.next
        except LogError:  # the broker restarts, or the topic is not there yet: what we have so far
            self._close_events()
        return [b for p in range(PARTITIONS) for b in self._seen[p]]

    def _close_events(self) -> None:
        if self._events is not None:
            with contextlib.suppress(Exception):
                self._events.close()
            self._events = None

    def events_of(self, instance: str) -> list[tuple[int, Any]]:
        p = instance_partition(instance)
        return [(b.offset, ev) for b in self.batches() if b.partition == p for ev in b.events
                if getattr(ev, "instance", None) == instance]

    def close(self) -> None:
        stop_processes(list(self.procs.values()))
        if self._client is not None:
            self._client.close()
        self._close_events()
        if self._admin is not None:
            self._admin.close()


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process (a frozen one is woken first), then wait for each; SIGKILL after 20 s."""
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def cluster(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(kafka_bootstrap, tmp_path)
    yield c
    c.close()


def cli(c: Cluster, *args: str, ok: tuple[int, ...] = (0,)) -> Any:
    """Run `easysched ARGS --json` against the cluster's topics; the parsed JSON output."""
    return cli_all(c, list(args), ok=ok)[0]


def cli_all(c: Cluster, *calls: list[str], ok: tuple[int, ...] = (0,)) -> list[Any]:
    """Run several read-only `easysched ... --json` at once; their parsed outputs, in order.

    A CLI query on Kafka mostly waits for the broker, so independent ones overlap well.
    """
    procs = [subprocess.Popen([sys.executable, "-m", "easysched_es", *args, "--json"], env=c.env, cwd=c.tmp,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for args in calls]
    outputs = []
    for args, proc in zip(calls, procs, strict=True):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode in ok, (args, proc.returncode, out.decode()[-3000:], err.decode()[-2000:])
        outputs.append(json.loads(out))
    return outputs


def shell_flow(name: str, command: str) -> WorkflowDefinition:
    return msgspec.convert({"name": name, "tasks": [{"name": "work", "type": "SHELL", "command": command}]},
                           WorkflowDefinition)
