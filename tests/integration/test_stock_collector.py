"""The stock OpenTelemetry Collector in the loop, on the session's real Kafka broker.

(1) An application run under ``opentelemetry-instrument`` with the execscope instrumentor exports
OTLP to the stock collector (otlpreceiver -> batch -> kafkaexporter, ``otlp_proto``); ``execscope
collect`` then stores exactly the spans the embedded path stores for the same program, and the node
rows, which travelled as carrier spans inside the OTLP data, fill ``cpg_nodes`` so that the spans
join it.
(2) The stock kafkareceiver reads execscope's own ``otlp_spans`` topic (written by ``execscope run
--exporter kafka``) and accepts every message and span, with distinct span ids.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.integration.kafka_broker import Broker
from tests.integration.otelcol import Collector, free_port, wait_for
from tests.integration.test_kafka import WORK, fib_calls  # the same recorded module

pytestmark = [pytest.mark.xdist_group("kafka"), pytest.mark.slow]

EXECSCOPE = [sys.executable, "-m", "execscope"]
BIN = Path(sys.executable).parent
CALLS = 30

MAIN = '''
import sys

from oapp.work import job

print(sum(job(i % 15)[1] for i in range(int(sys.argv[1]))))
'''


def expected_spans(calls: int) -> int:
    """Spans of oapp.work at level branches: its import, then one per call of job/classify/fib."""
    return 1 + sum(1 + n + fib_calls(n % 12) for n in (i % 15 for i in range(calls)))


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "oapp").mkdir()
    (tmp_path / "oapp" / "__init__.py").write_text("")
    (tmp_path / "oapp" / "work.py").write_text(textwrap.dedent(WORK))
    (tmp_path / "oapp" / "main.py").write_text(textwrap.dedent(MAIN))
    return tmp_path


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 240
        ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(cwd), **(env or {})})
    if proc.returncode != 0:
        raise AssertionError(f"{args[:4]} exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def sql(query: str, cwd: Path, store: str) -> list[dict]:
    return json.loads(run([*EXECSCOPE, "sql", query, "--store", store, "--format", "json"], cwd).stdout)


def collect(app: Path, broker: Broker, topic: str, store: str) -> dict:
    proc = run([*EXECSCOPE, "collect", "--kafka", broker.bootstrap, "--topic", topic, "--group", f"g-{topic}",
                "--store", store, "--exit-when-idle", "2", "--stats"], app)
    return json.loads(proc.stdout)


def record_embedded(app: Path, store: str) -> None:
    run([*EXECSCOPE, "run", "--adaptive", "0", "--include", "oapp.work", "--level", "branches", "--store", store,
         "--", sys.executable, "-m", "oapp.main", str(CALLS)], app)


SPANS = "SELECT SpanName AS name, NodeId AS node, ScopeName AS scope, SpanId AS id FROM otel_traces"
JOINED = """
SELECT countIf(NodeId != '') AS named,
       countIf(NodeId != '' AND (NodeId, CodeVersion) IN (SELECT node_id, code_version FROM cpg_nodes)) AS joined
FROM otel_traces
"""


def test_opentelemetry_instrument_through_the_stock_collector_stores_what_the_embedded_path_stores(
        app: Path, kafka_broker: Broker, topic: str, otelcol_binary: Path, tmp_path: Path) -> None:
    embedded = f"chdb://{app / 'embedded'}"
    record_embedded(app, embedded)

    otlp_port = free_port()
    collector = Collector(otelcol_binary, {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{otlp_port}"}}}},
        "processors": {"batch": {}},
        "exporters": {"kafka": {"brokers": [kafka_broker.bootstrap], "partition_traces_by_id": True,
                                "traces": {"topic": topic, "encoding": "otlp_proto"},
                                "producer": {"max_message_bytes": 8_000_000}}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                             "exporters": ["kafka"]}}},
    }, tmp_path)
    try:
        collector.wait_ready()
        run([str(BIN / "opentelemetry-instrument"), sys.executable, "-m", "oapp.main", str(CALLS)], app, env={
            "EXECSCOPE_INCLUDE": "oapp.work", "EXECSCOPE_LEVEL": "branches",
            "OTEL_SERVICE_NAME": "oapp", "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{otlp_port}/v1/traces",
            "OTEL_BSP_MAX_QUEUE_SIZE": "65536"})
        n = expected_spans(CALLS)
        carriers = 1  # oapp.work's node rows, one carrier span
        wait_for(lambda: collector.metric("otelcol_exporter_sent_spans", exporter="kafka") >= n + carriers,
                 60, f"the collector's Kafka exporter to send {n + carriers} spans", collector)
        assert collector.metric("otelcol_receiver_accepted_spans", receiver="otlp") == n + carriers
        assert collector.metric("otelcol_receiver_refused_spans", receiver="otlp") == 0
        assert collector.metric("otelcol_receiver_failed_spans", receiver="otlp") == 0
        assert collector.metric("otelcol_exporter_send_failed_spans", exporter="kafka") == 0
    finally:
        assert collector.stop() == 0, collector.log_tail()

    via_collector = f"chdb://{app / 'via-collector'}"
    stats = collect(app, kafka_broker, topic, via_collector)
    assert (stats["spans"], stats["dead_letters"], stats["cpg_errors"], stats["total_lag"]) == (n, 0, 0, 0)
    assert stats["nodes"] > 0

    spans = sql(SPANS, app, via_collector)
    reference = sql(SPANS, app, embedded)
    assert len(spans) == len(reference) == n
    assert len({s["id"] for s in spans}) == n
    assert Counter((s["name"], s["node"]) for s in spans) == Counter((s["name"], s["node"]) for s in reference)
    assert {s["scope"] for s in spans} == {"execscope"}  # the carrier span is not among the program's
    # the node rows came inside the OTLP data: the same module version's rows as the embedded path's
    nodes = "SELECT node_id, code_version, kind, qualname FROM cpg_nodes FINAL ORDER BY node_id, code_version"
    assert sql(nodes, app, via_collector) == sql(nodes, app, embedded)
    functions = "SELECT count() AS n FROM cpg_functions"
    assert sql(functions, app, via_collector)[0]["n"] == sql(functions, app, embedded)[0]["n"] > 0
    joined = sql(JOINED, app, via_collector)[0]
    assert int(joined["named"]) == n
    assert int(joined["joined"]) >= 0.99 * int(joined["named"]), joined


def test_stock_kafkareceiver_reads_execscopes_topic(app: Path, kafka_broker: Broker, topic: str,
                                                     otelcol_binary: Path, tmp_path: Path) -> None:
    run([*EXECSCOPE, "run", "--adaptive", "0", "--exporter", "kafka", "--kafka", kafka_broker.bootstrap,
         "--topic", topic, "--include", "oapp.work", "--level", "branches", "--", sys.executable, "-m", "oapp.main",
         str(CALLS)], app)
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap)
    try:  # every message the exporter wrote (it waited for the broker's acknowledgements at exit)
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends, starts = consumer.end_offsets(partitions), consumer.beginning_offsets(partitions)
        messages = sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        consumer.close()
    n = expected_spans(CALLS)
    assert messages > 1

    collector = Collector(otelcol_binary, {
        "receivers": {"kafka": {"brokers": [kafka_broker.bootstrap], "group_id": f"otelcol-{topic}",
                                "initial_offset": "earliest",
                                "traces": {"topics": [topic], "encoding": "otlp_proto"}}},
        # every batch logged (the debug exporter's log sampler keeps 2 a second of one message by default)
        "exporters": {"debug": {"verbosity": "detailed", "sampling_initial": 1_000_000, "sampling_thereafter": 1}},
        "service": {"pipelines": {"traces": {"receivers": ["kafka"], "exporters": ["debug"]}}},
    }, tmp_path)
    try:
        collector.wait_ready()
        wait_for(lambda: collector.debug_spans() >= n, 90, f"the debug exporter to print {n} spans", collector)
        wait_for(lambda: collector.metric("otelcol_kafka_receiver_records") >= messages, 30,
                 f"the receiver to count {messages} records", collector)
        assert collector.metric("otelcol_kafka_receiver_records") == messages
        assert collector.metric("otelcol_receiver_accepted_spans", receiver="kafka") == n
        assert collector.metric("otelcol_receiver_refused_spans", receiver="kafka") == 0
        assert collector.metric("otelcol_receiver_failed_spans", receiver="kafka") == 0
        assert collector.metric("otelcol_exporter_sent_spans", exporter="debug") == n
        assert collector.metric("otelcol_kafka_receiver_unmarshal_failed_spans") == 0
    finally:
        assert collector.stop() == 0, collector.log_tail()
    assert collector.debug_spans() == n
    ids = collector.debug_span_ids()
    assert len(ids) == n and len(set(ids)) == n
