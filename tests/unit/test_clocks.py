"""Hybrid logical clocks (capture/clocks.py), the execscope propagator and the HLC attributes the
encoder writes: sends carry the clock, receives merge it, offsets appear only under a raised floor
and both encoders (native and Python) write the same spans."""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from execscope.instrumentation import propagator
from execscope.instrumentation.capture import clocks, fast_capture
from execscope.instrumentation.capture.runtime import SEQUENCE
from execscope.instrumentation.capture.span_processor import ExecscopeSpanProcessor
from execscope.instrumentation.export import otlp_encode
from execscope.instrumentation.export.otlp_encode import encode_frame, encode_request
from tests.conftest import load_rewritten

SOURCE = '''
def leaf(x):
    y = x + 1
    return y

def outer(n, hook):
    total = 0
    for i in range(n):
        total += leaf(i)
        hook(i)
    return total
'''
SECOND = 1_000_000_000


@pytest.fixture(autouse=True)
def fresh_clock() -> Iterator[None]:
    clocks.reset_for_tests()
    yield
    clocks.reset_for_tests()


def _ahead(seconds: float) -> clocks.Stamp:
    now = time.time_ns() + int(seconds * SECOND)
    return clocks.Stamp(now, 7, now - 5, "peerprocess01")


def test_stamps_round_trip_and_bad_values_are_refused() -> None:
    stamp = clocks.Stamp(1_700_000_000_123_456_789, 42, 1_700_000_000_000_000_000, "ab12cd34ef56ab78")
    assert clocks.Stamp.decode(stamp.encode()) == stamp
    for bad in ("", "x", "1.2.3", "zz.1.0.abc", "1.2.3.", "1.2.3.a-b", "5.1.9.abc", f"{1 << 64:x}.1.0.abc"):
        assert clocks.Stamp.decode(bad) is None, bad


def test_a_receive_from_a_clock_ahead_raises_the_floor_from_its_sequence_number_on(monkeypatch) -> None:
    monkeypatch.delenv(clocks.ENV_HLC, raising=False)
    before = clocks.send()
    assert before.l == before.pt and not clocks.has_steps()
    sender = _ahead(3)
    here = clocks.receive(sender, "test", trace_id=5, parent_span_id=6)
    assert here.l == sender.l + 1 and here.c > before.c and here.pt < sender.l
    assert clocks.offset(before.c, before.pt) == 0  # what came before keeps its clock
    later = clocks.send()
    assert later.l > sender.l and later.c > here.c  # a send after the receive follows it
    ts = time.time_ns()
    assert 2.9 * SECOND < clocks.offset(later.c, ts) <= 3 * SECOND
    assert clocks.needs_offsets(later.c, ts) and not clocks.needs_offsets(before.c, before.pt)
    (received,), dropped = clocks.take_receives()
    assert (received.sender, received.transport, received.trace_id, received.parent_span_id) == (sender, "test", 5, 6)
    assert dropped == 0 and clocks.take_receives() == ([], 0)
    published = clocks.Stamp.decode(os.environ[clocks.ENV_HLC])  # children started from now on merge it
    assert published is not None and published.l == sender.l + 1


def test_a_receive_from_a_clock_behind_changes_nothing_but_is_kept_for_the_skew() -> None:
    sender = _ahead(-3)
    here = clocks.receive(sender, "test")
    assert here.l == here.pt and not clocks.has_steps()
    assert clocks.send().l >= here.l
    assert len(clocks.take_receives()[0]) == 1


def test_the_floor_returns_to_the_physical_clock_once_it_passes() -> None:
    clocks.receive(_ahead(0.05), "test")
    seq = SEQUENCE.next()
    assert clocks.offset(seq, time.time_ns()) > 0
    time.sleep(0.06)
    assert clocks.offset(seq, time.time_ns()) == 0
    stamp = clocks.send()
    assert stamp.l == stamp.pt


def test_own_messages_and_spawned_children_are_not_kept_as_receives(monkeypatch) -> None:
    clocks.receive(clocks.send(), "loopback")
    monkeypatch.setenv(clocks.ENV_HLC, _ahead(2).encode())
    clocks.merge_from_environment()
    assert clocks.take_receives() == ([], 0)
    assert clocks.send().l > time.time_ns() + SECOND  # the parent's clock was merged


def _context(trace_id: int = 0x1234, span_id: int = 0x99) -> object:
    sc = SpanContext(trace_id, span_id, True, TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(sc))


def test_the_propagator_injects_the_clock_into_tracestate_and_merges_it_on_extract() -> None:
    prop = propagator.ExecscopePropagator()
    carrier: dict[str, str] = {}
    prop.inject(carrier, _context())
    assert carrier["traceparent"].startswith("00-00000000000000000000000000001234-0000000000000099-01")
    key, _, value = carrier["tracestate"].partition("=")
    stamp = clocks.Stamp.decode(value)
    assert key == "execscope" and stamp is not None and stamp.process == clocks.PROCESS_ID
    # a message from another process whose clock is ahead
    ahead = _ahead(2)
    extracted = prop.extract({"traceparent": carrier["traceparent"],
                              "tracestate": f"vendor=x,execscope={ahead.encode()}"})
    span_context = trace.get_current_span(extracted).get_span_context()
    assert span_context.trace_id == 0x1234 and span_context.trace_state.get("vendor") == "x"
    (received,), _ = clocks.take_receives()
    assert received.sender == ahead and received.trace_id == 0x1234 and received.parent_span_id == 0x99
    assert clocks.send().l > ahead.l
    # the entry is updated, never duplicated, and other vendors' entries stay
    again: dict[str, str] = {}
    prop.inject(again, extracted)
    assert again["tracestate"].count("execscope=") == 1 and "vendor=x" in again["tracestate"]


def test_garbage_in_the_entry_is_ignored() -> None:
    prop = propagator.ExecscopePropagator()
    carrier = {"traceparent": "00-00000000000000000000000000001234-0000000000000099-01",
               "tracestate": "execscope=not-a-clock"}
    assert trace.get_current_span(prop.extract(carrier)).get_span_context().trace_id == 0x1234
    assert clocks.take_receives() == ([], 0) and not clocks.has_steps()


def test_install_replaces_tracecontext_in_the_global_propagator(monkeypatch) -> None:
    composite = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    replaced = propagator._with_execscope(composite)
    assert [type(p) for p in replaced._propagators] == [propagator.ExecscopePropagator, W3CBaggagePropagator]
    assert propagator._with_execscope(replaced) is not None
    only_b3 = CompositePropagator([W3CBaggagePropagator()])
    assert propagator._with_execscope(only_b3) is only_b3  # the user chose no W3C trace context


def test_the_entry_point_names_the_propagator() -> None:
    from importlib.metadata import entry_points

    (ep,) = entry_points(group="opentelemetry_propagator", name="execscope")
    assert ep.load() is propagator.ExecscopePropagator


class _Handler(http.server.BaseHTTPRequestHandler):
    stamp = ""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("tracestate", f"execscope={self.stamp}")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def test_a_response_read_by_http_client_is_a_receive() -> None:
    import http.client

    propagator._patch_http_client(http.client)
    ahead = _ahead(1)
    _Handler.stamp = ahead.encode()
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"ok"
        conn.close()
    finally:
        thread.join(10)
        server.server_close()
    (received,), _ = clocks.take_receives()
    assert received.sender == ahead and received.transport == "http.response"


def test_the_response_propagator_writes_the_entry_after_the_one_it_wraps() -> None:
    class Wrapped:
        def inject(self, carrier, context=None, setter=None):
            carrier.append(("traceresponse", "x"))

    class ListSetter:
        def set(self, carrier, key, value):
            carrier.append((key, value))

    headers: list = []
    propagator.ExecscopeResponsePropagator(Wrapped()).inject(headers, setter=ListSetter())  # type: ignore[arg-type]
    assert headers[0] == ("traceresponse", "x") and headers[1][0] == "tracestate"
    assert clocks.Stamp.decode(headers[1][1].partition("=")[2]) is not None


def _record(under_floor: bool) -> list:
    frames: list = []
    fast_capture.take_pending()
    processor = ExecscopeSpanProcessor(lambda f, d: frames.extend(f), encode_request, interval_s=3600)
    try:
        mod = load_rewritten(SOURCE, "statements", name="hlcmod")

        def hook(i: int) -> None:
            if under_floor and i == 1:  # a receive in the middle of the outer call
                clocks.receive(_ahead(5), "test", record=False)

        mod.outer(3, hook)
        processor.force_flush()
    finally:
        processor.shutdown()
    return frames


def _parse(payload: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(payload)
    return request


def _attrs(kvs) -> dict:
    return {kv.key: kv.value.int_value or kv.value.string_value for kv in kvs}


def test_offsets_are_written_only_under_a_raised_floor_and_both_encoders_agree() -> None:
    plain = _parse(encode_request(_record(False), {"service.name": "s"}, "1"))
    for span in plain.resource_spans[0].scope_spans[0].spans:
        assert not any(kv.key.startswith("execscope.hlc") for kv in span.attributes)
        assert not any(kv.key.startswith("execscope.hlc") for e in span.events for kv in e.attributes)
    frames = _record(True)
    native = _parse(encode_request(frames, {"service.name": "s"}, "1"))
    python = [_parse(otlp_encode.w.request(b"", "execscope", "1", [encode_frame(f)])) for f in frames]
    spans = {s.name: s for s in native.resource_spans[0].scope_spans[0].spans}
    assert spans == {s.name: s for p in python for s in p.resource_spans[0].scope_spans[0].spans}
    outer = spans["hlcmod.outer"]
    attrs = _attrs(outer.attributes)
    assert "execscope.hlc.offset" not in attrs  # it started before the receive
    assert 4.9 * SECOND < attrs["execscope.hlc.end_offset"] <= 5 * SECOND
    offsets = [_attrs(e.attributes).get("execscope.hlc.offset", 0) for e in outer.events]
    assert offsets[0] == 0 and offsets[-1] > 4.9 * SECOND  # events after the receive carry it
    hlc = [e.time_unix_nano + off for e, off in zip(outer.events, offsets)]
    assert hlc == sorted(hlc)
    leaves = [s for s in native.resource_spans[0].scope_spans[0].spans if s.name == "hlcmod.leaf"]
    assert [("execscope.hlc.offset" in _attrs(s.attributes)) for s in leaves] == [False, False, True]
    hlc = [s.start_time_unix_nano + _attrs(s.attributes).get("execscope.hlc.offset", 0) for s in leaves]
    assert hlc == sorted(hlc)


def test_receives_travel_as_spans_of_their_own() -> None:
    clocks.receive(_ahead(-1), "kafka", trace_id=0xABC, parent_span_id=0xDEF)
    receives, _ = clocks.take_receives()
    request = _parse(encode_request([], {"service.name": "s"}, "1", receives=receives))
    (span,) = request.resource_spans[0].scope_spans[0].spans
    attrs = _attrs(span.attributes)
    assert span.name == otlp_encode.RECEIVE_SPAN and span.trace_id == (0xABC).to_bytes(16, "big")
    assert span.parent_span_id == (0xDEF).to_bytes(8, "big")
    assert attrs["execscope.clock.peer"] == "peerprocess01" and attrs["execscope.clock.transport"] == "kafka"
    assert attrs["execscope.clock.received_ns"] - attrs["execscope.clock.sent_ns"] > 0.9 * SECOND


def test_the_processor_hands_receives_to_the_encoder_once(monkeypatch) -> None:
    provider = TracerProvider()
    payloads: list[bytes] = []
    processor = ExecscopeSpanProcessor.install(provider, lambda f, d: None, encode_request, 3600)
    try:
        clocks.receive(_ahead(1), "test")
        payloads.append(processor.encode([]))
        payloads.append(processor.encode([]))
    finally:
        processor.shutdown()
    counts = [len(_parse(p).resource_spans[0].scope_spans[0].spans) for p in payloads]
    assert counts == [1, 0]
    resource = _attrs(_parse(payloads[0]).resource_spans[0].resource.attributes)
    assert resource["execscope.process.id"] == clocks.PROCESS_ID and resource["host.name"]


def test_receives_are_kept_only_once_an_exporter_takes_them() -> None:
    clocks._clock.keeping = False  # a process recording without the execscope span processor
    clocks.receive(_ahead(1), "test")
    assert clocks.take_receives() == ([], 0) and clocks.has_steps()  # merged all the same
    clocks.keep_receives()
    clocks.receive(_ahead(1), "test")
    assert len(clocks.take_receives()[0]) == 1


def test_the_sdk_core_writes_the_same_offsets(recorder) -> None:
    """Under ``opentelemetry-instrument`` calls are SDK spans: the same attributes, where they apply."""
    mod = load_rewritten(SOURCE, "statements", name="hlcsdk")

    def hook(i: int) -> None:
        if i == 1:
            clocks.receive(_ahead(5), "test", record=False)

    mod.outer(3, hook)
    spans = {s.name: s for s in recorder.get_finished_spans() if s.name.endswith("outer")}
    outer = next(iter(spans.values()))
    assert "execscope.hlc.offset" not in outer.attributes
    assert 4.9 * SECOND < outer.attributes["execscope.hlc.end_offset"] <= 5 * SECOND
    offsets = [e.attributes.get("execscope.hlc.offset", 0) for e in outer.events]
    assert offsets[0] == 0 and offsets[-1] > 4.9 * SECOND
    hlc = [e.timestamp + off for e, off in zip(outer.events, offsets)]
    assert hlc == sorted(hlc)
    leaves = [s for s in recorder.get_finished_spans() if s.name.endswith("leaf")]
    assert [("execscope.hlc.offset" in s.attributes) for s in leaves] == [False, False, True]


def test_process_ids_are_never_taken_for_secrets() -> None:
    from execscope.instrumentation.capture import values

    policy = values.policy()
    for _ in range(2000):
        pid = clocks._new_process_id()
        assert pid.isalpha() and clocks.Stamp.decode(clocks.Stamp(1, 1, 1, pid).encode()) is not None
        assert policy.redact_attributes({"execscope.process.id": pid})["execscope.process.id"] == pid
