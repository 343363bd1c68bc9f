"""SDK span batches held, not encoded, while the program traces its own allocations."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

from execscope.instrumentation.export import held_while_tracing
from execscope.instrumentation.export.held_while_tracing import HeldWhileTracing
from execscope.instrumentation.export.spool import Spool
from execscope.instrumentation.export.spool_exporter import SpoolSpanExporter


def spans(*names: str) -> list[ReadableSpan]:
    tracer = TracerProvider().get_tracer("t")
    out = []
    for name in names:
        span = tracer.start_span(name)
        span.end()
        out.append(span)
    return out  # type: ignore[return-value]


def stored_names(spool: Spool) -> list[list[str]]:
    return [names_in(f.read_bytes()) for f in spool.pending_batches()]


def names_in(payload: bytes) -> list[str]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest.FromString(payload)
    return [s.name for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


@pytest.fixture(autouse=True)
def recording_not_exiting(monkeypatch: pytest.MonkeyPatch) -> None:
    from execscope.instrumentation.capture import fast_capture

    monkeypatch.setattr(fast_capture, "_exiting", False)  # whatever an earlier test left
    monkeypatch.setattr(fast_capture, "_window", False)


@pytest.fixture
def tracing():
    assert not tracemalloc.is_tracing()
    tracemalloc.start()
    try:
        yield
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()


def test_batches_exported_while_the_program_traces_allocations_are_held_then_written_first(
        tmp_path: Path, tracing: None) -> None:
    spool = Spool(tmp_path / "spool")
    exporter = SpoolSpanExporter(spool)
    from opentelemetry.sdk.trace.export import SpanExportResult

    assert exporter.export(spans("a", "b")) == SpanExportResult.SUCCESS
    assert exporter.export(spans("c")) == SpanExportResult.SUCCESS
    assert spool.pending_batches() == [] and exporter.exported_spans == 0  # nothing encoded or written
    tracemalloc.stop()
    assert exporter.export(spans("d")) == SpanExportResult.SUCCESS
    assert stored_names(spool) == [["a", "b", "c", "d"]] and exporter.exported_spans == 4


def test_shutdown_writes_what_tracing_held_and_a_long_trace_holds_a_bounded_number(
        tmp_path: Path, tracing: None, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path / "spool")
    exporter = SpoolSpanExporter(spool)
    exporter.export(spans("a"))
    exporter.shutdown()  # still tracing (``-X tracemalloc`` for the whole run): written anyway
    exporter.shutdown()
    assert stored_names(spool) == [["a"]]

    monkeypatch.setattr(held_while_tracing, "MAX_HELD_SPANS", 3)
    held = HeldWhileTracing()
    assert held.take([1, 2]) is None and held.take([3]) is None and len(held) == 3
    assert held.take([4]) == [1, 2, 3, 4] and len(held) == 0  # beyond the bound: exported as they come


def test_the_held_batches_keep_the_programs_measurement_free_of_the_first_exports_import(tmp_path: Path) -> None:
    # The first export imports opentelemetry-proto: in a fresh interpreter, while the program traces,
    # that import is what more-itertools' bounded-memory test saw retained (0.3-1.3 MB).
    import subprocess
    import sys

    code = f"""
import tracemalloc
from opentelemetry.sdk.trace import TracerProvider
from execscope.instrumentation.export.spool import Spool
from execscope.instrumentation.export.spool_exporter import SpoolSpanExporter
tracer = TracerProvider().get_tracer("t")
span = tracer.start_span("s"); span.end()
exporter = SpoolSpanExporter(Spool({str(tmp_path / 'spool')!r}))
tracemalloc.start()
exporter.export([span])
retained = tracemalloc.get_traced_memory()[0]
tracemalloc.stop()
exporter.export([])
print(retained, len(exporter.spool.pending_batches()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    retained, files = map(int, out.stdout.split())
    assert files == 1 and retained < 16 * 1024, out.stdout


def test_the_kafka_exporter_holds_alike(tracing: None) -> None:
    from execscope.instrumentation.export.kafka_exporter import KafkaSpanExporter

    class Sink:  # the exporter's side of KafkaSink: what it was handed
        dropped_spans = 0

        def __init__(self) -> None:
            self.messages: list[list[str]] = []

        def submit(self, key: bytes, payload: bytes, spans: int) -> bool:
            self.messages.append(names_in(payload))
            return True

    sink = Sink()
    exporter = KafkaSpanExporter(sink)  # type: ignore[arg-type]
    batch = spans("a")
    exporter.export(batch)
    assert sink.messages == []
    tracemalloc.stop()
    exporter.export([])
    assert sink.messages == [["a"]]
    tracemalloc.start()
    exporter.export(spans("b"))
    exporter.shutdown()
    assert sink.messages == [["a"], ["b"]]


def test_tracemalloc_start_waits_for_an_export_under_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The batch processor's thread began an export just before the program started tracing: its
    # writing (the first one imports opentelemetry-proto) must end before the program's window opens.
    import threading
    import time

    from execscope.instrumentation.capture import fast_capture

    fast_capture._wrap_tracemalloc(tracemalloc)  # as on a recorded program's first import of it
    inside, written = threading.Event(), threading.Event()

    class SlowSpool(Spool):
        def write_batch(self, *args, **kwargs):
            inside.set()
            time.sleep(0.3)
            ok = super().write_batch(*args, **kwargs)
            written.set()
            return ok

    exporter = SpoolSpanExporter(SlowSpool(tmp_path / "spool"))
    batch = spans("a")
    thread = threading.Thread(target=exporter.export, args=(batch,))
    thread.start()
    assert inside.wait(5)
    tracemalloc.start()
    try:
        assert written.is_set()  # start() returned only once the export had written
        assert exporter.export(spans("b")) is not None and exporter.exported_spans == 1  # "b" held
    finally:
        tracemalloc.stop()
        thread.join(5)
    exporter.export([])
    assert exporter.exported_spans == 2


def test_once_the_process_exits_nothing_is_held(tmp_path: Path, tracing: None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from execscope.instrumentation.capture import fast_capture

    monkeypatch.setattr(fast_capture, "_exiting", True)  # stop_new_calls(), at the final flush
    spool = Spool(tmp_path / "spool")
    exporter = SpoolSpanExporter(spool)
    exporter.export(spans("a"))
    assert stored_names(spool) == [["a"]]
