"""The native accelerator: loaded by the package's own build, byte-identical OTLP to the Python
encoder, the sampled-out gate, and the pure-Python fallback passing the same capture tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from execscope.instrumentation.capture import fast_capture
from execscope.instrumentation.export import otlp_wire as w
from execscope.instrumentation.export.otlp_encode import (
    _resource_attrs,
    count_events,
    encode_frame,
    encode_request,
    native_head,
    render,
)
from tests.conftest import load_plain, load_rewritten
from tests.unit.test_fast_capture import CAUGHT_APP, CAUGHT_LIB, fast  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]

VALUES_APP = '''
class Box:
    pass

def f(a, b=None, *rest, password="hunter2", **kw):
    if a == "raise":
        raise ValueError("no")
    return a

def g(x):
    try:
        return f(x)
    except ValueError:
        return None

def loop(n):
    for i in range(n):
        yield i

def driver():
    api_key = "not to be seen"
    box = [len(api_key), None]
    out = [f(v) for v in (0, -1, 2**63 - 1, 2**63, 2**300, 1.5, float("nan"), True, False, None, "",
                           "plain", "quo'te\\n\\u00e9", "x" * 300, b"by\\x00tes", 3j, [1, [2]], {"k": {1, 2}},
                           Box(), (1,))]
    out.append(f(1, 2, 3, 4, password="p", token="t", other=[5]))
    out.append(g("raise"))
    out.append(list(loop(3)))
    return out
'''


def test_the_native_core_is_what_the_build_installs() -> None:
    assert fast_capture.CORE == "native", fast_capture.CORE_REASON
    assert fast_capture.FastFrame is fast_capture.NATIVE.Frame


def test_statement_events_are_recorded_in_c_and_left_to_reference_counting(fast) -> None:  # noqa: F811
    import gc

    from execscope.instrumentation.capture import runtime

    for name in ("line", "branch", "arm", "assign", "value"):
        assert getattr(runtime, name) is getattr(fast_capture.NATIVE, name), name
    module = load_rewritten("def loop(n):\n    t = 0\n    for i in range(n):\n        t += i\n    return [t]\n",
                            "statements", name="loop_events")
    fast_capture.take_pending()
    assert module.loop(10) == [45]
    frames, _ = fast_capture.take_pending()
    (frame,) = [f for f in frames if f.info[1] == "loop_events.loop"]
    kinds = {e[0] for e in frame.events}
    assert {fast_capture.EV_LINE, fast_capture.EV_BRANCH, fast_capture.EV_ASSIGN} <= kinds
    assert not any(gc.is_tracked(e) for e in frame.events)  # no container inside: untracked at once


def test_native_encoding_is_byte_identical_to_the_python_encoder(fast) -> None:  # noqa: F811
    module = load_rewritten(VALUES_APP, "functions", name="values_app", file="/src/values_app.py")
    fast_capture.take_pending()
    module.driver()
    frames, _ = fast_capture.take_pending()
    assert len(frames) == 25 and any(f.error is not None for f in frames) and any(f.child_ns for f in frames)
    fast_capture.set_adaptive(1)  # and frames carrying counts of calls left out below them
    try:
        for _ in range(3):
            module.driver()
    finally:
        fast_capture.set_adaptive(0)
    counted, _ = fast_capture.take_pending()
    assert any(f.unrecorded for f in counted)
    frames += counted
    resource = _resource_attrs({"service.name": "svc"})
    native = w.request_encoded(resource, "execscope", "1", fast_capture.NATIVE.encode_spans(
        frames, encode_frame, native_head, render))
    python = w.request(resource, "execscope", "1", [encode_frame(f) for f in frames])
    assert native == python
    assert encode_request(frames, {"service.name": "svc"}, "1") == python  # the request written in C


def test_native_event_encoding_is_byte_identical_too(fast) -> None:  # noqa: F811
    module = load_rewritten(VALUES_APP, "statements", name="values_events", file="/src/values_events.py")
    fast_capture.take_pending()
    module.driver()
    frames, _ = fast_capture.take_pending()
    kinds = {ev[0] for f in frames for ev in (f.events or ())}
    assert {fast_capture.EV_LINE, fast_capture.EV_BRANCH, fast_capture.EV_ASSIGN} <= kinds
    resource = _resource_attrs({"service.name": "svc"})
    python = w.request(resource, "execscope", "1", [encode_frame(f) for f in frames])
    assert encode_request(frames, {"service.name": "svc"}, "1") == python
    assert b"not to be seen" not in python and b"<redacted>" in python
    request = ExportTraceServiceRequest()
    request.ParseFromString(python)
    spans = request.resource_spans[0].scope_spans[0].spans
    assert count_events(frames) == sum(len(span.events) for span in spans)


def test_frames_with_exceptions_caught_in_their_frame_encode_the_same_too(fast) -> None:  # noqa: F811
    # the native encoder hands a frame holding one (EV_EXCEPTION) to the Python encoder, whole
    lib = load_plain(CAUGHT_LIB, name="caught_lib")
    module = load_rewritten(CAUGHT_APP, "statements", name="caught_native", file="/src/caught_native.py")
    fast_capture.take_pending()
    module.main(lib)
    frames, _ = fast_capture.take_pending()
    # 13: a bare re-raise caught again in its frame is one (tests/unit/test_fast_capture.py CAUGHT)
    assert sum(ev[0] == fast_capture.EV_EXCEPTION for f in frames for ev in (f.events or ())) == 13
    resource = _resource_attrs({"service.name": "svc"})
    python = w.request(resource, "execscope", "1", [encode_frame(f) for f in frames])
    assert encode_request(frames, {"service.name": "svc"}, "1") == python
    request = ExportTraceServiceRequest()
    request.ParseFromString(python)
    assert count_events(frames) == sum(len(span.events) for span in request.resource_spans[0].scope_spans[0].spans)


def test_sampled_out_calls_see_a_false_gate_and_record_nothing(fast) -> None:  # noqa: F811
    module = load_rewritten('''
        from execscope.instrumentation.capture import runtime

        def inner():
            return bool(runtime.GATE)

        def root():
            return inner(), bool(runtime.GATE)
    ''', "functions", name="gate_app", file="/src/gate_app.py")
    fast_capture.take_pending()
    before = fast_capture._state.sampled_out
    fast_capture.set_sampling(0.0)
    try:
        assert module.root() == (False, False)  # inside a sampled-out trace: no hook runs
    finally:
        fast_capture.set_sampling(1.0)
    assert fast_capture.take_pending()[0] == [] and fast_capture._state.sampled_out == before + 1
    assert module.root() == (True, True)
    assert len(fast_capture.take_pending()[0]) == 2


def test_the_pure_python_core_passes_the_same_capture_tests() -> None:
    env = {**os.environ, "EXECSCOPE_NATIVE": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
         "tests/unit/test_fast_capture.py", "tests/unit/test_thread_context.py", "tests/unit/test_span_processor.py",
         "tests/unit/test_values.py", "tests/unit/test_otel_context.py", "tests/unit/test_redaction.py",
         "-k", "not the_native_core"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout
    probe = subprocess.run([sys.executable, "-c", "from execscope.instrumentation.capture import fast_capture as f; "
                            "print(f.CORE, '|', f.CORE_REASON)"], env=env, capture_output=True, text=True)
    assert probe.stdout.strip() == "python | turned off by EXECSCOPE_NATIVE"


RECURSION_SCRIPT = '''
import gc, sys
sys.path.insert(0, sys.argv[1])
from execscope.instrumentation.capture import fast_capture, runtime
from tests.conftest import load_rewritten

fast_capture.activate()
module = load_rewritten("""
def dive(n):
    return dive(n + 1)

def leaf(x):
    return [x]

def after(n):
    return [leaf(i) for i in range(n)]
""", "functions", name="deep")
for _ in range(20):
    try:
        module.dive(0)  # RecursionError: CPython refuses a hook call before it runs, leave included
    except RecursionError:
        pass
    gc.collect()
    module.after(50)    # allocations reuse whatever the frames of dive left behind
    frames, _ = fast_capture.take_pending()
    # the calls whose leave() was skipped ended with their callers: a later call is a root again
    after = [f for f in frames if f.info[0] == "deep:after"][-1]
    assert after.outer is None and after.parent_id == 0, (after.outer, after.parent_id)
    assert runtime.current_frame() is None
print("ok")
'''


@pytest.mark.parametrize("native", ["1", "0"])
def test_a_recursion_limit_inside_recorded_calls_leaves_no_freed_frame_current(native: str) -> None:
    # The thread's current-frame cache once kept a borrowed pointer to a frame whose leave() never
    # ran: the next call wrote through it into freed memory (seen on boltons' wrap_trace tests).
    # PYTHONMALLOC=debug turns such a write into a certain abort. Both cores: later calls are roots.
    proc = subprocess.run([sys.executable, "-c", RECURSION_SCRIPT, str(ROOT)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "PYTHONMALLOC": "debug", "EXECSCOPE_NATIVE": native})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


DEEP_RAISE = '''
def down(n, kind):
    if n == 0:
        raise kind("bottom")
    return down(n - 1, kind)

def other(n):
    if n == 0:
        return {}["missing"]
    return other(n - 1)
'''


def test_traceback_entries_in_c_are_pythons_and_share_the_tuples_of_the_innermost_entries(fast) -> None:  # noqa: F811
    # A parser raising as control flow records the traceback once per recorded frame it passes:
    # the C walk gives exactly runtime.exception_entries, and reuses the previous result's tuples
    # where the chains end alike (the whole tuple once 64 entries lie below the frame).
    import weakref

    from execscope.instrumentation.capture import runtime

    module = load_rewritten(DEEP_RAISE, "functions", name="deep_raise", file="/src/deep_raise.py")
    fast_capture.take_pending()
    with pytest.raises(ValueError):
        module.down(100, ValueError)
    frames, _ = fast_capture.take_pending()
    errors = [f.error for f in sorted(frames, key=lambda f: f.seq0, reverse=True)]  # innermost first
    assert len(errors) == 101 and all(e is not None for e in errors)
    entries = [e[2] for e in errors]
    assert [len(x) for x in entries] == [min(i + 1, runtime._STACK_LIMIT) for i in range(101)]
    assert entries[70][0] == ("/src/deep_raise.py", 5, "down") and entries[0][-1] == ("/src/deep_raise.py", 4, "down")
    assert len({id(x) for x in entries[63:]}) == 1  # 64 entries below: one tuple, made once
    assert all(entries[i][j + 1] is entries[i - 1][j] for i in range(1, 64) for j in range(i))  # shared tuples

    # the same values as the Python walk, frame by frame, for chains met in turn (memo misses)
    def chain(fn, *args):
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001
            return exc
        raise AssertionError("no exception")

    for exc in (chain(module.down, 80, KeyError), chain(module.other, 5), chain(module.down, 3, KeyError),
                chain(module.down, 70, ValueError), chain(module.other, 90)):
        tb = exc.__traceback__
        while tb is not None:
            expected = runtime.exception_entries(exc, tb.tb_frame)
            assert fast_capture.NATIVE.tb_entries(exc, tb.tb_frame, runtime._STACK_LIMIT) == expected
            tb = tb.tb_next
        assert fast_capture.NATIVE.tb_entries(exc, sys._getframe(), 64) == (sys._getframe().f_lineno, ())

    # nothing of the program's is kept: the frames an exception passed through die with it
    class Marker:
        pass

    def holder():
        kept = Marker()
        ref.append(weakref.ref(kept))
        return module.down(2, ValueError)

    ref: list = []
    exc = chain(holder)
    fast_capture.NATIVE.tb_entries(exc, exc.__traceback__.tb_next.tb_frame, 64)
    del exc
    import gc
    gc.collect()
    assert ref[0]() is None


def test_snapshots_kept_until_encoded_are_left_out_of_the_collectors_walks(fast) -> None:  # noqa: F811
    # Rendered texts, the argument tuples holding them and the traceback entries hold no reference
    # that could close a cycle: untracked at once, they neither age through the collector's
    # generations nor get walked by each collection while they wait for the encoder.
    import gc

    module = load_rewritten(VALUES_APP, "functions", name="values_gc", file="/src/values_gc.py")
    fast_capture.take_pending()
    module.driver()
    frames, _ = fast_capture.take_pending()
    rendered = [v for f in frames for v in (*f.args, f.ret) if type(v) is fast_capture.Rendered]
    assert len(rendered) >= 10 and not any(gc.is_tracked(v) for v in rendered)
    holding = [f.args for f in frames if any(type(v) is fast_capture.Rendered for v in f.args)]
    assert holding and not any(gc.is_tracked(a) for a in holding)
    (error,) = [f.error for f in frames if f.error is not None]
    assert error[2] and not gc.is_tracked(error[2]) and not any(gc.is_tracked(e) for e in error[2])


def test_calls_an_exception_left_are_encoded_in_c_byte_for_byte(fast) -> None:  # noqa: F811
    # A parser's suite ends a sixth of its recorded calls with an exception: each one went through
    # the Python encoder (whole), holding the GIL the program's thread needs.
    from execscope.instrumentation.capture.runtime import format_stack
    from execscope.instrumentation.export.otlp_encode import _is_secret

    module = load_rewritten(DEEP_RAISE, "functions", name="raise_encoded", file="/src/raise_encoded.py")
    fast_capture.take_pending()
    for n, kind in ((3, ValueError), (70, KeyError)):
        with pytest.raises(kind):
            module.down(n, kind)
    long = "é" * 1500  # status message cut at 1024 characters, not bytes
    with pytest.raises(ValueError):
        module.down(1, lambda _m: ValueError(long))
    frames, _ = fast_capture.take_pending()
    with pytest.raises(ValueError):  # a lone surrogate: UTF-8 cannot hold it, Python writes it as is
        module.down(0, lambda _m: ValueError("\ud800"))
    odd, _ = fast_capture.take_pending()
    frames += odd
    assert sum(f.error is not None for f in frames) == 4 + 71 + 2 + 1
    handed_back: list = []

    def fallback(frame):
        handed_back.append(frame)
        return encode_frame(frame)

    resource = _resource_attrs({"service.name": "svc"})
    scope = w.scope("execscope", "1")
    native = fast_capture.NATIVE.encode_spans(frames, fallback, native_head, render, resource, scope, _is_secret,
                                              format_stack)
    assert handed_back == odd  # only the frame whose text UTF-8 cannot hold
    assert native == w.request(resource, "execscope", "1", [encode_frame(f) for f in frames])
    request = ExportTraceServiceRequest()  # (protobuf refuses the surrogate the Python encoder writes)
    request.ParseFromString(fast_capture.NATIVE.encode_spans(frames[:-1], fallback, native_head, render, resource,
                                                             scope, _is_secret, format_stack))
    spans = request.resource_spans[0].scope_spans[0].spans
    assert sum(len(s.events) for s in spans) == count_events(frames[:-1]) == 77
    assert all(s.status.code == 2 for s in spans) and max(len(s.status.message) for s in spans) == 1024


OPAQUE_APP = '''
class Node:
    def parse(self, text):
        return len(text)

class Other:
    def parse(self, text):
        return 0
'''


def test_an_object_of_a_class_learnt_opaque_met_again_is_the_same_text(fast) -> None:  # noqa: F811
    # a parser node's methods are called with the same ``self`` again and again: its text is a
    # function of its class's name and its address, made once
    from execscope.instrumentation.capture import values

    module = load_rewritten(OPAQUE_APP, "functions", name="opaque_app", file="/src/opaque_app.py")
    # the texts are kept in a direct-mapped cache by address (1024 slots of 16 bytes' stride): objects
    # of distinct slots, so that none evicts another's (a collision made this test fail once)
    nodes: list = []
    held = []  # the objects passed over stay alive, so that the next one is not made at their address
    for make in [module.Node] * 3 + [module.Other]:
        node = make()
        while (id(node) >> 4) % 1024 in {(id(n) >> 4) % 1024 for n in nodes}:
            held.append(node)
            node = make()
        nodes.append(node)
    for node in nodes:
        fast_capture.snapshot(node)  # the Python renderer learns both classes opaque
    fast_capture.take_pending()
    for node in nodes * 2:
        node.parse("abc")
    frames, _ = fast_capture.take_pending()
    selves = [f.args[0] for f in sorted(frames, key=lambda f: f.seq0)]
    assert [str(s) for s in selves] == [values.python_repr(n) for n in nodes * 2]
    assert all(selves[i] is selves[i + 4] for i in range(4))  # the second round: the same objects
    assert len({id(s) for s in selves}) == 4
