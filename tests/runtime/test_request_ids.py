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
        assert _cli(env, tmp_path, "define", str(FLOW), "--timeout", "90").returncode == 0
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
