"""Shared test wiring: the Kafka broker plugin (a real Apache Kafka, started once per session)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Run, kill_leftovers

pytest_plugins = ["tests.kafka_broker"]


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    """A real `easysched run` on the test's own directory, stopped and swept of leftover processes after."""
    r = Run(tmp_path)
    yield r
    r.stop()
    kill_leftovers(tmp_path)
