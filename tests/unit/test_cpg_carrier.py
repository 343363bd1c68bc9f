"""Node rows inside the OTLP data: the instrumentor's carrier spans (export/cpg_spans.py) and the
collector taking them out of a request (collector-processors/cpg_carrier.py), on real SDK objects."""

from __future__ import annotations

import json

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

from execscope.collector.cpg_carrier import take_carriers
from execscope.instrumentation.export import cpg_spans
from execscope.instrumentation.export.spool import module_document
from execscope.instrumentation.nodes.node_ids import assign_node_ids

SOURCE = '''
def classify(x):
    """A docstring long enough to compress."""
    if x % 3 == 0:
        return "fizz"
    return str(x)
'''


def nodes(module: str = "capp.work", source: str = SOURCE):
    return assign_node_ids(source, module, f"/src/{module.replace('.', '/')}.py")


def provider(**kwargs) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider(**kwargs)
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp, exporter


def test_the_carrier_attributes_give_back_the_module_document() -> None:
    module = nodes()
    attrs = cpg_spans.carrier_attributes(module)
    assert attrs[cpg_spans.A_VERSION] == module.code_version and attrs[cpg_spans.A_MODULE] == "capp.work"
    doc = cpg_spans.document_from_attributes({k: str(v) for k, v in attrs.items()})  # as the collector reads them
    assert doc == json.loads(module_document(module))
    assert [row[0] for row in doc["nodes"]] == [n.node_id for n in module.nodes]


def test_one_root_span_per_module_version_through_the_provider() -> None:
    tp, exporter = provider()
    sink = cpg_spans.CpgSpanSink(tp, "1.0")
    tracer = tp.get_tracer("app")
    with tracer.start_as_current_span("request"):  # a module imported inside the program's span
        assert sink(nodes()) and sink(nodes())  # the second time: already sent, no second span
        assert sink(nodes(source=SOURCE + "\nX = 1\n"))  # a new code version
    carriers = [s for s in exporter.get_finished_spans() if s.name == cpg_spans.SPAN_NAME]
    assert len(carriers) == 2 and sink.sent == 2
    assert all(s.parent is None and s.instrumentation_scope.name == cpg_spans.SCOPE for s in carriers)
    request_span = next(s for s in exporter.get_finished_spans() if s.name == "request")
    assert all(s.context.trace_id != request_span.context.trace_id for s in carriers)


def test_an_unsampled_carrier_is_counted_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    tp, exporter = provider(sampler=ALWAYS_OFF)
    sink = cpg_spans.CpgSpanSink(tp)
    assert sink(nodes()) is False and sink(nodes("capp.other")) is False
    assert sink.unsampled == 2 and not exporter.get_finished_spans()
    assert sum("did not record the node rows" in r.getMessage() for r in caplog.records) == 1  # warned once


def test_a_ratio_sampler_that_leaves_the_root_out_keeps_the_carrier_as_a_sampled_child() -> None:
    tp, exporter = provider(sampler=ParentBased(TraceIdRatioBased(0.0)))
    sink = cpg_spans.CpgSpanSink(tp)
    assert sink(nodes()) and sink.sent == 1 and sink.unsampled == 0
    (carrier,) = exporter.get_finished_spans()
    assert carrier.name == cpg_spans.SPAN_NAME and carrier.parent is not None and carrier.parent.is_remote
    assert carrier.context.trace_id == carrier.parent.trace_id
    with tp.get_tracer("app").start_as_current_span("left out"):  # the program's own roots: still sampled out
        pass
    assert len(exporter.get_finished_spans()) == 1


def request_of(*groups) -> bytes:
    return encode_spans([s for group in groups for s in group]).SerializeToString()


def test_the_collector_takes_carriers_out_and_keeps_the_rest() -> None:
    tp, exporter = provider()
    cpg_spans.CpgSpanSink(tp)(nodes())
    with tp.get_tracer("execscope").start_as_current_span("capp.work.classify"):
        pass
    spans = exporter.get_finished_spans()
    found = take_carriers(request_of(spans))
    assert found.spans == 1 and not found.errors
    assert found.documents == [json.loads(module_document(nodes()))]
    rest = ExportTraceServiceRequest.FromString(found.rest)
    names = [(ss.scope.name, s.name) for rs in rest.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert names == [("execscope", "capp.work.classify")]


def test_a_request_of_carriers_only_leaves_nothing() -> None:
    tp, exporter = provider()
    sink = cpg_spans.CpgSpanSink(tp)
    sink(nodes("a"))
    sink(nodes("b"))
    found = take_carriers(request_of(exporter.get_finished_spans()))
    assert found.rest == b"" and found.spans == 2 and [d["module"] for d in found.documents] == ["a", "b"]


def test_a_document_cut_by_an_attribute_length_limit_is_an_error_not_a_crash() -> None:
    tp, exporter = provider(span_limits=SpanLimits(max_attribute_length=64))
    cpg_spans.CpgSpanSink(tp)(nodes())
    found = take_carriers(request_of(exporter.get_finished_spans()))
    assert found.spans == 1 and not found.documents and found.rest == b""
    assert len(found.errors) == 1 and "cut by an attribute length limit" in found.errors[0]


@pytest.mark.parametrize("change, reason", [
    ({cpg_spans.A_ENCODING: "gzip"}, "unknown CPG carrier encoding"),
    ({cpg_spans.A_SIZE: "7"}, "its span says 7"),
    ({cpg_spans.A_VERSION: "0" * 16}, "does not match"),
    ({cpg_spans.A_DOCUMENT: "not base64!"}, "unreadable"),
])
def test_bad_carriers_say_what_is_wrong(change: dict, reason: str) -> None:
    attrs = {k: str(v) for k, v in cpg_spans.carrier_attributes(nodes()).items()}
    with pytest.raises(cpg_spans.CarrierError, match=reason):
        cpg_spans.document_from_attributes({**attrs, **change})
