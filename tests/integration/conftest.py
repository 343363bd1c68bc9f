"""Fixtures of the integration tests: the session's real Kafka broker (see kafka_broker.py), the
stock OpenTelemetry Collector (otelcol.py) and one recorded program (recorded_app.py)."""

from tests.integration.kafka_broker import kafka_broker, kafka_session_broker, topic
from tests.integration.otelcol import otelcol_binary
from tests.integration.recorded_app import recorded_app

__all__ = ["kafka_broker", "kafka_session_broker", "otelcol_binary", "recorded_app", "topic"]
