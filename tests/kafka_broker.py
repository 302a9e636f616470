"""Pytest plugin: a real Apache Kafka broker for tests marked ``kafka`` (DESIGN.md section 10).

Registered from ``tests/conftest.py`` with ``pytest_plugins = ["tests.kafka_broker"]``.

Fixtures:

* ``kafka_bootstrap`` (session) -> ``"host:port"``. ``$EASYSCHED_KAFKA`` names an existing broker to use;
  otherwise one :class:`~easysched_es.runtime.kafka.local_broker.LocalKafka` is started for the whole session
  in a temporary directory (free ports; about 1-2 s when the jars are cached, see ``ensure_jars``) and
  stopped at the end.
* ``kafka_session_broker`` (session) -> the ``LocalKafka`` behind ``kafka_bootstrap``, or None when
  ``$EASYSCHED_KAFKA`` points elsewhere. Do not stop or restart it: other tests share it.
* ``local_kafka`` (function) -> a private, started ``LocalKafka`` for tests that restart, stop or break
  the broker; stopped after the test.

When no broker can be started (no java, Maven cannot fetch the jars, the broker does not come up) the
tests that need one are skipped with the reason, except on CI (``CI=true``), where that is an error:
the Kafka tests must run there, never silently skip.

When a Docker engine answers (and ``$EASYSCHED_KAFKA`` is not set), the session broker is the
``apache/kafka`` image started through testcontainers-python's generic container
(``tests/kafka_container.py``: testcontainers' own ``KafkaContainer`` drives Confluent images);
without Docker, the Maven-jar ``LocalKafka`` as before. ``local_kafka`` (restart, stop, break)
is always a ``LocalKafka``: those tests drive its process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from easysched_es.runtime.kafka.local_broker import KafkaLocalError, LocalKafka
from tests.kafka_container import KafkaContainer, broker_choice, docker_answers

KAFKA_ENV = "EASYSCHED_KAFKA"
# Taken out of the environment for the whole session: an embedded-log test's CLI subprocess must
# never inherit it and talk to Kafka. Kafka tests get the address from the fixtures below.
EXTERNAL_BROKER = os.environ.pop(KAFKA_ENV, None)


def _unavailable(reason: str) -> NoReturn:
    """Skip (developer machine) or fail (CI) a test that needs a broker we could not start."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Kafka broker unavailable on CI (Kafka tests must run there): {reason}", pytrace=False)
    pytest.skip(f"Kafka broker unavailable: {reason}")


def _start(data_dir: Path) -> LocalKafka:
    broker = LocalKafka()
    try:
        broker.start(data_dir)
        return broker
    except (KafkaLocalError, OSError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    broker.stop()
    _unavailable(reason)  # outside the except block: no chained traceback in the report


@pytest.fixture(scope="session")
def kafka_container() -> Iterator[KafkaContainer | None]:
    """The session's broker in a container when a Docker engine answers, else None."""
    if broker_choice(EXTERNAL_BROKER, not EXTERNAL_BROKER and docker_answers()) != "container":
        yield None
        return
    try:
        container = KafkaContainer().start()
    except Exception as exc:
        _unavailable(f"container {type(exc).__name__}: {exc}")
    try:
        yield container
    finally:
        container.stop()


@pytest.fixture(scope="session")
def kafka_session_broker(
    tmp_path_factory: pytest.TempPathFactory, kafka_container: KafkaContainer | None
) -> Iterator[LocalKafka | None]:
    """The session's local broker, or None when ``$EASYSCHED_KAFKA`` or a container serves instead."""
    if EXTERNAL_BROKER or kafka_container is not None:
        yield None
        return
    broker = _start(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_session_broker: LocalKafka | None, kafka_container: KafkaContainer | None) -> str:
    """Bootstrap address (``host:port``) of a running Kafka 4.x broker shared by the session."""
    if kafka_container is not None:
        return kafka_container.bootstrap
    if kafka_session_broker is None:
        assert EXTERNAL_BROKER
        return EXTERNAL_BROKER
    return kafka_session_broker.bootstrap


@pytest.fixture
def local_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A private started broker the test may restart, stop or break (never the shared one)."""
    broker = _start(tmp_path_factory.mktemp("kafka-private"))
    try:
        yield broker
    finally:
        broker.stop()
