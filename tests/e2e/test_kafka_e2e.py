"""End to end through a real Kafka broker, with `easysched master` / `worker` as separate processes.

Every test uses its own topic prefix, so tests never see each other's commands. Conditions are
awaited with deadlines; group session timeouts are the broker's minimum (6 s) so takeovers are quick.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest

from easysched_es.core import events as e
from easysched_es.core.codec import decode_batch
from easysched_es.core.definitions import WorkflowDefinition
from easysched_es.flows import load_flow
from easysched_es.log.kafka import KafkaSettings, KafkaStream
from easysched_es.runtime.embedded.local_run import pid_alive, wait_for
from easysched_es.runtime.kafka.client import KafkaClient, instance_partition
from easysched_es.runtime.kafka.master import verify_partition

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

T = TypeVar("T")
SESSION_S = 6.0
_run = itertools.count()


def wait_until(what: str, probe: Callable[[], T], timeout: float = 60.0, every: float = 0.05) -> T:
    return wait_for(what, probe, timeout, every)


class Cluster:
    """Masters, workers and a client on one topic prefix; processes are stopped at teardown."""

    def __init__(self, bootstrap: str, tmp: Path) -> None:
        self.bootstrap = bootstrap
        self.tmp = tmp
        self.prefix = f"e2e{os.getpid()}x{next(_run)}"
        self.settings = KafkaSettings(bootstrap, prefix=self.prefix, partitions=3)
        self.env = {**os.environ, "EASYSCHED_KAFKA": bootstrap, "EASYSCHED_KAFKA_PREFIX": self.prefix,
                    "EASYSCHED_KAFKA_PARTITIONS": "3"}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._client: KafkaClient | None = None

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
    def client(self) -> KafkaClient:
        if self._client is None:
            self._client = KafkaClient(self.settings, timeout=60.0)
        return self._client

    def batches(self) -> list[e.EventBatch]:
        out = []
        with KafkaStream(self.settings, "events", create=False) as events:
            for p in range(events.partitions):
                out.extend(decode_batch(r.payload) for r in events.iter_records(p))
        return out

    def events_of(self, instance: str) -> list[tuple[int, Any]]:
        p = instance_partition(instance)
        return [(b.offset, ev) for b in self.batches() if b.partition == p for ev in b.events
                if getattr(ev, "instance", None) == instance]

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._client is not None:
            self._client.close()


@pytest.fixture
def cluster(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(kafka_bootstrap, tmp_path)
    yield c
    c.close()


def mixed_flow(name: str, check_interval: float = 1.0, command: str = "sleep 300") -> WorkflowDefinition:
    path = Path(f"/tmp/{name}-{os.getpid()}.yaml")
    path.write_text(f"""
name: {name}
tasks:
  - name: wait_up
    type: DEPENDENT
    dependence:
      check_interval: {check_interval}
      items:
        - {{workflow: never_runs, cycle: DAY, date_value: today}}
  - name: work
    type: SHELL
    command: "{command}"
""")
    try:
        return load_flow(path)
    finally:
        path.unlink()


def running_pid(c: Cluster, instance: str, task: str) -> int:
    def probe() -> int | None:
        for _, ev in c.events_of(instance):
            if isinstance(ev, e.TaskStateChanged) and ev.task == task and ev.state == "RUNNING_EXECUTION":
                return ev.pid
        return None

    return wait_until(f"{task} of {instance} running", probe)


def checks(c: Cluster, instance: str) -> list[int]:
    return [off for off, ev in c.events_of(instance) if isinstance(ev, e.DependentChecked)]


def assert_consistent(c: Cluster) -> dict[str, Any]:
    """Every command decided exactly once, batches equal a replay, each attempt dispatched once."""
    instances: dict[str, Any] = {}
    for p in range(3):
        state, problems = verify_partition(c.settings, p)
        assert problems == [], problems
        instances.update(state.instances)
    dispatches: dict[tuple[str, str, int], int] = {}
    for batch in c.batches():
        for ev in batch.events:
            if isinstance(ev, e.DispatchTask):
                key = (ev.instance, ev.task, ev.attempt)
                dispatches[key] = dispatches.get(key, 0) + 1
    assert all(n == 1 for n in dispatches.values()), dispatches
    return instances


def test_16895_stop_removes_the_dependent_timer(cluster: Cluster) -> None:
    cluster.master("master-a")
    cluster.worker("worker-a")
    cluster.client.define(mixed_flow("mix16895", command="true"))
    instance = cluster.client.start("mix16895")
    wait_until("two DEPENDENT checks", lambda: len(checks(cluster, instance)) >= 2)
    stop = cluster.client.stop(instance)
    cancelled = [ev for ev in stop.events if isinstance(ev, e.TimerCancelled) and ev.task == "wait_up"]
    assert cancelled, stop.events
    # A control instance keeps ticking: once it has been checked three more times, the stopped
    # instance's timer would have fired too if it were still anywhere.
    control = cluster.client.start("mix16895", partition=instance_partition(instance))
    wait_until("three control checks", lambda: len(checks(cluster, control)) >= 3)
    after = [off for off in checks(cluster, instance) if off > stop.offset]
    assert after == [], "the stopped instance was checked again (#16895)"
    instances = assert_consistent(cluster)
    assert instances[instance].state == "STOP"
    assert instances[instance].tasks["wait_up"].state == "KILL"


def test_shell_kill_through_kafka(cluster: Cluster) -> None:
    cluster.master("master-a")
    cluster.worker("worker-a")
    cluster.client.define(mixed_flow("mixkill"))
    instance = cluster.client.start("mixkill")
    pid = running_pid(cluster, instance, "work")
    assert pid_alive(pid)
    t0 = time.monotonic()
    cluster.client.kill_task(instance, "work")
    wait_until("the process gone", lambda: not pid_alive(pid), timeout=10)
    assert time.monotonic() - t0 < 5
    wait_until("the kill confirmed",
               lambda: any(isinstance(ev, e.KillConfirmed) for _, ev in cluster.events_of(instance)))
    instances = assert_consistent(cluster)
    assert instances[instance].tasks["work"].state == "KILL"


def test_failover_kill9_owner_then_stop(cluster: Cluster) -> None:
    cluster.master("master-a")
    wait_until("master-a owns all", lambda: all(cluster.owner(p) == "master-a" for p in range(3)))
    cluster.master("master-b")
    cluster.worker("worker-a")
    cluster.client.define(mixed_flow("mixfail"))
    instance = cluster.client.start("mixfail")
    p = instance_partition(instance)
    pid = running_pid(cluster, instance, "work")
    wait_until("a DEPENDENT check", lambda: len(checks(cluster, instance)) >= 1)
    owner = wait_until("an owner", lambda: cluster.owner(p))
    standby = "master-b" if owner == "master-a" else "master-a"
    before = max(b.offset for b in cluster.batches() if b.partition == p)
    cluster.procs[owner].kill()
    cluster.procs[owner].wait(5)
    t0 = time.monotonic()
    wait_until("the standby takes the partition over", lambda: cluster.owner(p) == standby, timeout=60)
    takeover = time.monotonic() - t0
    # The timer was rebuilt from snapshot + tail: the new owner fires it.
    wait_until("a check by the new owner", lambda: [o for o in checks(cluster, instance) if o > before])
    stop = cluster.client.stop(instance)
    assert any(isinstance(ev, e.TimerCancelled) and ev.task == "wait_up" for ev in stop.events), stop.events
    wait_until("the instance STOP", lambda: any(isinstance(ev, e.WorkflowFinished) and ev.state == "STOP"
                                                 for _, ev in cluster.events_of(instance)))
    wait_until("the SHELL process gone", lambda: not pid_alive(pid), timeout=10)
    instances = assert_consistent(cluster)
    inst = instances[instance]
    assert inst.state == "STOP"
    assert {t.name: t.state for t in inst.tasks.values()} == {"wait_up": "KILL", "work": "KILL"}
    finished = [ev for _, ev in cluster.events_of(instance) if isinstance(ev, e.WorkflowFinished)]
    assert [f.task_states for f in finished] == [{"wait_up": "KILL", "work": "KILL"}]
    print(f"takeover took {takeover:.1f}s")


def test_zombie_master_writes_nothing_that_lands(cluster: Cluster) -> None:
    cluster.master("master-a")
    wait_until("master-a owns all", lambda: all(cluster.owner(p) == "master-a" for p in range(3)))
    cluster.master("master-b")
    cluster.worker("worker-a")
    cluster.client.define(mixed_flow("mixzombie", check_interval=0.5, command="true"))
    instance = cluster.client.start("mixzombie")
    p = instance_partition(instance)
    wait_until("checks", lambda: len(checks(cluster, instance)) >= 2)
    zombie = wait_until("an owner", lambda: cluster.owner(p))
    other = "master-b" if zombie == "master-a" else "master-a"
    os.kill(cluster.procs[zombie].pid, signal.SIGSTOP)
    wait_until("the other master takes over", lambda: cluster.owner(p) == other, timeout=60)
    n = len(checks(cluster, instance))
    wait_until("the new owner ticks", lambda: len(checks(cluster, instance)) >= n + 2)
    os.kill(cluster.procs[zombie].pid, signal.SIGCONT)

    def zombie_gave_up() -> bool:
        return any(ev.get("partition") == p and ev["event"] in ("partition_dropped", "transaction_failed")
                   for ev in cluster.master_events(zombie))

    wait_until("the zombie notices it lost the partition", zombie_gave_up, timeout=60)
    cluster.client.stop(instance)
    wait_until("STOP", lambda: any(isinstance(ev, e.WorkflowFinished) for _, ev in cluster.events_of(instance)))
    instances = assert_consistent(cluster)
    assert instances[instance].state == "STOP"


def test_broker_restart_mid_run(local_kafka: Any, tmp_path: Path) -> None:
    c = Cluster(local_kafka.bootstrap, tmp_path)
    try:
        c.master("master-a")
        c.worker("worker-a")
        c.client.define(mixed_flow("mixrestart", command="sleep 4"))
        instance = c.client.start("mixrestart")
        running_pid(c, instance, "work")
        c.client.close()
        c._client = None
        local_kafka.restart()
        # The SHELL task ends while the broker was away or just after: its report must land.
        wait_until("the task's success recorded", lambda: any(
            isinstance(ev, e.TaskStateChanged) and ev.task == "work" and ev.state == "SUCCESS"
            for _, ev in c.events_of(instance)), timeout=90)
        stop = c.client.stop(instance)
        assert any(isinstance(ev, e.TimerCancelled) for ev in stop.events)
        wait_until("STOP", lambda: any(isinstance(ev, e.WorkflowFinished) for _, ev in c.events_of(instance)))
        instances = assert_consistent(c)
        assert instances[instance].state == "STOP"
        assert instances[instance].tasks["work"].state == "SUCCESS"
    finally:
        c.close()


# ---- the queries with --kafka, and kills after a worker rebalance -------------------------------


def cli(c: Cluster, *args: str, ok: tuple[int, ...] = (0,)) -> Any:
    """Run `easysched ARGS --json` against the cluster's topics; the parsed JSON output."""
    done = subprocess.run([sys.executable, "-m", "easysched_es", *args, "--json"], env=c.env, cwd=c.tmp,
                          capture_output=True, timeout=120)
    assert done.returncode in ok, (args, done.returncode, done.stdout.decode()[-3000:], done.stderr.decode()[-2000:])
    return json.loads(done.stdout)


def shell_flow(name: str, command: str) -> WorkflowDefinition:
    return msgspec.convert({"name": name, "tasks": [{"name": "work", "type": "SHELL", "command": command}]},
                           WorkflowDefinition)


def test_cli_queries_fold_the_kafka_topics(cluster: Cluster) -> None:
    cluster.master("master-a")
    cluster.worker("worker-a")
    cluster.client.define(mixed_flow("mixcli"))
    instance = cluster.client.start("mixcli", partition=1)
    other = cluster.client.start("mixcli", partition=2)
    pid = running_pid(cluster, instance, "work")
    running_pid(cluster, other, "work")
    wait_until("a DEPENDENT check", lambda: len(checks(cluster, instance)) >= 1)

    everything = cli(cluster, "status")
    assert {i["instance"] for i in everything} >= {instance, other}  # merged over the partitions
    one = cli(cluster, "status", instance)
    assert one["instance"] == instance and one["workflow"] == "mixcli" and one["state"] == "RUNNING_EXECUTION"
    tasks = {t["name"]: t for t in one["tasks"]}
    assert tasks["work"]["state"] == "RUNNING_EXECUTION" and tasks["work"]["pid"] == pid
    assert tasks["wait_up"]["state"] == "RUNNING_EXECUTION"

    timers = cli(cluster, "timers")
    mine = {(t["instance"], t["task"]) for t in timers}
    assert {(instance, "wait_up"), (other, "wait_up")} <= mine
    assert [t["due_ms"] for t in timers] == sorted(t["due_ms"] for t in timers)

    cli(cluster, "--kafka", cluster.bootstrap, "stop", instance)  # the flag works as well as the env
    assert cli(cluster, "wait", instance, "--timeout", "30", ok=(1,))["state"] == "STOP"
    wait_until("the SHELL process gone", lambda: not pid_alive(pid), timeout=10)

    entries = cli(cluster, "trace", instance)
    start_offset = int(instance.split("-")[1])
    assert entries[0] == {**entries[0], "offset": start_offset, "kind": "command", "type": "start"}
    types = [x["type"] for x in entries]
    for expected in ("dispatch", "dependent_checked", "stop", "timer_cancelled", "kill_process"):
        assert expected in types, (expected, types)
    assert {x["data"].get("instance") for x in entries if x["kind"] == "event"} == {instance}

    then = cli(cluster, "replay", "--until", str(start_offset), "--partition", "1")
    assert then["partition"] == 1 and then["last_offset"] == start_offset
    assert [i["instance"] for i in then["instances"]] == [instance]  # `other` lives in partition 2
    assert then["instances"][0]["state"] != "STOP"

    report = cli(cluster, "verify")
    assert report["ok"] and report["partitions"] == 3 and report["verified"] > 0, report


def test_kill_reaches_the_worker_after_a_rebalance(cluster: Cluster) -> None:
    """A kill for a task still running on worker-a lands in a partition that now belongs to worker-b."""
    cluster.master("master-a")
    cluster.worker("worker-a")
    cluster.client.define(shell_flow("sleeper", "sleep 300"))
    cluster.client.define(shell_flow("probe", "true"))
    sleepers = {p: cluster.client.start("sleeper", partition=p) for p in range(3)}
    pids = {p: running_pid(cluster, inst, "work") for p, inst in sleepers.items()}
    cluster.worker("worker-b")

    def moved() -> int | None:
        """A partition whose new dispatches worker-b runs (it took the partition over)."""
        probes = {p: cluster.client.start("probe", partition=p) for p in range(3)}
        for p, inst in probes.items():
            wait_until("the probe ran", lambda i=inst: any(
                isinstance(ev, e.TaskStateChanged) and ev.state == "SUCCESS" for _, ev in cluster.events_of(i)))
            if any(isinstance(ev, e.TaskStateChanged) and ev.worker == "worker-b" for _, ev in cluster.events_of(inst)):
                return p
        return None

    q = wait_until("worker-b owns a partition", moved, timeout=60, every=0.5)
    assert all(pid_alive(pid) for pid in pids.values())
    for inst in sleepers.values():
        cluster.client.kill_task(inst, "work")
    for p, pid in pids.items():
        wait_until(f"the sleeper of partition {p} gone (worker-b owns {q})", lambda pid=pid: not pid_alive(pid),
                   timeout=10)
    for inst in sleepers.values():
        wait_until("the kill confirmed", lambda i=inst: any(isinstance(ev, e.KillConfirmed)
                                                             for _, ev in cluster.events_of(i)))
    instances = assert_consistent(cluster)
    assert all(instances[i].tasks["work"].state == "KILL" for i in sleepers.values())


def test_projector_folds_the_kafka_events_topic_into_duckdb(cluster: Cluster) -> None:
    cluster.master("master-a")
    cluster.worker("worker-a")
    data = cluster.tmp / "projections"
    cluster.spawn("projector", "--data-dir", str(data), "projector")
    cluster.client.define(mixed_flow("mixproj", check_interval=0.5))
    instance = cluster.client.start("mixproj", partition=1)
    running_pid(cluster, instance, "work")

    # Query through the projector's service only (never open the file it writes).
    wait_until("the projector's query service", lambda: (data / "service.json").exists())

    def rows(sql: str) -> Any:
        return cli(cluster, "--data-dir", str(data), "query", sql)

    def timer_rows() -> Any:
        return rows(f"SELECT kind FROM timers WHERE instance = '{instance}'")

    assert wait_until("the DEPENDENT timer projected", timer_rows) == [{"kind": "DEPENDENT_CHECK"}]
    cluster.client.stop(instance)
    wait_until("STOP projected", lambda: rows(f"SELECT state FROM workflow_instances WHERE instance = '{instance}'")
               == [{"state": "STOP"}])
    assert rows(f"SELECT count(*) AS n FROM timers WHERE instance = '{instance}'") == [{"n": 0}]


# ---- a worker killed -9 between its claim (or its spawn) and anything else ----------------------


@pytest.mark.parametrize("crash", ["after_claim", "after_spawn"])
def test_a_worker_killed_mid_dispatch_runs_no_attempt_twice(cluster: Cluster, crash: str) -> None:
    """worker-a dies right after its claim is durable (before its offset commit), or right after
    its spawn; worker-b then owns every events partition and re-reads what worker-a did not commit.
    Each attempt runs at most once; an attempt whose claimant died unstarted is rerun as a new one."""
    marker = cluster.tmp / "ran.txt"
    cluster.master("master-a")
    a = cluster.worker("worker-a", heartbeat_timeout=6, env={"EASYSCHED_TEST_CRASH": crash})
    cluster.client.define(shell_flow("once", f'echo "$EASYSCHED_ATTEMPT" >> {marker}; sleep 1'))
    instance = cluster.client.start("once")
    wait_until("worker-a killed itself", lambda: a.poll() is not None, timeout=30)
    assert a.returncode == -signal.SIGKILL
    cluster.worker("worker-b", heartbeat_timeout=20)

    def finished() -> bool:
        return any(isinstance(ev, e.WorkflowFinished) for _, ev in cluster.events_of(instance))

    wait_until("the instance finished", finished, timeout=45, every=0.2)
    events = [ev for _, ev in cluster.events_of(instance)]
    claims = {(ev.attempt, ev.worker) for ev in events if isinstance(ev, e.AttemptClaimed)}
    assert (1, "worker-a") in claims, events
    assert [w for (n, w) in claims if n == 1] == ["worker-a"]  # one winner per attempt
    # One line per attempt process that ran (each writes it first thing); the instance is final,
    # so every attempt that ran has written it.
    ran = marker.read_text().split()
    assert len(ran) == len(set(ran)), ran
    lost = [ev for ev in events if isinstance(ev, e.TaskStateChanged) and ev.state == "NEED_FAULT_TOLERANCE"]
    assert len(lost) == 1 and "worker worker-a lost" in lost[0].reason, events
    if crash == "after_claim":
        assert ran == ["2"], ran  # attempt 1 was claimed by worker-a, which died before running it
        ignored = [ev for ev in events if isinstance(ev, e.LateReportIgnored) and ev.report == "claim_attempt"]
        assert any(ev.attempt == 1 for ev in ignored), events  # worker-b re-read the dispatch and lost
    else:
        assert sorted(ran) == ["1", "2"], ran  # attempt 1 ran once on worker-a; attempt 2 is the rerun
    assert (2, "worker-b") in claims
    instances = assert_consistent(cluster)
    assert instances[instance].state == "SUCCESS"
