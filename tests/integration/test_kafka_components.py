"""The Kafka exporter and the collector as components, in this process, on the real broker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from execscope.collector.kafka_source import KafkaSource
from execscope.instrumentation.export.kafka_exporter import KafkaSink, KafkaSpanExporter
from execscope.storage import open_store
from tests.integration.kafka_broker import KAFKA_SH, Broker

pytestmark = pytest.mark.xdist_group("kafka")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric_points(reader: InMemoryMetricReader) -> dict:
    return {m.name: m.data.data_points for rm in reader.get_metrics_data().resource_metrics
            for sm in rm.scope_metrics for m in sm.metrics}


def test_sink_never_blocks_and_counts_drops_when_the_broker_is_unreachable() -> None:
    reader = InMemoryMetricReader()
    sink = KafkaSink(f"127.0.0.1:{closed_port()}", "t", max_queue_bytes=10_000,
                     meter_provider=MeterProvider(metric_readers=[reader]))
    started = time.monotonic()
    accepted = [sink.submit(b"k", b"x" * 1000, spans=3) for _ in range(100)]
    assert time.monotonic() - started < 0.5
    assert accepted == [True] * 10 + [False] * 90  # the queue holds 10 kB
    assert (sink.dropped_messages, sink.dropped_spans) == (90, 270)
    assert sink.force_flush(0.3) is False
    sink.shutdown(0.1)
    assert (sink.dropped_messages, sink.dropped_spans, sink.sent_messages) == (100, 300, 0)
    sink.shutdown(0.1)  # idempotent
    assert sink.submit(b"k", b"late", spans=1) is False and sink.dropped_spans == 301
    assert "301 spans in 101 messages were not delivered" in sink.report()
    points = metric_points(reader)
    assert [p.value for p in points["execscope.exporter.dropped_spans"]] == [301]
    assert [p.value for p in points["execscope.exporter.sent_spans"]] == [0]


def test_sink_delivers_every_message_in_order_per_key(kafka_broker: Broker, topic: str) -> None:
    sink = KafkaSink(kafka_broker.bootstrap, topic)
    for i in range(300):
        assert sink.submit(b"key-%d" % (i % 3), b"%d" % i, spans=2)
    assert sink.force_flush(30) is True
    assert (sink.sent_messages, sink.sent_spans, sink.dropped_spans) == (300, 600, 0)
    sink.shutdown()
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)
    by_key: dict[bytes, list[int]] = {}
    for m in consumer:
        by_key.setdefault(m.key, []).append(int(m.value))
    consumer.close()
    assert {k: len(v) for k, v in by_key.items()} == {b"key-0": 100, b"key-1": 100, b"key-2": 100}
    assert all(v == sorted(v) for v in by_key.values())


def test_sdk_exporter_sends_one_message_per_trace(kafka_broker: Broker, topic: str) -> None:
    sink = KafkaSink(kafka_broker.bootstrap, topic)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(KafkaSpanExporter(sink), schedule_delay_millis=60_000))
    tracer = provider.get_tracer("test")
    trace_ids = []
    for t in range(3):
        with tracer.start_as_current_span(f"root-{t}") as root:
            trace_ids.append(f"{root.get_span_context().trace_id:032x}")
            for c in range(4):
                with tracer.start_as_current_span(f"child-{c}"):
                    pass
    assert provider.force_flush(30_000)
    provider.shutdown()
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)
    messages = list(consumer)
    consumer.close()
    assert sorted(m.key.decode() for m in messages) == sorted(trace_ids)
    for m in messages:
        spans = [s for rs in ExportTraceServiceRequest.FromString(m.value).resource_spans
                 for ss in rs.scope_spans for s in ss.spans]
        assert len(spans) == 5 and {s.trace_id.hex() for s in spans} == {m.key.decode()}


def test_collector_reports_its_own_metrics(kafka_broker: Broker, topic: str, tmp_path: Path) -> None:
    sink = KafkaSink(kafka_broker.bootstrap, topic)
    provider = TracerProvider()
    # one export, at shutdown: a timed export between a child's end and its root's would split a trace
    # into two messages (seen once on 3.14: 40 messages)
    provider.add_span_processor(BatchSpanProcessor(KafkaSpanExporter(sink), schedule_delay_millis=60_000))
    tracer = provider.get_tracer("test")
    for _ in range(20):
        with tracer.start_as_current_span("root"):
            with tracer.start_as_current_span("child"):
                pass
    provider.shutdown()
    assert sink.force_flush(30) and sink.sent_spans == 40, sink.last_error
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        source = KafkaSource(kafka_broker.bootstrap, store, topic=topic, group=f"g-{topic}", meter_provider=meters)
        stats = source.run(exit_when_idle=1.0)
        assert store.query("SELECT count() FROM otel_traces").rows[0][0] == 40
    assert stats.spans == 40 and stats.messages == 20 and stats.dead_letters == 0
    assert sum(stats.lag.values()) == 0 and stats.lag
    points = metric_points(reader)
    assert sum(p.value for p in points["execscope.collector.spans"]) == 40
    assert sum(p.count for p in points["execscope.collector.batch.spans"]) == stats.batches
    assert all(p.value == 0 for p in points["execscope.collector.lag"])
    document = stats.as_dict()
    assert document["spans"] == 40 and document["batch_spans"]["max"] >= document["batch_spans"]["min"] > 0


def test_program_runs_and_exits_normally_when_the_broker_is_unreachable(tmp_path: Path) -> None:
    (tmp_path / "busy.py").write_text("def step(i):\n    return i * 2\n")
    bootstrap = f"127.0.0.1:{closed_port()}"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "execscope", "run", "--exporter", "kafka", "--kafka", bootstrap, "--include", "busy",
         "--", sys.executable, "-c", "import busy, sys; print(sum(busy.step(i) for i in range(5000))); sys.exit(3)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(tmp_path), "EXECSCOPE_KAFKA_EXIT_FLUSH_S": "2"})
    assert proc.returncode == 3 and proc.stdout.strip() == str(sum(2 * i for i in range(5000)))
    assert time.monotonic() - started < 60
    assert "5000 spans in" in proc.stderr and "were not delivered" in proc.stderr, proc.stderr


def test_kafka_sh_reports_a_stopped_broker(tmp_path: Path) -> None:
    status = subprocess.run(["bash", str(KAFKA_SH), "status", str(tmp_path / "none")], capture_output=True, text=True)
    assert status.returncode == 1 and "no broker running" in status.stderr
    stop = subprocess.run(["bash", str(KAFKA_SH), "stop", str(tmp_path / "none")], capture_output=True, text=True)
    assert stop.returncode == 0  # stopping nothing is fine
    usage = subprocess.run(["bash", str(KAFKA_SH)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_shared_broker_is_up(kafka_broker: Broker) -> None:
    assert kafka_broker.running()
    if kafka_broker.restartable:  # kafka.sh status, here or by the external broker's owner
        assert kafka_broker.status().splitlines()[0] == f"bootstrap={kafka_broker.bootstrap}"
