"""`kafka-local start` says which directory it uses and whether it holds earlier data; `--fresh` starts empty."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from easysched_es.cli.kafka import earlier_topics

pytestmark = [pytest.mark.kafka]


def _local(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "easysched_es", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_earlier_topics_leave_internal_ones_out(tmp_path: Path) -> None:
    for name in ("a.commands-0", "a.commands-1", "__consumer_offsets-3", "__cluster_metadata-0", "meta.properties"):
        (tmp_path / name).mkdir()
    assert earlier_topics(tmp_path) == {"a.commands"}
    assert earlier_topics(tmp_path / "missing") == set()


def test_start_says_whether_the_directory_holds_data_and_fresh_empties_it(tmp_path: Path) -> None:
    d = str(tmp_path / "broker")
    try:
        first = _local("kafka-local", "start", "--dir", d)
        assert first.returncode == 0, first.stderr
        assert d in first.stdout and "held no earlier data" in first.stdout
        bootstrap = json.loads(_local("kafka-local", "status", "--dir", d, "--json").stdout)["bootstrap"]
        env = {**os.environ, "EASYSCHED_KAFKA": bootstrap, "EASYSCHED_KAFKA_PREFIX": "hyg"}
        assert _local("start", "anything", "--no-wait", env=env).returncode == 0  # creates the topics
        refused = _local("kafka-local", "start", "--fresh", "--dir", d)
        assert refused.returncode == 2 and "stop" in refused.stderr  # never under a running broker
        _local("kafka-local", "stop", "--dir", d)
        again = _local("kafka-local", "start", "--dir", d)
        assert "holds data from earlier runs" in again.stdout and "hyg.commands" in again.stdout, again.stdout
        _local("kafka-local", "stop", "--dir", d)
        fresh = _local("kafka-local", "start", "--fresh", "--dir", d)
        assert fresh.returncode == 0 and "held no earlier data" in fresh.stdout, fresh.stdout + fresh.stderr
    finally:
        _local("kafka-local", "stop", "--dir", d)
