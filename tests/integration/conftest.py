"""Fixtures of the integration tests: the session's real Kafka broker (see kafka_broker.py), the
stock OpenTelemetry Collector (otelcol.py), one recorded program (recorded_app.py), and store
addresses of both kinds, embedded and server (clickhouse_server.py)."""

from tests.integration.clickhouse_server import clickhouse_server, new_store, store_kind
from tests.integration.kafka_broker import kafka_broker, kafka_session_broker, topic
from tests.integration.otelcol import otelcol_binary
from tests.integration.recorded_app import recorded_app

__all__ = ["clickhouse_server", "kafka_broker", "kafka_session_broker", "new_store", "otelcol_binary",
           "recorded_app", "store_kind", "topic"]
