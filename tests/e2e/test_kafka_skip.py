"""A command that raises stops its Kafka partition loudly; `easysched skip --kafka` lets it go on.

Real broker, real `easysched master` / `worker` processes. The bug is injected into every
easysched process of the test (masters, workers, the CLI) by the same `sitecustomize` hook the
embedded skip test uses: the pause handler raises. This test process has no bug, so what it
checks it reads from the events topic (decisions as recorded) or asks the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from easysched_es.core import commands as c
from easysched_es.core import events as e
from easysched_es.core.definitions import WorkflowDefinition
from tests.e2e.test_kafka_e2e import Cluster, cli, wait_until
from tests.robust.helpers import flow, shell
from tests.robust.test_skip import _BUG

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def cluster(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(kafka_bootstrap, tmp_path)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_BUG)
    c.env = {**c.env, "PYTHONPATH": f"{hook}:{os.environ.get('PYTHONPATH', '')}", "EASYSCHED_TEST_PAUSE_BUG": "1"}
    yield c
    c.close()


def _definition() -> WorkflowDefinition:
    return flow("w", shell("a", "sleep 1"), shell("b", upstream=["a"]))


def test_a_raising_command_stops_the_kafka_partition_until_skipped(cluster: Cluster) -> None:
    master = cluster.master("master-a")
    cluster.worker("worker-a")
    cluster.client.define(_definition())
    instance = cluster.client.start("w")
    [(partition, bad)] = cluster.client.send(c.PauseWorkflow(instance=instance))

    def halted() -> dict[str, object] | None:
        return next((ev for ev in cluster.master_events("master-a") if ev["event"] == "partition_halted"), None)

    stop = wait_until("the master says the partition stopped", halted, timeout=60, every=0.2)
    assert (stop["partition"], stop["offset"], stop["command"]) == (partition, bad, "pause")
    assert "KeyError" in str(stop["error"]) and "a bug in the pause handler" in str(stop["error"])
    err = (cluster.tmp / "master-a.err").read_text()
    assert f"partition {partition} is stopped at offset {bad}: applying the 'pause' command" in err
    assert f"easysched skip {bad}" in err
    assert master.poll() is None  # stopped loudly, not dead
    # Nothing at or after the bad offset is decided meanwhile.
    assert not [b for b in cluster.batches() if b.partition == partition and b.offset >= bad]
    # The CLI says so (its fold has the bug too), naming the offset.
    status = cli(cluster, "status", ok=(1,))
    assert status["kind"] == "halted" and f"stopped at offset {bad}" in status["error"], status
    # A command sent to the stopped partition is not decided; after its timeout the CLI says why,
    # not "no master" (a resume of a running instance: rejected, harmlessly, once skipped).
    resumed = cli(cluster, "resume", instance, "--timeout", "3", ok=(1,))
    assert resumed["kind"] == "halted" and f"easysched skip {bad}" in resumed["error"], resumed
    # The operator skips it in that partition; the master folds again past it, once.
    skipped = cli(cluster, "skip", str(bad), "--partition", str(partition), "--reason", "bug #42")
    assert skipped["skipped"] == bad and skipped["accepted"] is True, skipped

    def succeeded() -> bool:
        return cli(cluster, "status", instance, ok=(0, 1)).get("state") == "SUCCESS"

    wait_until("the instance goes on without the pause", succeeded, timeout=90, every=0.5)
    recorded = [b for b in cluster.batches() if b.partition == partition]
    at_bad = [b for b in recorded if b.offset == bad]
    assert len(at_bad) == 1 and [type(ev) for ev in at_bad[0].events] == [e.CommandSkipped], at_bad
    assert at_bad[0].events[0].reason == "bug #42"  # type: ignore[union-attr]
    assert any(isinstance(ev, e.SkipRecorded) and ev.offset == bad for b in recorded for ev in b.events)
    assert len({b.offset for b in recorded}) == len(recorded)  # every command decided once
    # Every replay decides the same: verify (through the CLI, which has the bug) is clean.
    verdict = cli(cluster, "verify")
    assert verdict["ok"] is True, verdict
    # A second master taking the partition over folds past the skip the same way.
    master.terminate()
    master.wait(30)
    cluster.master("master-b")
    later = cluster.client.start("w", partition=partition)
    wait_until("master-b decides after the skip",
               lambda: cli(cluster, "status", later, ok=(0, 1)).get("state") == "SUCCESS", timeout=120, every=0.5)
    assert cli(cluster, "verify")["ok"] is True
