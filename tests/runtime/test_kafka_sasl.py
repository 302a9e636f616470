"""SASL/PLAIN for real: `kafka-local start --sasl USER:PASS`, credentials from EASYSCHED_KAFKA_CONFIG.

One private SASL broker for the module (started with the CLI, as a user would), shared by every
test here; each test has its own topic prefix. Conditions are awaited with deadlines.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from easysched_es.runtime.embedded.local_run import wait_for
from easysched_es.runtime.kafka.local_sasl import parse_credentials, sasl_properties
from tests.e2e.kafka_cluster import stop_processes
from tests.kafka_broker import _unavailable

pytestmark = [pytest.mark.kafka]

USER, PASSWORD = "alice", "s3cret-Pa55:with:colons"
_prefix = itertools.count()


def _easysched(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "easysched_es", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


class SaslBroker:
    def __init__(self, directory: Path, info: dict[str, Any]) -> None:
        self.dir = directory
        self.bootstrap: str = info["bootstrap"]
        self.config = Path(info["sasl"]["client_config"])

    def env(self, *, credentials: bool = True, **extra: str) -> dict[str, str]:
        """The environment of a process of a test: its own topic prefix, with or without credentials."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("EASYSCHED_KAFKA")}
        env.update(EASYSCHED_KAFKA=self.bootstrap, EASYSCHED_KAFKA_PREFIX=f"sasl{os.getpid()}x{next(_prefix)}")
        if credentials:
            env["EASYSCHED_KAFKA_CONFIG"] = str(self.config)
        return {**env, **extra}


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslBroker]:
    directory = tmp_path_factory.mktemp("kafka-sasl")
    started = _easysched("kafka-local", "start", "--dir", str(directory), "--sasl", f"{USER}:{PASSWORD}", "--json")
    try:
        if started.returncode != 0:
            _unavailable(f"kafka-local start --sasl failed: {started.stdout[-2000:]} {started.stderr[-2000:]}")
        yield SaslBroker(directory, json.loads(started.stdout))
    finally:
        _easysched("kafka-local", "stop", "--dir", str(directory))


# ---- credentials: parsing and the broker's settings (no broker) ---------------------------------


@pytest.mark.parametrize(("text", "why"), [
    ("alice", "colon"), (":pw", "user name"), ("al ice:pw", "user name"), ("alice:", "empty"),
    ('alice:pa"ss', "quotes"), ("alice:pa\\ss", "backslashes"), ("alice:pa\nss", "control"),
])
def test_unusable_credentials_are_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_credentials(text)


def test_the_password_is_everything_after_the_first_colon_and_never_in_a_repr() -> None:
    user = parse_credentials(f"{USER}:{PASSWORD}")
    assert (user.username, user.password) == (USER, PASSWORD)
    assert PASSWORD not in repr(user)
    props = sasl_properties(user, 9092, 9093)
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
    assert "CONTROLLER://127.0.0.1:9093" in props["listeners"]  # the controller stays plaintext, internal
    assert f'user_{USER}="{PASSWORD}"' in props["listener.name.sasl_plaintext.plain.sasl.jaas.config"]


def test_kafka_local_start_refuses_bad_sasl_as_usage(tmp_path: Path) -> None:
    done = _easysched("kafka-local", "start", "--dir", str(tmp_path / "never"), "--sasl", "nocolon", "--json")
    assert done.returncode == 2, done.stdout + done.stderr
    assert json.loads(done.stdout)["kind"] == "usage" and "USER:PASS" in json.loads(done.stdout)["error"]
    assert not (tmp_path / "never" / "kafka-local.json").exists()  # nothing was started


# ---- the broker -------------------------------------------------------------------------------


def test_status_says_sasl_is_on_and_never_prints_the_password(sasl_broker: SaslBroker) -> None:
    human = _easysched("kafka-local", "status", "--dir", str(sasl_broker.dir))
    assert human.returncode == 0 and "SASL on" in human.stdout and f"user {USER}" in human.stdout, human.stdout
    data = json.loads(_easysched("kafka-local", "status", "--dir", str(sasl_broker.dir), "--json").stdout)
    assert data["sasl"]["mechanism"] == "PLAIN" and data["sasl"]["username"] == USER
    assert PASSWORD not in human.stdout + human.stderr + json.dumps(data)
    for name in ("client-sasl.json", "server.properties"):  # the only files that hold it
        assert (sasl_broker.dir / name).stat().st_mode & 0o077 == 0, name
    assert json.loads(sasl_broker.config.read_text())["sasl_plain_password"] == PASSWORD
    # The same start again is the running broker; another password is refused, not silently ignored.
    again = _easysched("kafka-local", "start", "--dir", str(sasl_broker.dir), "--sasl", f"{USER}:{PASSWORD}")
    assert again.returncode == 0 and "already running" in again.stdout, again.stdout + again.stderr
    other = _easysched("kafka-local", "start", "--dir", str(sasl_broker.dir), "--sasl", f"{USER}:other", "--json")
    assert other.returncode == 1 and "another password" in json.loads(other.stdout)["error"], other.stdout


def test_master_worker_projector_and_cli_work_with_the_credentials(sasl_broker: SaslBroker, tmp_path: Path) -> None:
    env = sasl_broker.env()
    flow = tmp_path / "hello.yaml"
    flow.write_text('name: hello\ntasks:\n  - name: work\n    type: SHELL\n    command: "echo hi"\n')
    data = tmp_path / "projections"
    procs = [subprocess.Popen([sys.executable, "-m", "easysched_es", *args], env=env, cwd=tmp_path,
                              stdout=open(tmp_path / f"{name}.out", "wb"),  # noqa: SIM115 - owned by the process
                              stderr=open(tmp_path / f"{name}.err", "wb"))  # noqa: SIM115
             for name, args in [("master", ["master", "--session-timeout", "6", "--events-to-stdout"]),
                                ("worker", ["worker", "--work-dir", str(tmp_path / "w"), "--session-timeout", "6"]),
                                ("projector", ["--data-dir", str(data), "projector"])]]
    try:
        def master_ready() -> bool:  # every partition owned: define's own wait for a verdict is short
            out = (tmp_path / "master.out").read_text()
            return out.count('"partition_ready"') >= 3 or procs[0].poll() is not None

        wait_for("the master owns every partition", master_ready, 120, 0.2)
        defined = _easysched("define", str(flow), "--json", env=env, cwd=tmp_path)
        assert defined.returncode == 0, defined.stdout + defined.stderr
        started = _easysched("start", "hello", "--timeout", "120", "--json", env=env, cwd=tmp_path)
        assert started.returncode == 0, started.stdout + started.stderr
        instance = json.loads(started.stdout)["instance"]
        waited = _easysched("wait", instance, "--timeout", "120", "--json", env=env, cwd=tmp_path)
        assert waited.returncode == 0 and json.loads(waited.stdout)["state"] == "SUCCESS", waited.stdout
        status = _easysched("status", instance, "--json", env=env, cwd=tmp_path)
        assert json.loads(status.stdout)["tasks"][0]["exit_code"] == 0, status.stdout

        def projected() -> bool:
            rows = _easysched("--data-dir", str(data), "query", "SELECT state FROM workflow_instances "
                              f"WHERE instance = '{instance}'", "--json", env=env, cwd=tmp_path)
            return rows.returncode == 0 and json.loads(rows.stdout) == [{"state": "SUCCESS"}]

        wait_for("the projector sees the instance succeed", projected, 120, 0.5)
        assert all(p.poll() is None for p in procs), [(tmp_path / f"{n}.err").read_text()[-2000:]
                                                      for n in ("master", "worker", "projector")]
    finally:
        stop_processes(procs)


def _one_error(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    error = json.loads(done.stdout)
    assert set(error) == {"error", "kind"} and "\n" not in error["error"], error
    return error


def test_a_client_without_credentials_is_refused_with_one_clear_line(sasl_broker: SaslBroker) -> None:
    bare = sasl_broker.env(credentials=False)
    error = _one_error(_easysched("--kafka-timeout", "3", "status", "--json", env=bare))
    assert "wants SASL authentication (PLAIN)" in error["error"] and "EASYSCHED_KAFKA_CONFIG" in error["error"]
    human = _easysched("--kafka-timeout", "3", "status", env=bare)
    assert human.returncode == 1 and human.stdout == ""
    assert [line for line in human.stderr.splitlines() if line.startswith("error:")] == human.stderr.splitlines()[-1:]
    assert "wants SASL authentication" in human.stderr and "Traceback" not in human.stderr
    # A service says so at once instead of retrying in silence.
    master = _easysched("master", env=bare, timeout=60)
    assert master.returncode == 1 and "wants SASL authentication" in master.stderr, master.stderr[-2000:]
    assert "Traceback" not in master.stderr


def test_a_wrong_password_is_named_as_such(sasl_broker: SaslBroker, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.properties"  # the Java-style form works too
    wrong.write_text(f"security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.plain.username={USER}\n"
                     "sasl.plain.password=not-it\n")
    error = _one_error(_easysched("--kafka-timeout", "3", "status", "--json",
                                  env=sasl_broker.env(EASYSCHED_KAFKA_CONFIG=str(wrong))))
    assert f"refused the credentials of user {USER}" in error["error"], error
    assert "not-it" not in error["error"]
