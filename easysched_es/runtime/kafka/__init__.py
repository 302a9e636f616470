"""The Kafka deployment: masters in a consumer group, workers, the projector, a local broker for tests."""
