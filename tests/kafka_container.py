"""The Kafka test broker in a container (testcontainers-python's generic container, `apache/kafka`).

Used by `tests/kafka_broker.py` when a Docker engine answers; without one, the Maven-jar
broker (`LocalKafka`) is used as before. `broker_choice` is the decision, a pure function.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from easysched_es.runtime.kafka.local_broker import KAFKA_VERSION

IMAGE = f"apache/kafka:{KAFKA_VERSION}"


def broker_choice(external: str | None, docker_answers: bool) -> str:
    """'external' when $EASYSCHED_KAFKA names a broker, 'container' when Docker answers, else 'jars'."""
    if external:
        return "external"
    return "container" if docker_answers else "jars"


def docker_answers(timeout: float = 3.0) -> bool:
    """Whether a Docker engine answers a ping (DOCKER_HOST or the default socket)."""
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no package, no socket, no permission, no daemon: all mean "no"
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class KafkaContainer:
    """A single-node KRaft Apache Kafka in a container; `bootstrap` once `start()` returned."""

    def __init__(self, image: str = IMAGE) -> None:
        self.image = image
        self.port = _free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._container: Any = None

    def start(self, timeout: float = 180.0) -> KafkaContainer:
        """Start the container and wait until the broker answers a metadata request."""
        from testcontainers.core.container import DockerContainer  # type: ignore[import-untyped]

        from easysched_es.runtime.kafka.local_broker import _probe

        env = {
            "KAFKA_NODE_ID": "1",
            "KAFKA_PROCESS_ROLES": "broker,controller",
            "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
            # The host port is fixed before the start, so the broker can advertise it.
            "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{self.bootstrap}",
            "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
            "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        }
        container = DockerContainer(self.image).with_bind_ports(9092, self.port)
        for key, value in env.items():
            container = container.with_env(key, value)
        self._container = container.start()
        deadline = time.monotonic() + timeout
        while not _probe(self.bootstrap, 2.0):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.image} did not answer on {self.bootstrap} within {timeout:.0f}s")
            time.sleep(0.5)
        return self

    def stop(self) -> None:
        """Stop and remove the container."""
        if self._container is not None:
            self._container.stop()
            self._container = None
