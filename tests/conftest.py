"""Shared test wiring: the Kafka broker plugin (a real Apache Kafka, started once per session)."""

pytest_plugins = ["tests.kafka_broker"]
