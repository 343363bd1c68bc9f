"""The collector and CPG carrier spans on the real broker and the real embedded engine: carriers go to
the CPG tables, never to otel_traces; a cut carrier is counted and loses nothing else of its message;
a second reading of the same messages adds nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka import KafkaProducer
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from execscope.collector.kafka_source import KafkaSource
from execscope.instrumentation.export.cpg_spans import CpgSpanSink
from execscope.instrumentation.nodes.node_ids import ModuleNodes, assign_node_ids
from execscope.storage import open_store
from tests.integration.kafka_broker import Broker

pytestmark = pytest.mark.xdist_group("kafka")

SOURCE = "def double(x):\n    return 2 * x\n\n\ndef half(x):\n    if x:\n        return x / 2\n    return 0\n"


def module(tmp_path: Path, name: str) -> ModuleNodes:
    path = tmp_path / f"{name}.py"
    path.write_text(SOURCE)
    return assign_node_ids(SOURCE, name, str(path))


def message(nodes: ModuleNodes, calls: int, limits: SpanLimits | None = None) -> bytes:
    """One request: ``nodes``' carrier span (cut to ``limits``) and ``calls`` spans naming its functions."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=limits or SpanLimits())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    CpgSpanSink(provider)(nodes)
    for i in range(calls):
        qualname = ("double", "half")[i % 2]
        with provider.get_tracer("execscope").start_as_current_span(f"{nodes.module}.{qualname}", attributes={
                "execscope.node_id": f"{nodes.module}:{qualname}", "execscope.code_version": nodes.code_version}):
            pass
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def test_carriers_fill_the_cpg_tables_and_never_otel_traces(kafka_broker: Broker, topic: str, tmp_path: Path) -> None:
    good, other, cut = module(tmp_path, "cmod_a"), module(tmp_path, "cmod_b"), module(tmp_path, "cmod_c")
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    for value in (message(good, 3), message(other, 0), message(cut, 2, SpanLimits(max_attribute_length=40))):
        producer.send(topic, value)
    producer.flush(30)
    producer.close()
    query = """SELECT (SELECT count() FROM otel_traces) AS spans,
                      (SELECT countIf(ScopeName = 'execscope.cpg') FROM otel_traces) AS carriers,
                      (SELECT groupArray(DISTINCT module) FROM cpg_nodes) AS modules,
                      (SELECT count() FROM cpg_nodes) AS nodes,
                      (SELECT count() FROM cpg_functions) AS functions,
                      (SELECT countIf(NodeId IN (SELECT node_id FROM cpg_nodes)) FROM otel_traces) AS joined"""
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        stats = KafkaSource(kafka_broker.bootstrap, store, topic=topic, group=f"g-{topic}").run(exit_when_idle=1.0)
        assert (stats.messages, stats.spans, stats.cpg_errors, stats.dead_letters) == (3, 5, 1, 0)
        assert "cut by an attribute length limit" in stats.last_cpg_error
        first = tuple(store.query(query).rows[0])
        spans, carriers, modules, nodes, functions, joined = first
        assert (spans, carriers, sorted(modules), nodes) == (5, 0, ["cmod_a", "cmod_b"], stats.nodes)
        assert nodes >= len(good.nodes) + len(other.nodes)  # the analysis adds its own (CFG entry, exit)
        assert functions == 4  # the files are there: the whole CPG, not only node rows
        assert joined == 3  # cmod_c's node rows were cut: its two spans name nodes the store lacks
        # read again by another group: the same batches and module versions add nothing
        again = KafkaSource(kafka_broker.bootstrap, store, topic=topic, group=f"h-{topic}").run(exit_when_idle=1.0)
        assert (again.spans, again.nodes) == (5, 0)
        assert tuple(store.query(query).rows[0]) == first
