"""The recorded call is OpenTelemetry's current span: the application's spans nest under it, the
context it injects names it, under threads, asyncio tasks and generators, on both capture cores."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from opentelemetry import context, propagate, trace
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation import _SPAN_KEY

from execscope.instrumentation.capture import fast_capture, otel_context, runtime
from tests.conftest import load_rewritten
from tests.unit.test_fast_capture import fast  # noqa: F401  (fixture)


@pytest.fixture
def app() -> Iterator[InMemorySpanExporter]:
    """The application's own SDK: a provider of its own, spans kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    exporter.tracer = provider.get_tracer("app")  # type: ignore[attr-defined]
    yield exporter
    provider.shutdown()


def load(source: str, name: str, tracer: trace.Tracer) -> object:
    module = load_rewritten(source, "functions", name=name, file=f"/src/{name}.py")
    module.tracer = tracer  # type: ignore[attr-defined]
    return module


def traceparent(trace_id: int, span_id: int, sampled: bool = True) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


def frames_by_name(frames: list) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in frames:
        out.setdefault(f.info[1], []).append(f)
    return out


HANDLER = '''
from opentelemetry import propagate

def handler(key):
    headers = {}
    propagate.inject(headers)  # directly in the recorded call
    with tracer.start_as_current_span("app-child"):
        inner = {}
        propagate.inject(inner)
        leaf(key)
    after = {}
    propagate.inject(after)
    return headers, inner, after

def leaf(key):
    with tracer.start_as_current_span("leaf-child"):
        return key
'''


def test_an_app_span_in_a_recorded_call_is_its_child_and_the_injected_context_names_it(
        fast, app) -> None:  # noqa: F811
    module = load(HANDLER, "ctx_handler", app.tracer)
    fast_capture.take_pending()
    with app.tracer.start_as_current_span("request") as request:
        headers, inner, after = module.handler(7)
    frames = frames_by_name(fast_capture.take_pending()[0])
    (handler,), (leaf,) = frames["ctx_handler.handler"], frames["ctx_handler.leaf"]
    spans = {s.name: s for s in app.get_finished_spans()}
    child, leaf_child = spans["app-child"], spans["leaf-child"]
    trace_id = request.get_span_context().trace_id
    # request (app) > handler (recorded) > app-child (app) > leaf (recorded) > leaf-child (app)
    assert handler.trace_id == trace_id and handler.parent_id == request.get_span_context().span_id
    assert child.context.trace_id == trace_id and child.parent.span_id == handler.span_id
    assert not child.parent.is_remote
    assert leaf.trace_id == trace_id and leaf.parent_id == child.context.span_id
    assert leaf_child.context.trace_id == trace_id and leaf_child.parent.span_id == leaf.span_id
    assert headers["traceparent"] == traceparent(trace_id, handler.span_id)
    assert inner["traceparent"] == traceparent(trace_id, child.context.span_id)
    assert after == headers  # the app span ended: the recorded call is current again
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_a_recorded_root_is_the_root_of_the_app_spans_it_makes(fast, app) -> None:  # noqa: F811
    module = load(HANDLER, "ctx_root", app.tracer)
    fast_capture.take_pending()
    headers, _inner, _after = module.handler(1)
    (handler,) = frames_by_name(fast_capture.take_pending()[0])["ctx_root.handler"]
    assert handler.parent_id == 0
    child = next(s for s in app.get_finished_spans() if s.name == "app-child")
    assert (child.context.trace_id, child.parent.span_id) == (handler.trace_id, handler.span_id)
    assert headers["traceparent"] == traceparent(handler.trace_id, handler.span_id)


def test_the_trace_state_of_the_trace_travels_on(fast, app) -> None:  # noqa: F811
    module = load(HANDLER, "ctx_state", app.tracer)
    incoming = {"traceparent": traceparent(0xABC, 0xDEF), "tracestate": "vendor=x,other=y"}
    token = context.attach(propagate.extract(incoming))
    try:
        headers, inner, _after = module.handler(1)
    finally:
        context.detach(token)
    (handler,) = frames_by_name(fast_capture.take_pending()[0])["ctx_state.handler"]
    assert (handler.trace_id, handler.parent_id) == (0xABC, 0xDEF)
    assert headers == {"traceparent": traceparent(0xABC, handler.span_id), "tracestate": "vendor=x,other=y"}
    assert inner["tracestate"] == "vendor=x,other=y"


def test_the_stored_context_never_holds_the_call_and_tokens_restore_it(fast, app) -> None:  # noqa: F811
    module = load('''
        from opentelemetry import context, trace

        def tokens():
            shown = trace.get_current_span()
            token = context.attach(context.set_value("k", "v"))  # what instrumentations do
            try:
                stored = context._RUNTIME_CONTEXT.stored()
                seen = (stored.get(SPAN_KEY), trace.get_current_span().get_span_context(), context.get_value("k"))
            finally:
                context.detach(token)
            with tracer.start_as_current_span("a") as a:
                with trace.use_span(shown):  # the call's own span made current again inside "a"
                    again = trace.get_current_span().get_span_context()
                in_a = trace.get_current_span()
            return shown.get_span_context(), seen, again, in_a is a, context.get_value("k")
    ''', "ctx_tokens", app.tracer)
    module.SPAN_KEY = _SPAN_KEY  # type: ignore[attr-defined]
    shown, (stored_span, seen, value), again, in_a, after = module.tokens()  # type: ignore[attr-defined]
    (call,) = frames_by_name(fast_capture.take_pending()[0])["ctx_tokens.tokens"]
    assert (shown.trace_id, shown.span_id, shown.trace_flags.sampled) == (call.trace_id, call.span_id, True)
    assert stored_span is None and seen == shown and value == "v"
    assert again == shown and in_a and after is None
    assert otel_context._owner.get() is None and context.get_current() is context._RUNTIME_CONTEXT.stored()


def test_outside_recorded_calls_the_context_is_the_stored_one(fast) -> None:  # noqa: F811
    assert isinstance(context._RUNTIME_CONTEXT, otel_context.ExecscopeRuntimeContext)
    token = context.attach(context.set_value("k", 1))
    try:
        assert context.get_current() is context._RUNTIME_CONTEXT.stored()
    finally:
        context.detach(token)


THREADS = '''
import threading
from concurrent.futures import ThreadPoolExecutor

def spawn():  # job: not recorded, set by the test
    t = threading.Thread(target=job, args=(1,))
    t.start(); t.join()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(job, 2).result()
    with tracer.start_as_current_span("inner"):
        t = threading.Thread(target=job, args=(3,))
        t.start(); t.join()
'''


def test_threads_started_in_a_recorded_call_make_its_children(fast, app) -> None:  # noqa: F811
    module = load(THREADS, "ctx_threads", app.tracer)
    module.job = lambda k: _job(app.tracer, k)  # type: ignore[attr-defined]
    fast_capture.take_pending()
    module.spawn()  # type: ignore[attr-defined]
    (spawn,) = frames_by_name(fast_capture.take_pending()[0])["ctx_threads.spawn"]
    spans = {s.name: s for s in app.get_finished_spans()}
    for name in ("job1", "job2", "inner"):
        assert (spans[name].context.trace_id, spans[name].parent.span_id) == (spawn.trace_id, spawn.span_id), name
    assert spans["job3"].parent.span_id == spans["inner"].context.span_id  # the app span was innermost


def _job(tracer: trace.Tracer, k: int) -> None:
    with tracer.start_as_current_span(f"job{k}"):
        pass


ASYNC = '''
import asyncio

async def task(k):
    await asyncio.sleep(0)
    with tracer.start_as_current_span(f"t{k}"):
        await asyncio.sleep(0)
        leaf(k)
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    with tracer.start_as_current_span(f"u{k}"):
        pass
    return k

def leaf(k):
    return k

async def main():
    return await asyncio.gather(task(1), task(2), task(3))

def run():
    return asyncio.run(main())
'''


def test_asyncio_tasks_each_show_their_own_recorded_call(fast, app) -> None:  # noqa: F811
    module = load(ASYNC, "ctx_async", app.tracer)
    fast_capture.take_pending()
    assert module.run() == [1, 2, 3]  # type: ignore[attr-defined]
    frames = frames_by_name(fast_capture.take_pending()[0])
    tasks = {f.args[0]: f for f in frames["ctx_async.task"]}
    leaves = {f.args[0]: f for f in frames["ctx_async.leaf"]}
    spans = {s.name: s for s in app.get_finished_spans()}
    for k, task in tasks.items():  # however the three tasks interleave
        for name in (f"t{k}", f"u{k}"):
            assert (spans[name].context.trace_id, spans[name].parent.span_id) == (task.trace_id, task.span_id)
        assert leaves[k].parent_id == spans[f"t{k}"].context.span_id


GENERATORS = '''
def gen(n):
    for i in range(n):
        with tracer.start_as_current_span(f"g{i}"):
            pass
        yield i

def consume():
    out = []
    for i in gen(2):
        with tracer.start_as_current_span(f"c{i}"):
            out.append(i)
    return out

def started_under_a_span():
    with tracer.start_as_current_span("A"):
        g = gen(3)
        next(g)  # the generator's call starts under A ...
    return g

def resume(g):
    with tracer.start_as_current_span("B"):
        return next(g)  # ... and is resumed under B, in another recorded call
'''


def test_generators_show_their_call_while_they_run_and_hand_back_at_each_yield(fast, app) -> None:  # noqa: F811
    module = load(GENERATORS, "ctx_gen", app.tracer)
    fast_capture.take_pending()
    assert module.consume() == [0, 1]  # type: ignore[attr-defined]
    frames = frames_by_name(fast_capture.take_pending()[0])
    (gen,), (consume,) = frames["ctx_gen.gen"], frames["ctx_gen.consume"]
    spans = {s.name: s for s in app.get_finished_spans()}
    assert [spans[f"g{i}"].parent.span_id for i in range(2)] == [gen.span_id] * 2
    assert [spans[f"c{i}"].parent.span_id for i in range(2)] == [consume.span_id] * 2
    app.clear()

    g = module.started_under_a_span()  # type: ignore[attr-defined]
    assert module.resume(g) == 1  # type: ignore[attr-defined]
    g.close()
    frames = frames_by_name(fast_capture.take_pending()[0])
    (gen,) = frames["ctx_gen.gen"]
    spans = {s.name: s for s in app.get_finished_spans()}
    assert gen.parent_id == spans["A"].context.span_id
    assert spans["g1"].parent.span_id == gen.span_id  # in the generator's body: its call, not B


def test_a_sampled_out_trace_stays_sampled_out_downstream(fast, app) -> None:  # noqa: F811
    module = load(HANDLER, "ctx_sampled_out", app.tracer)
    fast_capture.take_pending()
    fast_capture.set_sampling(0.0)
    try:
        headers, inner, _after = module.handler(1)
    finally:
        fast_capture.set_sampling(1.0)
    assert fast_capture.take_pending()[0] == []
    assert app.get_finished_spans() == ()  # the app's ParentBased sampler follows the call
    assert headers["traceparent"].endswith("-00") and inner["traceparent"].endswith("-00")
    assert headers["traceparent"].split("-")[1] == inner["traceparent"].split("-")[1]


def test_a_call_left_out_by_adaptive_sampling_shows_its_recorded_caller(fast, app) -> None:  # noqa: F811
    module = load('''
        def root():
            return [leaf(i) for i in range(2)]

        def leaf(i):
            with tracer.start_as_current_span(f"in{i}") as s:
                return s.parent.span_id
    ''', "ctx_adaptive", app.tracer)
    fast_capture.take_pending()
    fast_capture.set_adaptive(1)
    try:
        parents = module.root()  # type: ignore[attr-defined]
    finally:
        fast_capture.set_adaptive(0)
    frames = frames_by_name(fast_capture.take_pending()[0])
    (root,), (leaf,) = frames["ctx_adaptive.root"], frames["ctx_adaptive.leaf"]  # the second leaf: counted
    assert parents == [leaf.span_id, root.span_id]


def test_the_sdk_core_shows_the_calls_own_span(recorder, app) -> None:
    module = load(HANDLER, "ctx_sdk", app.tracer)
    headers, _inner, _after = module.handler(1)  # type: ignore[attr-defined]
    spans = {s.name: s for s in recorder.get_finished_spans() + app.get_finished_spans()}
    handler, child, leaf = spans["ctx_sdk.handler"], spans["app-child"], spans["ctx_sdk.leaf"]
    assert child.parent.span_id == handler.context.span_id and child.context.trace_id == handler.context.trace_id
    assert leaf.parent.span_id == child.context.span_id
    assert spans["leaf-child"].parent.span_id == leaf.context.span_id
    assert headers["traceparent"] == traceparent(handler.context.trace_id, handler.context.span_id)


def test_install_keeps_the_variable_and_the_tokens_attached_before() -> None:
    saved = context._RUNTIME_CONTEXT
    stock = ContextVarsRuntimeContext()
    context._RUNTIME_CONTEXT = stock
    try:
        token = context.attach(context.set_value("k", 1))
        assert otel_context.install() and otel_context.install()
        rc = context._RUNTIME_CONTEXT
        assert type(rc) is otel_context.ExecscopeRuntimeContext and rc._current_context is stock._current_context
        assert context.get_value("k") == 1
        context.detach(token)
        assert context.get_value("k") is None
    finally:
        context._RUNTIME_CONTEXT = saved


def test_a_runtime_context_of_another_kind_is_left_alone() -> None:
    class Other(ContextVarsRuntimeContext):
        pass

    saved = context._RUNTIME_CONTEXT
    context._RUNTIME_CONTEXT = other = Other()
    try:
        assert not otel_context.install() and context._RUNTIME_CONTEXT is other
    finally:
        context._RUNTIME_CONTEXT = saved


def test_a_thread_with_no_recorded_call_sees_a_context_handed_to_it(fast, app) -> None:  # noqa: F811
    module = load('''
        from opentelemetry import context

        def capture():
            return context.get_current()
    ''', "ctx_hand", app.tracer)
    fast_capture.take_pending()
    captured = module.capture()  # type: ignore[attr-defined]
    (call,) = frames_by_name(fast_capture.take_pending()[0])["ctx_hand.capture"]
    seen = []

    def elsewhere() -> None:  # as a library handing contexts to its own workers would
        runtime.set_current_frame(None)
        token = context.attach(captured)
        with app.tracer.start_as_current_span("worker") as s:
            seen.append(s.parent)
        context.detach(token)

    t = threading.Thread(target=elsewhere)
    t.start()
    t.join()
    assert (seen[0].trace_id, seen[0].span_id) == (call.trace_id, call.span_id)


SERVER = '''
from opentelemetry.instrumentation import utils
from opentelemetry import context
from opentelemetry.propagators.textmap import default_getter

def serve(carrier):  # what a WSGI/ASGI/Flask/Django instrumentation does per request
    span, token = utils._start_internal_or_server_span(tracer, "GET /", None, carrier, default_getter)
    span.end()
    if token is not None:
        context.detach(token)
    return span
'''


def test_a_server_serving_inside_recorded_calls_continues_its_clients_trace(fast, app) -> None:  # noqa: F811
    from opentelemetry.instrumentation import utils

    module = load(SERVER, "ctx_server", app.tracer)
    carrier = {"traceparent": traceparent(0xABC, 0xDEF)}
    fast_capture.take_pending()
    served = module.serve(carrier)  # type: ignore[attr-defined]
    assert served.kind == trace.SpanKind.SERVER and served.context.trace_id == 0xABC
    assert served.parent.span_id == 0xDEF and served.parent.is_remote
    with app.tracer.start_as_current_span("outer"):  # under a span of its own: nested, as OTel does
        nested = module.serve(carrier)  # type: ignore[attr-defined]
    frames = frames_by_name(fast_capture.take_pending()[0])["ctx_server.serve"]
    assert nested.kind == trace.SpanKind.INTERNAL and nested.parent.span_id == frames[1].span_id
    assert hasattr(utils._start_internal_or_server_span, "__wrapped__")
    assert trace.get_current_span() is trace.INVALID_SPAN
