"""What the runtime records: span shape, parentage, values, exceptions, events and their order."""

from __future__ import annotations

import threading

from opentelemetry import trace

from tests.conftest import load_rewritten

APP = '''
def helper(x, password="hunter2"):
    y = x * 2
    if y > 4:
        return y
    return -y

def fails(n):
    raise KeyError(n)

def top(values):
    out = [helper(v) for v in values]
    try:
        fails(len(out))
    except KeyError:
        out.append("handled")
    return out

def numbers(n):
    for i in range(n):
        yield i
'''


def _spans(recorder):
    return {s.context.span_id: s for s in recorder.get_finished_spans()}


def test_call_spans_carry_code_attributes_and_values(recorder) -> None:
    mod = load_rewritten(APP, "functions", name="app", file="/src/app.py")
    assert mod.top([1, 3]) == [-2, 6, "handled"]
    spans = recorder.get_finished_spans()
    names = [s.name for s in spans]
    assert names.count("app.helper") == 2 and names.count("app.top") == 1
    helper = next(s for s in spans if s.name == "app.helper" and s.attributes["execscope.arg.x"] == "3")
    attrs = helper.attributes
    assert attrs["code.function.name"] == "app.helper"
    assert attrs["code.file.path"] == "/src/app.py"
    assert attrs["code.line.number"] == 2
    assert attrs["execscope.node_id"] == "app:helper"
    assert len(attrs["execscope.code_version"]) == 16
    assert attrs["execscope.arg.password"] == "<redacted>"
    assert attrs["execscope.return.value"] == "6"


def test_parentage_and_exception_events(recorder) -> None:
    mod = load_rewritten(APP, "functions", name="app")
    mod.top([1])
    by_id = _spans(recorder)
    top = next(s for s in by_id.values() if s.name == "app.top")
    fails = next(s for s in by_id.values() if s.name == "app.fails")
    assert top.parent is None
    assert fails.parent.span_id == top.context.span_id
    assert fails.status.status_code.name == "ERROR"
    (event,) = [e for e in fails.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "KeyError"
    assert event.attributes["exception.message"] == "1"
    assert event.attributes["code.line.number"] == 9
    assert "line 9, in fails" in event.attributes["exception.stacktrace"]
    assert top.status.status_code.name == "UNSET"  # handled inside


def test_nested_under_the_current_otel_span(recorder) -> None:
    mod = load_rewritten(APP, "functions", name="app")
    tracer = trace.get_tracer("test")
    from execscope.instrumentation.capture import runtime

    outer_tracer = runtime.active_recorder().tracer
    with outer_tracer.start_as_current_span("http request") as request_span:
        mod.helper(1)
    del tracer
    helper = next(s for s in recorder.get_finished_spans() if s.name == "app.helper")
    assert helper.parent.span_id == request_span.get_span_context().span_id
    assert helper.context.trace_id == request_span.get_span_context().trace_id


def test_statement_events_are_ordered_and_name_nodes(recorder) -> None:
    mod = load_rewritten(APP, "statements", name="app")
    mod.helper(3)
    helper = next(s for s in recorder.get_finished_spans() if s.name == "app.helper")
    events = [(e.name, e.attributes.get("execscope.node_id"), e.attributes.get("execscope.var.value"))
              for e in helper.events]
    assert events == [
        ("execscope.line", "app:helper:assign#0", None),
        ("execscope.assign", "app:helper:target#0", "6"),
        ("execscope.line", "app:helper:if#0", None),
        ("execscope.branch", "app:helper:if#0.true", None),
        ("execscope.line", "app:helper:return#0", None),
    ]
    seqs = [helper.attributes["execscope.seq"], *[e.attributes["execscope.seq"] for e in helper.events],
            helper.attributes["execscope.seq.end"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_sequence_numbers_are_per_trace_and_increasing_across_spans(recorder) -> None:
    mod = load_rewritten(APP, "statements", name="app")
    mod.top([1, 5])
    top = next(s for s in recorder.get_finished_spans() if s.name == "app.top")
    spans = [s for s in recorder.get_finished_spans() if s.context.trace_id == top.context.trace_id]
    assert len(spans) == 4
    seqs = []
    for s in spans:
        seqs.append(s.attributes["execscope.seq"])
        seqs += [e.attributes["execscope.seq"] for e in s.events]
        seqs.append(s.attributes["execscope.seq.end"])
    assert len(set(seqs)) == len(seqs)  # unique within the trace
    top_span = next(s for s in spans if s.name == "app.top")
    assert min(seqs) == top_span.attributes["execscope.seq"]  # the root call comes first
    assert max(seqs) == top_span.attributes["execscope.seq.end"]


def test_sequence_keeps_increasing_across_chains_of_one_trace(recorder) -> None:
    """Two calls in a row under one OTel span (two chains of one trace) never reuse a number."""
    from execscope.instrumentation.capture import runtime

    mod = load_rewritten(APP, "statements", name="app")
    with runtime.active_recorder().tracer.start_as_current_span("request"):
        mod.helper(1)
        mod.helper(5)
    first, second = [s for s in recorder.get_finished_spans() if s.name == "app.helper"]
    last_of_first = max(e.attributes["execscope.seq"] for e in first.events)
    assert second.attributes["execscope.seq"] > first.attributes["execscope.seq.end"] > last_of_first


def test_generator_hands_context_back_to_consumer(recorder) -> None:
    mod = load_rewritten(APP + '''
def consume():
    total = 0
    for v in numbers(3):
        total += helper(v)
    return total
''', "functions", name="app")
    mod.consume()
    by_id = _spans(recorder)
    consume = next(s for s in by_id.values() if s.name == "app.consume")
    for helper in (s for s in by_id.values() if s.name == "app.helper"):
        # called by consume between yields, not by the suspended generator
        assert helper.parent.span_id == consume.context.span_id
    numbers = next(s for s in by_id.values() if s.name == "app.numbers")
    assert numbers.events == ()  # functions level: yields switch context, record nothing


def test_yields_are_recorded_from_branches_level(recorder) -> None:
    mod = load_rewritten(APP, "branches", name="app")
    assert list(mod.numbers(3)) == [0, 1, 2]
    numbers = next(s for s in recorder.get_finished_spans() if s.name == "app.numbers")
    yields = [(e.name, e.attributes["execscope.node_id"]) for e in numbers.events
              if e.name in ("execscope.yield", "execscope.resume")]
    assert yields == [("execscope.yield", "app:numbers:yield#0"), ("execscope.resume", "app:numbers:yield#0")] * 3


def test_threads_start_their_own_chains(recorder) -> None:
    mod = load_rewritten(APP, "functions", name="app")
    threads = [threading.Thread(target=mod.top, args=([i],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans = recorder.get_finished_spans()
    tops = [s for s in spans if s.name == "app.top"]
    assert len(tops) == 4 and len({s.context.trace_id for s in tops}) == 4
    by_id = _spans(recorder)
    for s in spans:
        if s.name == "app.helper":
            assert by_id[s.parent.span_id].name == "app.top"
            assert s.context.trace_id == by_id[s.parent.span_id].context.trace_id


def test_nothing_recorded_when_inactive() -> None:
    from execscope.instrumentation.capture import runtime

    mod = load_rewritten(APP, "statements", name="app")
    assert runtime.active_recorder() is None
    spans_before, errors_before = runtime.stats.spans, runtime.stats.errors
    assert mod.top([1, 2]) == [-2, -4, "handled"]
    assert (runtime.stats.spans, runtime.stats.errors) == (spans_before, errors_before)
    assert runtime.current_frame() is None


def test_sdk_core_callers_carry_the_time_spent_in_recorded_callees(recorder) -> None:
    module = load_rewritten('''
        import time
        def leaf():
            time.sleep(0.01)
        def top():
            leaf(); leaf()
    ''', "functions", name="sdk_childtime", file="/src/sdk_childtime.py")
    recorder.clear()
    module.top()
    spans = {s.name: s for s in recorder.get_finished_spans()}
    leaves = [s for s in recorder.get_finished_spans() if s.name == "sdk_childtime.leaf"]
    top = spans["sdk_childtime.top"]
    assert "execscope.child_ns" not in leaves[0].attributes
    assert top.attributes["execscope.child_ns"] == sum(s.end_time - s.start_time for s in leaves)


def test_a_caught_exception_names_the_innermost_statement_that_raised(recorder) -> None:
    # the line comes from the traceback; of the statements holding it the innermost (starting last);
    # several starting on that line: the column of the raising instruction decides
    mod = load_rewritten('''
def f(x, y, z):
    try:
        a = 1; b = 1 // x
        if 1 // y: c = 1 // (y - 1)
        d = (1 +
             1 // z)
    except ZeroDivisionError:
        return a
''', "branches", name="points")
    for x, y, z in ((0, 1, 1), (1, 0, 1), (1, 1, 1), (1, 2, 0)):
        mod.f(x, y, z)
    events = [e for s in recorder.get_finished_spans() for e in s.events if e.name == "exception"]
    assert [(e.attributes["execscope.node_id"], e.attributes["code.line.number"]) for e in events] == [
        ("points:f:assign#1", 4), ("points:f:if#0", 5), ("points:f:assign#2", 5), ("points:f:assign#3", 7)]
    assert all(e.attributes["exception.escaped"] is False for e in events)
