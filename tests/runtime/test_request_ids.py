"""Idempotent commands through the CLI and the clients (issue 14 point 2), embedded and on Kafka."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from easysched_es.runtime.embedded.local_run import wait_for

FLOW = Path(__file__).resolve().parents[2] / "flows" / "upstream.yaml"
_run = itertools.count()


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "easysched_es", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=180)


def _embedded_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "EASYSCHED_DATA_DIR": str(tmp_path / "data")}


def test_a_retried_start_on_the_embedded_log_returns_the_same_instance(tmp_path: Path) -> None:
    env = _embedded_env(tmp_path)
    assert _cli(env, tmp_path, "define", str(FLOW)).returncode == 0
    first = _cli(env, tmp_path, "start", "upstream", "--json")
    assert first.returncode == 0, first.stderr
    answer = json.loads(first.stdout)
    again = _cli(env, tmp_path, "start", "upstream", "--request-id", answer["request_id"], "--json")
    assert json.loads(again.stdout)["instance"] == answer["instance"]
    plain = _cli(env, tmp_path, "start", "upstream")
    assert plain.stdout.strip() != answer["instance"]  # a new invocation is a new request
    assert "--request-id" in plain.stderr  # the id is printed, with how to retry
    found = json.loads(_cli(env, tmp_path, "status", "--request-id", answer["request_id"], "--json").stdout)
    assert found["instance"] == answer["instance"] and found["status"]["instance"] == answer["instance"]


def test_no_wait_returns_where_the_command_is(tmp_path: Path) -> None:
    env = _embedded_env(tmp_path)
    _cli(env, tmp_path, "define", str(FLOW))
    proc = _cli(env, tmp_path, "start", "upstream", "--no-wait", "--request-id", "nw-1", "--json")
    placed = json.loads(proc.stdout)
    assert placed["request_id"] == "nw-1" and placed["placed"][0]["offset"] >= 0
    instance = json.loads(_cli(env, tmp_path, "start", "upstream", "--request-id", "nw-1", "--json").stdout)
    assert instance["instance"] == f"0-{placed['placed'][0]['offset']}"


@pytest.mark.kafka
def test_a_start_that_timed_out_is_retried_without_a_duplicate_on_kafka(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"rid{os.getpid()}x{next(_run)}"
    env = {**os.environ, "EASYSCHED_KAFKA": kafka_bootstrap, "EASYSCHED_KAFKA_PREFIX": prefix,
           "EASYSCHED_KAFKA_PARTITIONS": "3"}
    # No master yet: the start goes into the log, the wait runs out (exit 4) and names the id.
    timed_out = _cli(env, tmp_path, "start", "upstream", "--timeout", "1", "--request-id", "retry-me")
    assert timed_out.returncode == 4, (timed_out.stdout, timed_out.stderr)
    assert "--request-id retry-me" in timed_out.stderr and "Traceback" not in timed_out.stderr
    master = subprocess.Popen([sys.executable, "-m", "easysched_es", "master", "--session-timeout", "6"], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "master.err", "wb"))  # noqa: SIM115
    try:
        # The first start is rejected (the workflow is not defined yet) once a master decides it;
        # its retry gets that same decision, not a new one.
        retried = _cli(env, tmp_path, "start", "upstream", "--timeout", "90", "--request-id", "retry-me")
        assert retried.returncode == 1 and "unknown workflow" in retried.stderr.lower(), retried.stderr
        assert _cli(env, tmp_path, "define", str(FLOW)).returncode == 0
        ids = set()
        for _ in range(3):  # three invocations with one id: three partitions by round-robin otherwise
            proc = _cli(env, tmp_path, "start", "upstream", "--request-id", "once", "--json", "--timeout", "90")
            assert proc.returncode == 0, proc.stderr
            ids.add(json.loads(proc.stdout)["instance"])
        assert len(ids) == 1
        status = wait_for("status of the request", lambda: json.loads(
            _cli(env, tmp_path, "status", "--request-id", "once", "--json").stdout or "null"), 60)
        assert status["instance"] in ids
        every = json.loads(_cli(env, tmp_path, "status", "--json").stdout)
        assert [i["instance"] for i in every if i["workflow"] == "upstream"] == list(ids)
    finally:
        master.terminate()
        master.wait(30)


@pytest.mark.kafka
def test_a_plain_kafka_producer_starts_instances_in_msgpack_and_in_json(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Issue 14 point 1: a team producing with its own client, in either encoding, sees the instance run."""
    import msgspec
    from kafka import KafkaProducer

    from easysched_es.core import events as e
    from easysched_es.core.codec import decode_batch
    from easysched_es.log.kafka import KafkaSettings, KafkaStream

    prefix = f"wire{os.getpid()}x{next(_run)}"
    env = {**os.environ, "EASYSCHED_KAFKA": kafka_bootstrap, "EASYSCHED_KAFKA_PREFIX": prefix,
           "EASYSCHED_KAFKA_PARTITIONS": "1"}
    master = subprocess.Popen([sys.executable, "-m", "easysched_es", "master", "--session-timeout", "6"], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "master.err", "wb"))  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, "-m", "easysched_es", "worker", "--name", "wire-worker",
                               "--work-dir", str(tmp_path / "work"), "--session-timeout", "6"], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.err", "wb"))  # noqa: SIM115
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        assert _cli(env, tmp_path, "define", str(FLOW)).returncode == 0, "define"
        start = {"type": "start", "workflow": "upstream", "at": 1_764_590_400_000}
        topic = f"{prefix}.commands"
        packed = producer.send(topic, msgspec.msgpack.encode(start), partition=0).get(30).offset
        as_json = producer.send(topic, msgspec.json.encode(start), partition=0,
                                headers=[("content-type", b"application/json")]).get(30).offset
        bad = producer.send(topic, b'{"type": "start"}', partition=0,
                            headers=[("content-type", b"application/json")]).get(30).offset

        def decided() -> dict[int, list[e.Event]] | None:
            with KafkaStream(KafkaSettings(kafka_bootstrap, prefix=prefix), "events", create=False) as events:
                found = {b.offset: b.events for b in map(decode_batch, (r.payload for r in events.iter_records(0)))}
            return found if {packed, as_json, bad} <= set(found) else None

        batches = wait_for("the three commands decided", decided, 90)
        for offset in (packed, as_json):
            assert any(isinstance(ev, e.WorkflowStarted) and ev.instance == f"0-{offset}" for ev in batches[offset])
        rejected = [ev for ev in batches[bad] if isinstance(ev, e.CommandRejected)]
        assert rejected and "JSON command does not decode" in rejected[0].reason
        for offset in (packed, as_json):  # and they run to the end, on a worker
            done = _cli(env, tmp_path, "wait", f"0-{offset}", "--timeout", "120", "--json")
            assert done.returncode == 0 and json.loads(done.stdout)["state"] == "SUCCESS", done.stdout + done.stderr
    finally:
        producer.close()
        for proc in (worker, master):
            proc.terminate()
        for proc in (worker, master):
            proc.wait(30)
