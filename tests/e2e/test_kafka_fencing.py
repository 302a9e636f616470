"""Kafka workers fenced like masters: a worker paused past its heartbeat timeout starts nothing it claimed.

Real broker, real `easysched master` / `worker` processes, real task processes (each appends its
attempt number to a file first thing, so the file counts the attempt processes that ran).
"""

from __future__ import annotations

import signal
from pathlib import Path
from urllib.parse import quote

import pytest

from easysched_es.core import events as e
from easysched_es.runtime.fold import load_states
from easysched_es.runtime.kafka.master import KafkaLog
from easysched_es.runtime.worker import attempt_file_name
from tests.e2e.kafka_cluster import cluster
from tests.e2e.test_kafka_e2e import Cluster, assert_consistent, shell_flow, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
__all__ = ["cluster"]  # the shared fixture, imported for this module's tests


def _stopped(pid: int) -> bool:
    """The process is in the stopped state (SIGSTOP), per /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "T"


@pytest.mark.parametrize("pause", ["pause_after_claim", "pause_before_spawn"])
def test_a_worker_sigstopped_mid_claim_past_its_timeout_never_starts_that_claim(cluster: Cluster, pause: str) -> None:
    """worker-a claims attempt 1 and is paused (SIGSTOP) before it starts it: right after its claim
    is durable, or once it has read that it won the claim; the master declares it lost and worker-b
    runs attempt 2. After SIGCONT worker-a must not start attempt 1: its lease has expired (and its
    heartbeat is refused, so it is not renewed); it reads WorkerLost and comes back as a new
    incarnation."""
    marker = cluster.tmp / "ran.txt"
    cluster.master("master-a")
    a = cluster.worker("worker-a", heartbeat_timeout=6, env={"EASYSCHED_TEST_CRASH": pause})
    cluster.client.define(shell_flow("once", f'echo "$EASYSCHED_ATTEMPT" >> {marker}; sleep 1'))
    instance = cluster.client.start("once")
    wait_until(f"worker-a paused itself ({pause})", lambda: _stopped(a.pid), timeout=60, every=0.1)
    cluster.worker("worker-b", heartbeat_timeout=20)

    def finished() -> bool:
        return any(isinstance(ev, e.WorkflowFinished) for _, ev in cluster.events_of(instance))

    wait_until("the instance finished on worker-b", finished, timeout=90, every=0.3)
    events = [ev for _, ev in cluster.events_of(instance)]
    claims = {(ev.attempt, ev.worker, ev.incarnation) for ev in events if isinstance(ev, e.AttemptClaimed)}
    first = [inc for (n, w, inc) in claims if n == 1 and w == "worker-a"]
    assert first and first[0] > 0, claims
    lost = [ev for b in cluster.batches() for ev in b.events if isinstance(ev, e.WorkerLost)]
    assert ("worker-a", first[0]) in {(ev.worker, ev.incarnation) for ev in lost}, lost

    a.send_signal(signal.SIGCONT)

    def came_back() -> bool:
        states = load_states(KafkaLog(cluster.settings))
        return all(s.incarnations.get("worker-a", 0) > s.lost_incarnations.get("worker-a", 0) > 0 for s in states)

    wait_until("worker-a back as a new incarnation in every partition", came_back, timeout=90, every=0.5)
    assert "was declared lost" in (cluster.tmp / "worker-a.err").read_text()
    assert a.poll() is None  # it came back; it did not die
    # worker-a never started attempt 1: it made no claim file for it (made before any spawn), and
    # the only attempt process that ran is the rerun.
    claim = cluster.tmp / "worker-a" / "runs" / quote(instance, safe="") / attempt_file_name("work", 1)
    assert not claim.exists()
    assert marker.read_text().split() == ["2"]
    instances = assert_consistent(cluster)
    assert instances[instance].state == "SUCCESS"
