"""Fixtures of the integration tests: the session's real Kafka broker (see kafka_broker.py)."""

from tests.integration.kafka_broker import kafka_broker, kafka_session_broker, topic

__all__ = ["kafka_broker", "kafka_session_broker", "topic"]
