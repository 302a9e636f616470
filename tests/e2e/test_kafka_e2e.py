"""End to end through a real Kafka broker, with `easysched master` / `worker` as separate processes.

Every cluster has its own topic prefix (so its own consumer groups and transactional ids): tests
never see each other's commands or group members. The tests that stop no process share one
cluster (`TestOneCluster`); the others start theirs. Conditions are awaited with deadlines, and
what takes longer on a loaded machine (masters starting and settling, takeovers) is awaited for
as long as it progresses (`wait_progressing`); group session timeouts are the broker's minimum
(6 s) so takeovers are quick. Helpers: `tests/e2e/kafka_cluster.py`.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from easysched_es.core import events as e
from easysched_es.core.definitions import WorkflowDefinition
from easysched_es.flows import load_flow
from easysched_es.runtime.embedded.local_run import pid_alive
from easysched_es.runtime.kafka.client import instance_partition
from easysched_es.runtime.kafka.master import verify_partition
from tests.e2e.kafka_cluster import (  # the other Kafka e2e files import these from here
    SESSION_S,
    Cluster,
    cli,
    cli_all,
    cluster,
    shell_flow,
    wait_progressing,
    wait_until,
)

__all__ = ["SESSION_S", "Cluster", "cli", "cluster", "shell_flow", "wait_until"]

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


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
    # The partitions side by side: each replay mostly waits for the broker.
    with ThreadPoolExecutor(3) as pool:
        for state, problems in pool.map(lambda p: verify_partition(c.settings, p), range(3)):
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


# ---- one cluster (master-a, worker-a) for the tests that stop no process ----------------------


@pytest.fixture(scope="class")
def steady(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Started once for the class; each test has its own workflows and stops its own instances."""
    c = Cluster(kafka_bootstrap, tmp_path_factory.mktemp("steady"))
    c.worker("worker-a")
    c.start_masters("master-a")
    yield c
    c.close()


class TestOneCluster:
    def test_16895_stop_removes_the_dependent_timer(self, steady: Cluster) -> None:
        cluster = steady
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
        cluster.client.stop(control)
        instances = assert_consistent(cluster)
        assert instances[instance].state == "STOP"
        assert instances[instance].tasks["wait_up"].state == "KILL"

    def test_shell_kill_through_kafka(self, steady: Cluster) -> None:
        cluster = steady
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
        cluster.client.stop(instance)  # its DEPENDENT task would tick for the rest of the class
        instances = assert_consistent(cluster)
        assert instances[instance].tasks["work"].state == "KILL"

    def test_cli_queries_fold_the_kafka_topics(self, steady: Cluster) -> None:
        cluster = steady
        cluster.client.define(mixed_flow("mixcli"))
        instance = cluster.client.start("mixcli", partition=1)
        other = cluster.client.start("mixcli", partition=2)
        pid = running_pid(cluster, instance, "work")
        other_pid = running_pid(cluster, other, "work")
        wait_until("a DEPENDENT check", lambda: len(checks(cluster, instance)) >= 1)

        everything, one, timers = cli_all(cluster, ["status"], ["status", instance], ["timers"])
        assert {i["instance"] for i in everything} >= {instance, other}  # merged over the partitions
        assert one["instance"] == instance and one["workflow"] == "mixcli" and one["state"] == "RUNNING_EXECUTION"
        tasks = {t["name"]: t for t in one["tasks"]}
        assert tasks["work"]["state"] == "RUNNING_EXECUTION" and tasks["work"]["pid"] == pid
        assert tasks["wait_up"]["state"] == "RUNNING_EXECUTION"

        mine = {(t["instance"], t["task"]) for t in timers}
        assert {(instance, "wait_up"), (other, "wait_up")} <= mine
        assert [t["due_ms"] for t in timers] == sorted(t["due_ms"] for t in timers)

        cli(cluster, "--kafka", cluster.bootstrap, "stop", instance)  # the flag works as well as the env
        assert cli(cluster, "wait", instance, "--timeout", "30", ok=(1,))["state"] == "STOP"
        wait_until("the SHELL process gone", lambda: not pid_alive(pid), timeout=10)

        start_offset = int(instance.split("-")[1])
        entries, then, report = cli_all(cluster, ["trace", instance],
                                        ["replay", "--until", str(start_offset), "--partition", "1"], ["verify"])
        assert entries[0] == {**entries[0], "offset": start_offset, "kind": "command", "type": "start"}
        types = [x["type"] for x in entries]
        for expected in ("dispatch", "dependent_checked", "stop", "timer_cancelled", "kill_process"):
            assert expected in types, (expected, types)
        assert {x["data"].get("instance") for x in entries if x["kind"] == "event"} == {instance}

        assert then["partition"] == 1 and then["last_offset"] == start_offset
        replayed = {i["instance"]: i for i in then["instances"]}
        assert instance in replayed and other not in replayed  # `other` lives in partition 2
        assert replayed[instance]["state"] != "STOP"

        assert report["ok"] and report["partitions"] == 3 and report["verified"] > 0, report
        cluster.client.stop(other)
        wait_until("the other SHELL process gone", lambda: not pid_alive(other_pid), timeout=30)

    def test_projector_folds_the_kafka_events_topic_into_duckdb(self, steady: Cluster) -> None:
        cluster = steady
        data = cluster.tmp / "projections"
        cluster.spawn("projector", "--data-dir", str(data), "projector")
        try:
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
            wait_until("STOP projected", lambda: rows(
                f"SELECT state FROM workflow_instances WHERE instance = '{instance}'") == [{"state": "STOP"}])
            assert rows(f"SELECT count(*) AS n FROM timers WHERE instance = '{instance}'") == [{"n": 0}]
        finally:
            cluster.stop("projector")


# ---- masters that die or freeze, a broker that restarts -----------------------------------------


def takeover(cluster: Cluster, partition: int, new_owner: str) -> None:
    """Wait until `new_owner` is ready for `partition`, for as long as the group is still moving."""
    wait_progressing(f"{new_owner} takes partition {partition} over",
                     lambda: cluster.owner(partition) == new_owner, cluster.progress)


def test_failover_kill9_owner_then_stop(cluster: Cluster) -> None:
    cluster.start_masters("master-a", "master-b")
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
    takeover(cluster, p, standby)
    took = time.monotonic() - t0
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
    print(f"takeover took {took:.1f}s")


def test_zombie_master_writes_nothing_that_lands(cluster: Cluster) -> None:
    # Both masters together, then the coordinator's own word that the group settled (not "master-a
    # owns all within 60 s": under load, start + join + recovery alone took longer than that).
    cluster.start_masters("master-a", "master-b")
    cluster.worker("worker-a")
    cluster.client.define(mixed_flow("mixzombie", check_interval=0.5, command="true"))
    instance = cluster.client.start("mixzombie")
    p = instance_partition(instance)
    wait_until("checks", lambda: len(checks(cluster, instance)) >= 2)
    zombie = wait_until("an owner", lambda: cluster.owner(p))
    other = "master-b" if zombie == "master-a" else "master-a"
    os.kill(cluster.procs[zombie].pid, signal.SIGSTOP)
    takeover(cluster, p, other)
    n = len(checks(cluster, instance))
    wait_until("the new owner ticks", lambda: len(checks(cluster, instance)) >= n + 2)
    os.kill(cluster.procs[zombie].pid, signal.SIGCONT)

    def zombie_gave_up() -> bool:
        return any(ev.get("partition") == p and ev["event"] in ("partition_dropped", "transaction_failed")
                   for ev in cluster.master_events(zombie))

    wait_progressing("the zombie notices it lost the partition", zombie_gave_up, cluster.progress)
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


# ---- kills after a worker rebalance -------------------------------------------------------------


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
        """An events partition the workers' group coordinator has given worker-b (its word, not a guess)."""
        state, members = cluster.group("workers-default")
        if state != "Stable" or set(members) != {"worker-a", "worker-b"} or not members["worker-b"]:
            return None
        return members["worker-b"][0]

    def progress() -> object:
        return cluster.group("workers-default"), (cluster.tmp / "worker-b.err").stat().st_size

    q = wait_progressing("worker-b owns a partition", moved, progress)
    probe = cluster.client.start("probe", partition=q)
    wait_until("the probe ran", lambda: any(
        isinstance(ev, e.TaskStateChanged) and ev.state == "SUCCESS" for _, ev in cluster.events_of(probe)))
    assert any(isinstance(ev, e.TaskStateChanged) and ev.worker == "worker-b" for _, ev in cluster.events_of(probe))
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
