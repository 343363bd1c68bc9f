"""The runtime that rewritten modules call: where execscope spans are born.

Rewritten code reaches this module as ``_execscope_rt``, a name this module puts in ``builtins`` when
it is imported (so a rewritten module runs no import statement of ours: a program watching what its
modules import, as click's own tests do, sees what it sees without execscope; see
:data:`BUILTIN_NAME`), and calls, per instrumented function::

    _execscope_frame = _execscope_rt.enter(INFO, (arg values...))
    try: <body>                    # returns become ``return _execscope_rt.ret(frame, value)``
    except BaseException as e: _execscope_rt.fail(frame, e); raise
    finally: _execscope_rt.leave(frame)

or, for a plain function whose body needs its frame only to return (the "no-variable form": CPython
clears every local of a frame at each call, so a variable of ours costs even calls not recorded)::

    _execscope_rt.enter_current(INFO, (arg values...))
    try: <body>                    # returns become ``return _execscope_rt.ret_current(value)``
    except BaseException: _execscope_rt.fail_current(); raise
    finally: _execscope_rt.leave_current()

where the thread keeps the frame (a per-thread stack) and the ``*_current`` hooks take the entry
their own Python frame entered.

and, depending on the level, ``branch`` / ``arm`` (which arm ran), ``caught`` (an except handler's
arm, after the exception it caught when that was raised in the handler's own frame), ``line``
(statement executed), ``assign`` / ``value`` (value written), ``suspend`` / ``resumed`` (generator
yield points).

Contract: every function here is called on the program's own thread, never raises (failures are
counted in :data:`stats`), never blocks, and does nothing but return when no recorder is active.
A call becomes an OpenTelemetry span from the active recorder's tracer, nested under the caller's
execscope span, or under whatever OTel span is current when the caller is not instrumented; while it
runs, OpenTelemetry sees it as the current span (:mod:`.otel_context`), under either core. Finer
events become span events carrying ``execscope.node_id`` and ``execscope.seq`` (see SEQUENCE).

Causality: the current frame lives in a :class:`contextvars.ContextVar`, so every asyncio task has
its own chain; generators hand the context back to their consumer at each ``yield``.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
import traceback
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.trace.propagation import _SPAN_KEY

from execscope.instrumentation.capture import clocks
from execscope.instrumentation.capture import values as _values_module
from execscope.instrumentation.capture.otel_context import stored_context as _stored_context
from execscope.instrumentation.capture.values import (
    DEFAULT_LIMITS,
    EXC_GROUP,
    EXC_GROUP_EXCEPTIONS,
    EXC_TRACEBACK,
    EXIT_CODE,
    ReprLimits,
    capture,
    exception_message,
    redact_text,
)

FUNCTIONS, BRANCHES, STATEMENTS = 1, 2, 3
LEVELS = {"functions": FUNCTIONS, "branches": BRANCHES, "statements": STATEMENTS}

# INFO tuple layout, built by the rewriter as a constant: keep in sync with rewriter._function_info.
# An ``async def``'s tuple has one more item, True (I_ASYNC; read by the native core).
I_NODE, I_NAME, I_FILE, I_LINE, I_VERSION, I_PARAMS, I_ASYNC = range(7)

_STACK_LIMIT = 64


@dataclass
class RuntimeStats:
    """Counters a reader can use to see gaps; exported as resource-free process figures."""

    spans: int = 0
    events: int = 0
    errors: int = 0
    last_error: str = ""

    def failed(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:500]


stats = RuntimeStats()


class Recorder:
    """What the runtime records into: a tracer plus capture settings. Immutable once active."""

    def __init__(self, tracer_provider: Any, *, limits: ReprLimits = DEFAULT_LIMITS,
                 scope_version: str = "") -> None:
        self.tracer = tracer_provider.get_tracer("execscope", scope_version)
        self.limits = limits


HLC_OFFSET = "execscope.hlc.offset"
_CLOCK_STEPS = clocks.steps()[0]  # the live list: non-empty once a receive raised the clock's floor


class _SeqCounter:
    __slots__ = ("next",)

    def __init__(self) -> None:
        self.next = itertools.count().__next__  # atomic under the GIL


# One sequence per process, shared by every trace: strictly increasing within each trace (and
# across them), so events and calls of a trace order by (TraceId, Seq) even when several chains of
# the trace run one after another under the same OTel span. Across processes, order by timestamp.
SEQUENCE: Any
try:  # the native accelerator's counter when built (one C increment); the same contract
    from execscope.instrumentation.capture._capture import Sequence as _NativeSequence

    SEQUENCE = _NativeSequence()
except ImportError:
    SEQUENCE = _SeqCounter()


class Frame:
    """One running instrumented call (or module body). Owned by the code that entered it."""

    __slots__ = ("span", "outer", "anchor", "seq", "info", "recording", "foreign", "child_ns")

    def __init__(self, span: Span, outer: Frame | None, anchor: object, seq: _SeqCounter,
                 info: tuple, recording: bool) -> None:
        self.span = span
        self.outer = outer      # the frame current before this one (restored on leave / yield)
        self.anchor = anchor    # the OTel span that was current when this chain started (None: none)
        self.seq = seq
        self.info = info
        self.recording = recording
        self.foreign = False    # inherited through fork: the parent process owns (and ends) the span
        self.child_ns = 0       # time spent in recorded callees (self time = duration - child_ns)


class _NoFrame:
    """Stands in for a frame when nothing is recorded; every hook ignores it."""

    __slots__ = ()
    recording = False


NO_FRAME: Any = _NoFrame()
_current: ContextVar[Frame | None] = ContextVar("execscope_frame", default=None)
_recorder: Recorder | None = None
_on_root_end: Any = None  # called after a chain's outermost span ends (see set_root_end_hook)
GATE: Any
"""Rewritten code records a call only when this is true (one truth test, bound once per module as
``_execscope_gate``); otherwise it runs the function as written, or with every hook handed
NO_FRAME. With the native accelerator it is one permanent C object whose truth follows the core:
false while nothing records, true under the SDK core, and under the fast core false while the
current chain belongs to a trace that head sampling left out. Without it, always True."""
try:
    from execscope.instrumentation.capture._capture import GATE  # type: ignore[no-redef]
    from execscope.instrumentation.capture._capture import set_gate as _set_gate
except ImportError:
    GATE = True

    def _set_gate(mode: int) -> None:
        return None

GATE_OFF, GATE_ON, GATE_SAMPLED = 0, 1, 2  # modes of the native GATE


def set_root_end_hook(hook: Any) -> None:
    """Call ``hook()`` whenever the outermost recorded call of a chain finishes (``None`` to stop).

    Used in forked children, which usually end with ``os._exit`` (multiprocessing) or are
    terminated by their parent: flushing at each finished root keeps what they recorded."""
    global _on_root_end
    _on_root_end = hook


def activate(recorder: Recorder, level: int) -> None:
    """Record through the SDK core into ``recorder`` (one OTel SDK span per call). Modules rewritten
    at a higher level than ``level`` still emit their finer events (the rewrite decides)."""
    global _recorder, _read_current, _write_current, _sync_current
    globals().update(_SDK_HOOKS)
    _set_gate(GATE_ON)
    _read_current, _write_current, _sync_current = _current.get, _current.set, _no_sync
    _recorder = recorder
    _follow_threads(True)


def use_core(hooks: dict[str, Any], gate_mode: int = GATE_ON, read_current: Any = None,
             write_current: Any = None, sync_current: Any = None) -> None:
    """Record through another capture core (e.g. :mod:`.fast_capture`): its functions replace the
    hooks that rewritten code calls through this module (``_execscope_rt.enter`` etc.),
    ``gate_mode`` sets :data:`GATE`, and ``read_current``/``write_current`` are what
    :func:`current_frame`/:func:`set_current_frame` use."""
    global _read_current, _write_current, _sync_current
    missing = set(HOOK_NAMES) - set(hooks)
    if missing:
        raise ValueError(f"capture core lacks {sorted(missing)}")
    _read_current = read_current or _current.get
    _write_current = write_current or _current.set
    _sync_current = sync_current or _no_sync
    globals().update({name: hooks[name] for name in HOOK_NAMES})
    _set_gate(gate_mode)
    _follow_threads(True)


def deactivate() -> None:
    """Stop recording; running frames end normally, new calls are not recorded."""
    global _recorder
    _recorder = None
    globals().update(_SDK_HOOKS)
    _set_gate(GATE_OFF)
    _follow_threads(False)


def _follow_threads(on: bool) -> None:
    """Threads and pool tasks started inside a recorded call record as its children (see
    :mod:`.thread_context`); while recording, OpenTelemetry sees the current recorded call as the
    current span (see :mod:`.otel_context`; it stays installed: contexts attached meanwhile carry
    its tokens)."""
    from execscope.instrumentation.capture import otel_context, thread_context

    (thread_context.install if on else thread_context.uninstall)()
    if on:
        otel_context.install()


def active_recorder() -> Recorder | None:
    return _recorder


def _start(info: tuple, attributes: dict[str, Any]) -> Frame | Any:
    rec = _recorder
    if rec is None:
        return NO_FRAME
    top = _current.get()
    stored = _stored_context()  # as attached: not the recorded call otel_context shows
    current = stored.get(_SPAN_KEY)
    if top is not None and top.anchor is current:
        parent: Frame | None = top
        span = rec.tracer.start_span(info[I_NAME], context=trace.set_span_in_context(top.span, stored),
                                     attributes=attributes)
        anchor = top.anchor
    else:
        parent = top
        span = rec.tracer.start_span(info[I_NAME], context=stored, attributes=attributes)
        anchor = current
    recording = span.is_recording()
    seq = SEQUENCE
    frame = Frame(span, parent, anchor, seq, info, recording)
    if recording:
        s0 = seq.next()
        span.set_attribute("execscope.seq", s0)
        if _CLOCK_STEPS:  # a receive holds this process's hybrid logical clock ahead (clocks.py)
            offset = clocks.offset(s0, getattr(span, "start_time", None) or time.time_ns())
            if offset:
                span.set_attribute(HLC_OFFSET, offset)
    _current.set(frame)
    stats.spans += 1
    return frame


def enter(info: tuple, args: tuple) -> Frame | Any:
    """A call of the function described by ``info`` starts, with parameter values ``args``."""
    if _recorder is None:
        return NO_FRAME
    try:
        attributes: dict[str, Any] = {
            "code.function.name": info[I_NAME], "code.file.path": info[I_FILE],
            "code.line.number": info[I_LINE], "execscope.node_id": info[I_NODE],
            "execscope.code_version": info[I_VERSION], "execscope.kind": "call",
        }
        limits = _recorder.limits
        for name, value in zip(info[I_PARAMS], args):
            attributes["execscope.arg." + name] = capture(name, value, limits)
        return _start(info, attributes)
    except Exception as exc:
        stats.failed(exc)
        return NO_FRAME


_sdk_enter = enter  # this core's, whichever core the module's ``enter`` is bound to


def enter_module(info: tuple) -> Frame | Any:
    """A rewritten module body starts executing (levels ``branches`` and ``statements``)."""
    if _recorder is None:
        return NO_FRAME
    try:
        return _start(info, {
            "code.function.name": info[I_NAME], "code.file.path": info[I_FILE],
            "code.line.number": info[I_LINE], "execscope.node_id": info[I_NODE],
            "execscope.code_version": info[I_VERSION], "execscope.kind": "module",
        })
    except Exception as exc:
        stats.failed(exc)
        return NO_FRAME


def ret(frame: Frame | Any, value: Any) -> Any:
    """``return value`` in an instrumented function: records the value and hands it back."""
    if frame.recording:
        try:
            frame.span.set_attribute("execscope.return.value", capture("", value, _limits()))
        except Exception as exc:
            stats.failed(exc)
    return value


class _EnteredStacks(threading.local):
    def __init__(self) -> None:
        self.entries: list[tuple[Any, Any]] = []  # (frame, Python frame that entered it), innermost last


_entered = _EnteredStacks()


def push_entered(frame: Any, caller: Any) -> None:
    """The thread keeps ``frame``, entered by Python frame ``caller`` in the no-variable form (both
    Python cores; the native one keeps its own stack in C, same rules)."""
    _entered.entries.append((frame, caller))


def _entered_index(entries: list[tuple[Any, Any]], caller: Any) -> int:
    # the nearest entry ``caller`` entered: the top one, unless calls above it never ran
    # leave_current (RecursionError before the hook); -1 when enter recorded nothing for the call
    for i in range(len(entries) - 1, max(-1, len(entries) - 1025), -1):
        if entries[i][1] is caller:
            return i
    return -1


def entered_by(caller: Any) -> Any:
    """The frame Python frame ``caller`` entered (no-variable form), or None. Never raises."""
    try:
        entries = _entered.entries
        i = _entered_index(entries, caller)
        return entries[i][0] if i >= 0 else None
    except Exception as exc:
        stats.failed(exc)
        return None


def pop_entered(caller: Any) -> Any:
    """Like :func:`entered_by`, and forgets it with every entry above it. Never raises."""
    try:
        entries = _entered.entries
        i = _entered_index(entries, caller)
        if i < 0:
            return None
        frame = entries[i][0]
        del entries[i:]
        return frame
    except Exception as exc:
        stats.failed(exc)
        return None


def enter_current(info: tuple, args: tuple) -> None:
    """``enter`` for the no-variable form (see the module docstring): the thread keeps the frame."""
    frame = _sdk_enter(info, args)
    if frame is not NO_FRAME:
        push_entered(frame, sys._getframe(1))


def ret_current(value: Any) -> Any:
    """``return value`` in the no-variable form; hands ``value`` back."""
    frame = entered_by(sys._getframe(1))
    if frame is not None and frame.recording:
        try:
            frame.span.set_attribute("execscope.return.value", capture("", value, _limits()))
        except Exception as exc:
            stats.failed(exc)
    return value


def fail_current() -> None:
    """The exception being handled leaves the call (the no-variable form's ``except`` clause)."""
    caller = sys._getframe(1)
    frame = entered_by(caller)
    if frame is not None:
        _fail(frame, sys.exc_info()[1], caller)  # type: ignore[arg-type]


def leave_current() -> None:
    """The call of the no-variable form finished, normally or not."""
    frame = pop_entered(sys._getframe(1))
    if frame is not None:
        _leave(frame)


def _limits() -> ReprLimits:
    rec = _recorder
    return rec.limits if rec is not None else DEFAULT_LIMITS


def _not_an_error(exc: BaseException) -> bool:
    t = type(exc)  # not isinstance: that may ask the object for its __class__ (program code)
    if issubclass(t, GeneratorExit):
        return True
    if issubclass(t, SystemExit):
        code = EXIT_CODE(exc)
        return code is None or code == 0
    return False


def exception_type_name(exc: BaseException) -> str:
    t = type(exc)
    return t.__qualname__ if t.__module__ in ("builtins", None) else f"{t.__module__}.{t.__qualname__}"


def exception_entries(exc: BaseException, caller: Any) -> tuple[int, tuple[tuple[str, int, str], ...]]:
    """The line where ``exc`` passed through ``caller``'s frame, and the traceback entries from there
    inwards as (file, line, function), the innermost ``_STACK_LIMIT`` kept. Cheap: no source lines
    are read here (see :func:`format_stack`)."""
    tb = EXC_TRACEBACK(exc)  # not exc.__traceback__: no program code runs
    while tb is not None and tb.tb_frame is not caller:
        tb = tb.tb_next
    if tb is None:
        return caller.f_lineno, ()
    return tb.tb_lineno, _entries_from(tb)


def _entries_from(tb: Any) -> tuple[tuple[str, int, str], ...]:
    entries = []
    while tb is not None:
        code = tb.tb_frame.f_code
        entries.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return tuple(entries[-_STACK_LIMIT:])


# --- exceptions caught where they were raised (``caught``) ------------------------------------
_RT_NAME = "_execscope_rt"  # the name rewritten code gives this module (rewriter.RT)
_FAIL_NAMES = ("fail", "fail_current")


def _entry_of(exc: BaseException, caller: Any, depth: int = 0) -> Any:
    """The traceback entry of Python frame ``caller`` in ``exc``'s traceback (the latest raise there),
    or None. For a group, its members' entries come first: the group an ``except*`` clause receives
    for an exception raised bare has no traceback of its own before 3.13, and from 3.13 on one at the
    ``except*`` line, while the member's names the raise."""
    if EXC_GROUP is not None and depth < 4 and issubclass(type(exc), EXC_GROUP):
        for member in EXC_GROUP_EXCEPTIONS(exc)[:16]:
            found = _entry_of(member, caller, depth + 1)
            if found is not None:
                return found
    tb = EXC_TRACEBACK(exc)
    while tb is not None:
        if tb.tb_frame is caller:
            return tb
        tb = tb.tb_next
    return None


def _left_a_recorded_call(tb: Any, caller: Any) -> bool:
    """Did the exception come out of a call of rewritten code below ``caller`` (whose own ``fail``
    recorded it on that call's span)? Told from the code alone: a recorded function's or module's
    code names this runtime and a ``fail`` hook; a class body, lambda or comprehension does not."""
    tb = tb.tb_next
    for _ in range(1024):
        if tb is None:
            return False
        frame = tb.tb_frame
        if frame is not caller:
            names = frame.f_code.co_names
            if _RT_NAME in names and (_FAIL_NAMES[0] in names or _FAIL_NAMES[1] in names):
                return True
        tb = tb.tb_next
    return False


def _position(tb: Any) -> tuple[int, int] | None:
    """(line, UTF-8 column) of the instruction where ``tb``'s frame raised, or None."""
    positions = getattr(tb.tb_frame.f_code, "co_positions", None)
    if positions is None or tb.tb_lasti < 0:
        return None
    found = next(itertools.islice(positions(), tb.tb_lasti // 2, None), None)
    if found is None or found[0] is None or found[2] is None:
        return None
    return found[0], found[2]


def raise_point_node(points: tuple, line: int, tb: Any) -> str | None:
    """The innermost statement of ``points`` (see rewriter._raise_points) holding ``line``: the one
    starting last. When several start on that one's line (``if x: y = 1 // 0``, ``a; b``), the
    column the interpreter recorded for the raising instruction decides."""
    best: Any = None
    same_line = 0  # points holding ``line`` that start on best's line
    for point in points:
        start = point[0]
        if start <= line <= point[2]:
            if best is None or start > best[0] or (start == best[0] and point[1] > best[1]):
                same_line = same_line + 1 if best is not None and start == best[0] else 1
                best = point
            elif start == best[0]:
                same_line += 1
    if best is None:
        return None
    if same_line > 1:
        where = _position(tb)
        if where is not None:
            inner = [p for p in points if p[0] <= line <= p[2] and p[:2] <= where <= p[2:4]]
            if inner:
                best = max(inner, key=_point_start)
    return best[4]


def _point_start(point: tuple) -> tuple:
    return point[:2]


_last_caught: tuple = ((), (), (), (), (), ())  # see caught_exception: the last exception recorded as caught


def caught_exception(caller: Any, points: tuple, handler: str
                     ) -> tuple[BaseException, str, int, str, tuple[tuple[str, int, str], ...]] | None:
    """The exception a handler running in Python frame ``caller`` has just caught, when it is to be
    recorded there: (exception, type name, line, node ID, traceback entries from ``caller`` inwards).
    None when there is none, when it is not an error (GeneratorExit, SystemExit(0): as ``fail``), or
    when it came out of a recorded call (that call's span has it). The node is the innermost
    statement of ``points`` holding the line it was raised at (the handler's own ID if none does)."""
    exc = sys.exc_info()[1]
    if exc is None or _not_an_error(exc):
        return None
    tb = _entry_of(exc, caller)
    if tb is None:
        return exc, exception_type_name(exc), caller.f_lineno, handler, ()
    if _left_a_recorded_call(tb, caller):
        return None
    global _last_caught
    # A bare ``raise`` in a handler leaves the exception's traceback as it was (no new entry): when
    # another handler of the same frame catches it, it is the exception already recorded. Told by
    # identity without keeping a reference (that would keep the frames it holds alive): the same
    # frame, exception, traceback entry, type and line, seen by a *different* handler (one handler
    # catching "the same" again is a loop meeting a new exception at a reused address).
    seen = (id(caller), id(exc), id(tb), type(exc), tb.tb_lineno)
    last = _last_caught
    _last_caught = (*seen, handler)
    if last[:5] == seen and last[5] != handler:
        return None
    line = tb.tb_lineno
    if line is None or line < 1:  # an instruction without a line (rare): where the frame is now
        line = caller.f_lineno
    return exc, exception_type_name(exc), line, raise_point_node(points, line, tb) or handler, _entries_from(tb)


_STACKS_MAX = 4096  # distinct stacks kept formatted (then all forgotten at once)
_stacks: dict[tuple[tuple[str, int, str], ...], str] = {}
_tails: dict[str, str] = {}  # "type: message" -> redacted, as many kept
_stacks_policy: Any = None  # the redaction policy the kept stacks and tails were redacted by


def format_stack(entries: tuple[tuple[str, int, str], ...], type_name: str, message: str) -> str:
    """``exception.stacktrace`` in Python's own traceback format.

    The entries' part (source lines read, then redacted: a secret written in the source is hidden
    like one in a value) is made once per distinct ``entries`` and redaction policy: a program whose
    control flow raises (a parser backtracking) takes the same paths again and again, and formatting
    and scanning every one was most of the cost of recording it (pyparsing's suite). The last line
    (type and message, the message already redacted) is redacted on its own, once per distinct text
    too: an exception passing through many recorded calls gives each the same one."""
    global _stacks_policy
    policy = _values_module._policy
    if _stacks_policy is not policy:
        _stacks.clear()
        _tails.clear()
        _stacks_policy = policy
    head = _stacks.get(entries)
    if head is None:
        summary = traceback.StackSummary.from_list([(f, n, fn, None) for f, n, fn in entries])
        head = redact_text("Traceback (most recent call last):\n" + "".join(summary.format()))
        if len(_stacks) >= _STACKS_MAX:
            _stacks.clear()
        _stacks[entries] = head
    line = f"{type_name}: {message}"
    tail = _tails.get(line)
    if tail is None:
        tail = redact_text(line)
        if len(_tails) >= _STACKS_MAX:
            _tails.clear()
        _tails[line] = tail
    return head + tail


def fail(frame: Frame | Any, exc: BaseException) -> None:
    """An exception is leaving the instrumented function (called from its handler, then re-raised)."""
    _fail(frame, exc, sys._getframe(1))


def _fail(frame: Frame | Any, exc: BaseException, caller: Any) -> None:
    if not frame.recording:
        return
    try:
        span = frame.span
        type_name = exception_type_name(exc)
        if _not_an_error(exc):
            span.set_attribute("execscope.exit", type_name)
            return
        message = exception_message(exc, _limits())
        line, entries = exception_entries(exc, caller)
        stack = format_stack(entries, type_name, message)
        span.add_event("exception", {
            "exception.type": type_name, "exception.message": message,
            "exception.stacktrace": stack, "exception.escaped": True,
            "code.line.number": line, "execscope.seq": frame.seq.next(),
            "execscope.node_id": frame.info[I_NODE],
        })
        span.set_status(Status(StatusCode.ERROR, f"{type_name}: {message}"[:1024]))
        stats.events += 1
    except Exception as e:
        stats.failed(e)


def leave(frame: Frame | Any) -> None:
    """The instrumented function (or module body) finished, normally or not."""
    _leave(frame)


def _leave(frame: Frame | Any) -> None:
    if frame is NO_FRAME:
        return
    try:
        if _current.get() is frame:
            _current.set(frame.outer)  # type: ignore[union-attr]
        if frame.foreign:
            return
        span: Any = frame.span
        end_time = None
        if frame.recording:
            s1 = frame.seq.next()
            span.set_attribute("execscope.seq.end", s1)
            if frame.child_ns:
                span.set_attribute("execscope.child_ns", frame.child_ns)
            if _CLOCK_STEPS:
                end_time = time.time_ns()
                offset = clocks.offset(s1, end_time)
                if offset != _span_offset(span):
                    span.set_attribute("execscope.hlc.end_offset", offset)
        span.end(end_time)
        outer = frame.outer
        if (frame.recording and outer is not None and not outer.foreign and getattr(outer, "recording", False)
                and span.parent is not None and span.parent.span_id == outer.span.get_span_context().span_id):
            outer.child_ns += (span.end_time or 0) - (span.start_time or 0)
        if _on_root_end is not None and (frame.outer is None or frame.outer.foreign):
            _on_root_end()
    except Exception as exc:
        stats.failed(exc)


def suspend(frame: Frame | Any, value: Any, node_id: str | None = None) -> Any:
    """A generator is about to yield ``value``: give the context back to its consumer."""
    if frame is not NO_FRAME:
        try:
            if _current.get() is frame:
                _current.set(frame.outer)  # type: ignore[union-attr]
            if frame.recording and node_id is not None:
                _event(frame, "execscope.yield", node_id, {})
        except Exception as exc:
            stats.failed(exc)
    return value


def resumed(frame: Frame | Any, value: Any, node_id: str | None = None) -> Any:
    """A generator resumed after a yield (``value`` is what was sent in)."""
    if frame is not NO_FRAME:
        try:
            frame.outer = _current.get()
            _current.set(frame)
            if frame.recording and node_id is not None:
                _event(frame, "execscope.resume", node_id, {})
        except Exception as exc:
            stats.failed(exc)
    return value


def _event(frame: Frame, name: str, node_id: str, attributes: dict[str, Any]) -> None:
    attributes["execscope.node_id"] = node_id
    seq = attributes["execscope.seq"] = frame.seq.next()
    if _CLOCK_STEPS:  # an offset of its own where a receive moved the clock during the call
        ts = time.time_ns()
        offset = clocks.offset(seq, ts)
        if offset != _span_offset(frame.span):
            attributes[HLC_OFFSET] = offset
        frame.span.add_event(name, attributes, ts)
    else:
        frame.span.add_event(name, attributes)
    stats.events += 1


def _span_offset(span: Any) -> int:
    attributes = getattr(span, "attributes", None)
    return int(attributes.get(HLC_OFFSET, 0)) if attributes else 0


def branch(frame: Frame | Any, node_id: str) -> None:
    """The branch arm ``node_id`` (if/else, loop body, except handler, match case...) was taken."""
    if frame.recording:
        try:
            _event(frame, "execscope.branch", node_id, {})
        except Exception as exc:
            stats.failed(exc)


def caught(frame: Frame | Any, node_id: str, points: tuple = ()) -> None:
    """Except handler ``node_id`` starts (its arm). First, the exception it caught, as an ``exception``
    event (``exception.escaped`` false) at the statement that raised it, when that was raised in this
    handler's own frame or by code not recorded (see :func:`caught_exception`). Only a handler that
    runs calls this: calls that raise nothing pay nothing."""
    if frame.recording:
        try:
            found = caught_exception(sys._getframe(1), points, node_id)
            if found is not None:
                exc, type_name, line, node, entries = found
                message = exception_message(exc, _limits())
                _event(frame, "exception", node, {
                    "exception.type": type_name, "exception.message": message,
                    "exception.stacktrace": format_stack(entries, type_name, message),
                    "exception.escaped": False, "code.line.number": line})
        except Exception as exc:
            stats.failed(exc)
        try:
            _event(frame, "execscope.branch", node_id, {})
        except Exception as exc:
            stats.failed(exc)


def arm(frame: Frame | Any, node_id: str, value: Any) -> Any:
    """An operand of ``and``/``or`` or an arm of ``x if c else y`` was evaluated; returns it."""
    if frame.recording:
        try:
            _event(frame, "execscope.branch", node_id, {})
        except Exception as exc:
            stats.failed(exc)
    return value


def line(frame: Frame | Any, node_id: str, lineno: int) -> None:
    """Statement ``node_id`` on line ``lineno`` is about to execute."""
    if frame.recording:
        try:
            _event(frame, "execscope.line", node_id, {"code.line.number": lineno})
        except Exception as exc:
            stats.failed(exc)


def assign(frame: Frame | Any, node_id: str, name: str, value: Any) -> None:
    """Variable ``name`` (target ``node_id``) now holds ``value``."""
    if frame.recording:
        try:
            _event(frame, "execscope.assign", node_id,
                   {"execscope.var.name": name, "execscope.var.value": capture(name, value, _limits())})
        except Exception as exc:
            stats.failed(exc)


def value(frame: Frame | Any, node_id: str, name: str, val: Any) -> Any:
    """``val`` is about to be stored into the attribute/subscript target ``name``; returns it."""
    assign(frame, node_id, name, val)
    return val


def _after_fork_in_child() -> None:
    # The forking thread's chain belongs to the parent process: its spans are ended (and exported)
    # there. Here they only parent what the child records.
    frame: Any = current_frame()
    while frame is not None:
        frame.foreign = True
        if isinstance(frame, Frame):  # fast-core frames check ``foreign`` alone
            frame.recording = False
        frame = frame.outer


os.register_at_fork(after_in_child=_after_fork_in_child)


def current_frame() -> Frame | None:
    """The innermost running instrumented frame of this thread and context (for tests and
    integrations). With the native fast core a synchronous call is current without being written
    to ``_current`` (see _capture.c), so read it here, never from ``_current`` directly."""
    return _read_current()


_read_current: Any = _current.get  # replaced by the active core's (see use_core)
_write_current: Any = _current.set


def set_current_frame(frame: Frame | None) -> None:
    """Make ``frame`` the current frame of this thread and context (thread_context's hand-over)."""
    _write_current(frame)


def sync_current_frame() -> None:
    """Before a context is copied (asyncio tasks and callbacks): make sure ``_current`` holds the
    current frame, which a core may keep elsewhere for synchronous calls."""
    _sync_current()


def _no_sync() -> None:
    return None


_sync_current: Any = _no_sync


_plan_credit: dict[str, float] = {}


def plan_keep(node_id: str, rate: float) -> bool:
    """Whether this call of ``node_id``, planned at ``rate`` (0..1, see ``rewrite.plan``), is
    recorded: an accumulator per node keeps exactly ``floor(calls * rate)`` or one more of its calls
    (the first call is kept), evenly spread. Called by rewritten code at each call of a function
    planned below rate 1; never raises (under the GIL a race at worst shifts one decision)."""
    credit = _plan_credit.get(node_id, 1.0 - rate) + rate
    if credit >= 1.0:
        _plan_credit[node_id] = credit - 1.0
        return True
    _plan_credit[node_id] = credit
    return False


HOOK_NAMES = ("enter", "enter_current", "enter_module", "ret", "ret_current", "fail", "fail_current", "leave",
              "leave_current", "suspend", "resumed", "branch", "caught", "arm", "line", "assign", "value")
_SDK_HOOKS = {name: globals()[name] for name in HOOK_NAMES}


BUILTIN_NAME = "_execscope_rt"
"""The name rewritten code finds this module by: its prologue binds ``_execscope_rt = _execscope_rt``
(from ``builtins`` into the module's globals, where every probe then finds it)."""


def publish() -> None:
    """Put this module in ``builtins`` as :data:`BUILTIN_NAME` (done at import; idempotent)."""
    import builtins

    setattr(builtins, BUILTIN_NAME, sys.modules[__name__])


publish()
