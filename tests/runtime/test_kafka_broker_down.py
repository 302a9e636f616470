"""A broker that is down or hung: every CLI command says so in one line; the projection keeps answering.

Issue 14, "Broker down, clearly" and "Caught up means caught up". The failure-mode tests stop (or
SIGSTOP) a private broker for real; the caught-up test runs a real master (transactional writes,
so every events batch is followed by a commit marker) on the shared broker.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from easysched_es.core.definitions import ShellTask, WorkflowDefinition
from easysched_es.log.kafka import KafkaSettings, KafkaStream
from easysched_es.runtime.embedded.local_run import wait_for
from easysched_es.runtime.kafka.client import KafkaClient
from projections.service import ProjectionService

pytestmark = [pytest.mark.kafka]

_run = itertools.count()
ONE_SHOT = [["status"], ["status", "0-1"], ["timers"], ["trace", "0-1"], ["verify"], ["start", "etl"],
            ["stop", "0-3"], ["wait", "0-1", "--timeout", "1"]]


def _prefix() -> str:
    return f"down{os.getpid()}x{next(_run)}"


def _cli(bootstrap: str, prefix: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EASYSCHED_KAFKA": bootstrap, "EASYSCHED_KAFKA_PREFIX": prefix}
    return subprocess.run([sys.executable, "-m", "easysched_es", "--kafka-timeout", "2", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def _assert_one_line(proc: subprocess.CompletedProcess[str], bootstrap: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert bootstrap in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def _http(url: str, timeout: float = 5.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        result: dict[str, Any] = json.loads(answer.read())
    return result


def _query(url: str, sql: str) -> dict[str, Any]:
    req = urllib.request.Request(f"{url}/query", data=json.dumps({"sql": sql}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5.0) as answer:
        result: dict[str, Any] = json.loads(answer.read())
    return result


def _flow(name: str) -> WorkflowDefinition:
    return WorkflowDefinition(name=name, tasks=[ShellTask(name="t", command="true")])


def test_every_cli_command_fails_in_one_line_when_the_broker_is_down(local_kafka: Any) -> None:
    bootstrap, prefix = local_kafka.bootstrap, _prefix()
    with KafkaClient(KafkaSettings(bootstrap, prefix=prefix, partitions=2)):
        pass  # the topics exist: the commands below would work with a broker
    local_kafka.stop()
    for args in ONE_SHOT:
        _assert_one_line(_cli(bootstrap, prefix, *args), bootstrap)


def test_a_hung_broker_is_bounded_too(local_kafka: Any) -> None:
    bootstrap, prefix = local_kafka.bootstrap, _prefix()
    with KafkaClient(KafkaSettings(bootstrap, prefix=prefix, partitions=2)):
        pass
    pid = local_kafka.pid
    assert pid is not None
    # The whole group (watchdog and java): the kernel accepts connections, nothing answers.
    os.killpg(pid, signal.SIGSTOP)
    try:
        for args in (["status"], ["start", "etl"]):
            _assert_one_line(_cli(bootstrap, prefix, *args), bootstrap)
    finally:
        os.killpg(pid, signal.SIGCONT)


@pytest.fixture
def kafka_projection(local_kafka: Any, tmp_path: Path) -> Iterator[tuple[Any, ProjectionService, str]]:
    settings = KafkaSettings(local_kafka.bootstrap, prefix=_prefix(), partitions=2)
    events, commands = KafkaStream(settings, "events"), KafkaStream(settings, "commands")
    (tmp_path / "proj").mkdir()
    service = ProjectionService(tmp_path / "proj", events=events, commands=commands)
    service.start()
    try:
        yield local_kafka, service, settings.prefix
    finally:
        service.stop()
        events.close()
        commands.close()


def test_health_and_queries_answer_while_the_broker_is_down(kafka_projection: tuple[Any, ProjectionService, str],
                                                           tmp_path: Path) -> None:
    broker, service, prefix = kafka_projection
    with KafkaStream(KafkaSettings(broker.bootstrap, prefix=prefix), "commands", create=False) as commands:
        from easysched_es.core import commands as c
        from easysched_es.core.codec import encode

        commands.append([encode(c.DefineWorkflow(definition=_flow("down"), at=1))], 0)
    wait_for("the command projected", lambda: _query(service.url, "SELECT count(*) FROM commands")["rows"] == [[1]])
    broker.stop()
    for _ in range(3):  # the projector thread is stuck on the broker meanwhile; the API is not
        health = _http(f"{service.url}/health")
        assert health["ok"] is True
    assert _query(service.url, "SELECT count(*) FROM commands")["rows"] == [[1]]
    # The CLI finds the service (its /health answers) instead of opening the held file.
    proc = subprocess.run([sys.executable, "-m", "easysched_es", "--data-dir", str(tmp_path / "proj"), "query",
                           "SELECT count(*) AS n FROM commands", "--json"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [{"n": 1}]


def test_caught_up_counts_records_not_transaction_markers(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = _prefix()
    settings = KafkaSettings(kafka_bootstrap, prefix=prefix, partitions=2)
    env = {**os.environ, "EASYSCHED_KAFKA": kafka_bootstrap, "EASYSCHED_KAFKA_PREFIX": prefix,
           "EASYSCHED_KAFKA_PARTITIONS": "2"}
    master = subprocess.Popen([sys.executable, "-m", "easysched_es", "master", "--session-timeout", "6"], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "master.err", "wb"))  # noqa: SIM115
    events = commands = None
    service = None
    try:
        with KafkaClient(settings, timeout=90) as client:
            client.define(_flow("markers"))  # decided by the master: transactional batches
        events, commands = KafkaStream(settings, "events"), KafkaStream(settings, "commands")
        (tmp_path / "proj").mkdir()
        service = ProjectionService(tmp_path / "proj", events=events, commands=commands)
        service.start()
        health = wait_for("caught up", lambda: (h := _http(f"{service.url}/health"))["caught_up"] and h, 90)
        assert health["last_error"] is None
        stats = _http(f"{service.url}/stats")["projection"]
        for s in stats["streams"]:
            assert s["pending"] == 0, stats
        # The markers are there: the events partitions end past the last record.
        ev = [s for s in stats["streams"] if s["stream"] == "events"]
        assert all(s["end_offset"] > s["next_offset"] for s in ev), ev
    finally:
        if service is not None:
            service.stop()
        for s in (events, commands):
            if s is not None:
                s.close()
        master.terminate()
        master.wait(30)
