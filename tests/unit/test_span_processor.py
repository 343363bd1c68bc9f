"""ExecscopeSpanProcessor on an application's TracerProvider: its resource, its sampler, parentage
under its spans, exact counts across threads and asyncio tasks, and exact drop accounting."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)

from execscope.instrumentation.capture import fast_capture, runtime
from execscope.instrumentation.capture.span_processor import ExecscopeSpanProcessor, sampler_ratio
from execscope.instrumentation.export.otlp_encode import encode_request
from tests.conftest import load_rewritten

REC = '''
import asyncio

def rec(n):
    return 0 if n == 0 else 1 + rec(n - 1)

async def task(k, rounds):
    total = 0
    for _ in range(rounds):
        await asyncio.sleep(0)
        total += rec(k)
    return total
'''


GATE_PROBE = '''
from execscope.instrumentation.capture import runtime

def inner():
    return bool(runtime.GATE)

def outer():
    return inner()
'''


class Sink:
    def __init__(self) -> None:
        self.frames: list = []
        self.dropped = 0
        self.lock = threading.Lock()

    def __call__(self, frames: list, dropped: int) -> None:
        with self.lock:
            self.frames.extend(frames)
            self.dropped = dropped


@pytest.fixture
def install() -> Iterator:
    made: list[ExecscopeSpanProcessor] = []

    def make(provider: TracerProvider, interval_s: float = 60.0) -> tuple[ExecscopeSpanProcessor, Sink]:
        fast_capture.take_pending()
        sink = Sink()
        processor = ExecscopeSpanProcessor.install(provider, sink, encode_request, interval_s)
        made.append(processor)
        return processor, sink

    try:
        yield make
    finally:
        for processor in made:
            processor.shutdown()
        fast_capture.set_sampling(1.0)
        fast_capture.take_pending()


def test_registered_on_the_provider_with_its_resource(install) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    processor, sink = install(provider)
    assert processor in provider._active_span_processor._span_processors
    module = load_rewritten("def f(x):\n    return x + 1\n", name="sp_app", file="/src/sp_app.py")
    assert module.f(1) == 2
    assert processor.force_flush(5000) and len(sink.frames) == 1
    request = ExportTraceServiceRequest()
    request.ParseFromString(processor.encode(sink.frames))
    resource = {kv.key: kv.value.string_value for kv in request.resource_spans[0].resource.attributes}
    assert resource["service.name"] == "shop" and resource["telemetry.sdk.name"] == "execscope"
    assert request.resource_spans[0].scope_spans[0].spans[0].name == "sp_app.f"
    processor.shutdown()
    processor.shutdown()  # idempotent
    assert runtime.enter is not fast_capture.HOOKS["enter"]
    module.f(2)
    assert fast_capture.take_pending()[0] == []


@pytest.mark.parametrize("sampler", [ParentBased(TraceIdRatioBased(0.25)), TraceIdRatioBased(0.25)])
def test_the_providers_ratio_sampler_decides_new_traces(install, sampler) -> None:
    assert sampler_ratio(sampler) == 0.25
    processor, sink = install(TracerProvider(sampler=sampler))
    module = load_rewritten(REC, name="ratio_app", file="/src/ratio_app.py")
    before = fast_capture._state.sampled_out
    for _ in range(400):
        module.rec(2)
    processor.force_flush(5000)
    roots = [f for f in sink.frames if f.parent_id == 0]
    assert len(sink.frames) == 3 * len(roots)
    assert len(roots) + fast_capture._state.sampled_out - before == 400
    assert 50 <= len(roots) <= 150
    reference = TraceIdRatioBased(0.25)
    assert all(reference.should_sample(None, f.trace_id, "x").decision.is_sampled() for f in roots)


class EvenTraces(Sampler):
    def __init__(self) -> None:
        self.asked = 0

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None,
                      trace_state=None) -> SamplingResult:
        self.asked += 1
        return SamplingResult(Decision.RECORD_AND_SAMPLE if trace_id % 2 == 0 else Decision.DROP)

    def get_description(self) -> str:
        return "EvenTraces"


def test_a_custom_sampler_is_asked_once_per_new_trace(install) -> None:
    sampler = EvenTraces()
    assert sampler_ratio(sampler) is None
    processor, sink = install(TracerProvider(sampler=sampler))
    module = load_rewritten(REC, name="custom_app", file="/src/custom_app.py")
    before = fast_capture._state.sampled_out
    for _ in range(200):
        module.rec(1)
    processor.force_flush(5000)
    roots = [f for f in sink.frames if f.parent_id == 0]
    assert roots and all(f.trace_id % 2 == 0 for f in sink.frames)
    assert len(roots) + fast_capture._state.sampled_out - before == 200
    assert sampler.asked == 200  # once per new trace, never for the calls inside one


def test_calls_under_an_application_span_join_its_trace(install) -> None:
    provider = TracerProvider()
    processor, sink = install(provider)
    module = load_rewritten(REC, name="under_app", file="/src/under_app.py")
    with provider.get_tracer("app").start_as_current_span("request") as span:
        module.rec(2)
    processor.force_flush(5000)
    ctx = span.get_span_context()
    top = next(f for f in sink.frames if f.args == (2,))
    assert top.trace_id == ctx.trace_id and top.parent_id == ctx.span_id
    assert all(f.trace_id == ctx.trace_id for f in sink.frames) and len(sink.frames) == 3


def test_calls_under_an_unsampled_application_span_are_not_recorded(install) -> None:
    processor, sink = install(TracerProvider(sampler=ALWAYS_OFF))
    module = load_rewritten(REC + GATE_PROBE, name="unsampled_app", file="/src/unsampled_app.py")
    with TracerProvider(sampler=ALWAYS_OFF).get_tracer("app").start_as_current_span("request"):
        module.rec(2)
        if fast_capture.CORE == "native":  # below the first call, the rest runs as written
            assert module.outer() is False
    module.rec(2)  # a new trace: the provider's sampler (always off) leaves it out too
    processor.force_flush(5000)
    assert sink.frames == []


def _run_everywhere(module, threads: int = 4, roots: int = 50, depth: int = 9) -> int:
    """Recursive calls on ``threads`` threads and in three asyncio tasks; returns how many calls."""
    def work() -> None:
        for _ in range(roots):
            module.rec(depth)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()

    async def main() -> list[int]:
        return list(await asyncio.gather(*(module.task(depth, 5) for _ in range(3))))

    assert asyncio.run(main()) == [5 * depth] * 3
    for t in workers:
        t.join()
    return threads * roots * (depth + 1) + 3 * (1 + 5 * (depth + 1))


def test_every_call_across_threads_and_tasks_is_exported_once_with_its_parent(install) -> None:
    processor, sink = install(TracerProvider(), interval_s=0.01)
    module = load_rewritten(REC, name="everywhere_app", file="/src/everywhere_app.py")
    dropped_before = fast_capture._state.dropped
    n = _run_everywhere(module)
    assert processor.force_flush(10_000)
    frames = sink.frames
    assert len(frames) == n and len({f.span_id for f in frames}) == n
    assert sink.dropped == dropped_before
    by_id = {f.span_id: f for f in frames}
    for f in frames:
        if f.info[1].endswith(".task"):
            assert f.parent_id == 0
            continue
        depth = f.args[0]
        parent = by_id.get(f.parent_id)
        if parent is None:  # a thread's root call
            assert f.parent_id == 0 and depth == 9
        elif parent.info[1].endswith(".task"):  # called by its task, in the task's own trace
            assert depth == 9 and parent.trace_id == f.trace_id
        else:
            assert parent.args[0] == depth + 1 and parent.trace_id == f.trace_id


def test_above_the_buffer_kept_plus_dropped_is_every_call(install, monkeypatch) -> None:
    processor, sink = install(TracerProvider(), interval_s=60.0)  # nothing drained while it runs
    module = load_rewritten(REC, name="budget_app", file="/src/budget_app.py")
    monkeypatch.setattr(fast_capture._state, "max_pending", 500)
    dropped_before = fast_capture._state.dropped
    n = _run_everywhere(module)
    assert processor.force_flush(10_000)
    assert 500 <= len(sink.frames) <= 500 + 500 // 64  # the bound, and its reserve for roots and callers
    assert len(sink.frames) + sink.dropped - dropped_before == n


def test_adaptive_sampling_under_application_spans_counts_on_a_tally_and_restarts_per_trace(install) -> None:
    provider = TracerProvider()
    processor, sink = install(provider)
    tracer = provider.get_tracer("app")
    module = load_rewritten(REC, name="tally_app", file="/src/tally_app.py")
    fast_capture.set_adaptive(16)
    try:
        with tracer.start_as_current_span("test one") as one:
            for _ in range(3000):  # called by code that is not recorded: no recorded caller
                module.rec(0)
            processor.force_flush(5000)  # a tally is exported at every flush, and a new one opened
            for _ in range(1000):
                module.rec(0)
        with tracer.start_as_current_span("test two") as two:
            for _ in range(500):
                module.rec(1)
    finally:
        fast_capture.set_adaptive(0)
    assert processor.force_flush(5000)
    spans = {1: one.get_span_context(), 2: two.get_span_context()}
    for key, calls in ((1, 4000), (2, 1000)):
        ctx = spans[key]
        mine = [f for f in sink.frames if f.trace_id == ctx.trace_id]
        recorded = [f for f in mine if f.info[1] == "tally_app.rec"]
        tallies = [f for f in mine if f.info[1] == "execscope.unrecorded"]
        counted = sum(n for f in mine for n in (f.unrecorded or {}).values())
        assert len(recorded) + counted == calls  # every call: a span or a count
        assert 16 <= len(recorded) < calls // 4  # the budget restarted for the second trace
        assert tallies and all(t.parent_id == ctx.span_id and t.end >= t.start for t in tallies)
        top = [f for f in recorded if f.parent_id == ctx.span_id]
        assert all(f.parent_id == ctx.span_id or f.parent_id in {t.span_id for t in top} for f in recorded)
    assert len([f for f in sink.frames if f.info[1] == "execscope.unrecorded"
                and f.trace_id == spans[1].trace_id]) == 2  # closed by the flush, then by the next trace
    request = ExportTraceServiceRequest()
    request.ParseFromString(processor.encode(sink.frames))
    names = {s.name for s in request.resource_spans[0].scope_spans[0].spans}
    assert names == {"tally_app.rec", "execscope.unrecorded"}
