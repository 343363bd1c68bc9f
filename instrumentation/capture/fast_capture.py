"""The fast capture core: compact frames on the hot path, OTLP in bulk off it.

Where :mod:`.runtime`'s SDK core makes one OpenTelemetry SDK span per call (~15-25 us), this core
records a slotted :class:`FastFrame` per call (ids, nanosecond timestamps, the node's constant INFO
tuple, argument values) and appends it to its thread's buffer when the call ends. A worker thread
(:class:`CaptureWorker`) takes every thread's frames every ``interval`` seconds and encodes them as
OTLP spans (:mod:`.otlp_encode`) for a sink (the spool, on the embedded path).

Hot-path contract: called on the program's thread; never raises (failures counted); never blocks;
immutable scalar values (int, float, str, bool, None, bytes) are kept by reference and rendered off
the hot path, anything else is rendered at once (it may change later). At most ``max_pending``
finished frames (all threads together) wait for the worker (plus a small reserve for the calls that hold a
trace together: a thread's outermost recorded call, a call with recorded children); beyond that frames are dropped and
counted, and the count travels with every exported batch (resource attribute ``execscope.dropped_spans``).

Parentage and causality are those of the SDK core: a call nests under the caller's execscope frame,
or under the current OTel span (whose trace id, span id and sampled flag it takes) when the caller is
not instrumented; the frame lives in a ContextVar (one chain per asyncio task); generators hand the
context back at each yield; a fork leaves the parent's frames to the parent. The OpenTelemetry API
sees the innermost recorded call as the current span (its trace id, span id and sampled flag:
:mod:`.otel_context`, at no cost to the hooks), so the application's own spans nest under it.

Native accelerator: when the C extension :mod:`._capture` loads (it is built by the package's own
build; ``EXECSCOPE_NATIVE=0`` turns it off), its ``Frame``, ``State`` and the hot-path hooks
(``enter``, ``enter_module``, ``ret``, ``leave``, the ``*_current`` hooks, ``suspend``, ``resumed``)
replace the Python ones below, with the same fields and behaviour, and :mod:`.otlp_encode` encodes
frames in C. Otherwise this module's pure-Python core runs; :data:`CORE` and :data:`CORE_REASON` say
which one and why. The native core keeps the current frame of a synchronous call in a per-thread
cache instead of the ContextVar (see ``_capture.c``); read and write it through
``runtime.current_frame`` / ``runtime.set_current_frame``.

Sampling: head sampling per trace (:func:`set_sampling`, or the application's sampler through
:mod:`.span_processor`), per-node adaptive sampling (:func:`set_adaptive`) and an event budget
(:func:`set_event_rate`); by default every call and event is recorded.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from _tracemalloc import is_tracing as _is_tracing  # built in: no import cost
from collections.abc import Callable
from typing import Any

from execscope.instrumentation.capture import runtime
from execscope.instrumentation.capture.ids import PROCESS_IDS
from execscope.instrumentation.capture.runtime import NO_FRAME, SEQUENCE, _current, stats
from execscope.instrumentation.capture.values import (
    DEFAULT_LIMITS,
    exception_message,
    opaque_snapshot,
    safe_repr,
)

_time_ns = time.time_ns
getrandbits = PROCESS_IDS.getrandbits  # never the global ``random`` (see .ids)
IMMUTABLE = frozenset({int, float, str, bool, type(None), bytes, complex})

# event kinds stored in FastFrame.events tuples: (kind, node_id, time_ns, seq, a, b)
EV_LINE, EV_BRANCH, EV_ASSIGN, EV_YIELD, EV_RESUME, EV_EXCEPTION = range(6)


class Rendered(str):
    """A value already rendered at capture time (mutable objects)."""

    __slots__ = ()


def snapshot(value: Any) -> Any:
    if type(value) in IMMUTABLE:
        return value
    text = opaque_snapshot(value)
    return Rendered(safe_repr(value, DEFAULT_LIMITS) if text is None else text)


class FastFrame:
    __slots__ = ("trace_id", "span_id", "parent_id", "start", "end", "info", "args", "ret", "has_ret",
                 "events", "seq", "seq0", "seq1", "outer", "anchor", "foreign", "error", "exit", "kind",
                 "dropped_events", "child_ns", "unrecorded", "unrecorded_events", "counted_in", "counted_events")

    trace_id: int
    span_id: int
    parent_id: int
    start: int
    end: int
    info: tuple
    args: tuple
    ret: Any
    seq: Any
    seq0: int
    seq1: int
    outer: Any
    anchor: Any
    kind: str
    # Read only by the SDK core's hooks (``if frame.recording:`` outside their try): a frame of this
    # core that meets them after a core switch must not raise into the program.
    recording = True
    skip = False  # a sampled-out trace's root (see _Skipped)
    counting = False  # a call left out by adaptive sampling (see _Unrecorded)

    def __init__(self) -> None:
        self.events: list[tuple] | None = None
        self.dropped_events = 0
        self.child_ns = 0  # time spent in recorded callees (self time = duration - child_ns)
        self.has_ret = False
        self.foreign = False
        self.error: tuple | None = None
        self.exit: str | None = None
        self.unrecorded: dict[str, int] | None = None  # {node_id: calls left out below this one}
        self.unrecorded_events: dict[str, int] | None = None  # {node_id: their statement events}
        self.counted_in: FastFrame | None = None
        self.counted_events = 0  # of a call left out: the statement events its hooks saw


class _Skipped(FastFrame):
    """The root of a trace that head sampling left out. It is the current frame while the root runs,
    so every call below it is left out too (at the cost of one check); ``foreign`` makes every hook
    ignore it, and it is never exported."""

    __slots__ = ()
    skip = True


class _Unrecorded(FastFrame):
    """A call left out by adaptive sampling (see set_adaptive): current while it runs, so that
    what it calls is left out and counted too, on ``counted_in`` (the nearest recorded caller)."""

    __slots__ = ()
    counting = True


class _Token:
    """Lives exactly as long as one thread's buffer in :class:`_State` (weakly referenced)."""

    __slots__ = ("__weakref__",)


class _State:
    """Per-thread buffers of finished frames, taken by the worker, and the sampling settings.

    Each thread appends to its own list (in a ``threading.local``, dropped when the thread ends), also
    listed in ``buffers`` for :meth:`take` with a weak reference to a token only that thread's local
    holds; ``max_pending`` bounds them all together. As the native State."""

    def __init__(self, max_pending: int, max_events: int) -> None:
        self._local = threading.local()
        self.buffers: list[tuple[list[FastFrame], Any]] = []  # (a thread's frames, weakref to its token)
        self.n_pending = 0
        self.paused = False           # the program traces its own allocations (tracemalloc)
        self.sample_all = True        # head sampling keeps every new trace ...
        self.sample_cut = 0           # ... else those whose low 64 id bits are below this
        self.root_sampler: Any = None  # or callable(trace_id) -> bool, instead of the two above
        self.max_pending = max_pending
        self.dropped = 0
        self.sampled_out = 0          # traces left out by head sampling
        self.events = 0               # events recorded since the worker last took the buffer
        self.max_events = max_events  # beyond this, events are dropped (counted per frame)
        self.adaptive = 0             # per-node adaptive sampling budget (0: every call recorded)
        self.rate = 0                 # budget in events per second (0: unlimited), see set_event_rate
        self.rate_window = 0          # start (ns) of the current one-second window
        self.rate_used = 0            # events kept in it

    def buffer_frame(self, frame: FastFrame, anchor: bool = False) -> None:
        """Buffer a finished frame on this thread, or count it dropped when the buffers are full.

        An ``anchor`` (a thread's outermost recorded call, a call with recorded children, a tally)
        may also take a reserve of ``max_pending // 64`` slots above the bound: when a hot thread
        fills the buffers, the calls that hold a trace together are still kept."""
        if self.n_pending >= self.max_pending and (
                not anchor or self.n_pending >= self.max_pending + (self.max_pending >> 6)):
            self.dropped += 1
            return
        try:
            buf = self._local.buf
        except AttributeError:
            buf = self._local.buf = []
            token = self._local.token = _Token()
            self.buffers.append((buf, weakref.ref(token)))
        buf.append(frame)
        self.n_pending += 1

    def take(self) -> list[FastFrame]:
        """Every thread's finished frames, the buffers emptied of them. Another thread may append
        meanwhile: each buffer gives up a slice and a deletion of what it held (one step each under
        the GIL), so a frame appended in between stays for the next take. The buffer of a thread that
        ended is dropped; the count is recomputed from what is left."""
        frames: list[FastFrame] = []
        buffers = self.buffers
        for i in range(len(buffers) - 1, -1, -1):
            buf, token = buffers[i]
            n = len(buf)
            frames += buf[:n]
            del buf[:n]
            if token() is None and not buf:  # its thread ended
                del buffers[i]
        self.n_pending = sum(len(buf) for buf, _t in buffers)
        return frames

    def clear(self) -> None:
        """Drop every buffered frame (a forked child: its parent exports them)."""
        self.take()


def _load_native() -> tuple[Any, str]:
    if os.environ.get("EXECSCOPE_NATIVE", "1").lower() in ("0", "false", "no", "off"):
        return None, "turned off by EXECSCOPE_NATIVE"
    try:
        from execscope.instrumentation.capture import _capture
    except ImportError as exc:  # not built (no C compiler at install time) or built for another Python
        return None, f"native accelerator unavailable: {exc}"
    return _capture, "native accelerator loaded"


NATIVE, CORE_REASON = _load_native()
CORE = "python" if NATIVE is None else "native"
logging.getLogger("execscope.capture").info("capture core: %s (%s)", CORE, CORE_REASON)

_state: Any = _State(1 << 18, 1 << 22) if NATIVE is None else NATIVE.State(1 << 18, 1 << 22)
_get_current: Callable[[], Any] = _current.get
_set_current: Callable[[Any], Any] = _current.set
if NATIVE is not None:
    FastFrame = NATIVE.Frame  # type: ignore[misc]  # same fields, C layout
    os.register_at_fork(after_in_child=NATIVE.reseed)  # the child draws its own span ids
    # a synchronous call is current in a per-thread cache, not in _current (see _capture.c)
    _get_current, _set_current = NATIVE.current, NATIVE.set_current

_otel_context_var: Any = None
_span_key: Any = None


def _bind_otel() -> None:
    global _otel_context_var, _span_key
    from opentelemetry import context as otel_context
    from opentelemetry.trace.propagation import _SPAN_KEY

    rc = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    _otel_context_var = getattr(rc, "_current_context", None)
    _span_key = _SPAN_KEY


def set_sampling(ratio: float) -> None:
    """Head sampling of new traces: keep ``ratio`` (0..1) of them, decided from the trace id the
    way OpenTelemetry's ``TraceIdRatioBased`` decides (so every process, and every OTel SDK with
    that sampler, decides the same for one trace). A trace continuing an OpenTelemetry parent
    follows the parent's sampled flag instead. 1 records everything (the default)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"sampling ratio must be within 0..1, got {ratio}")
    _state.root_sampler = None
    _state.sample_all = ratio >= 1.0
    _state.sample_cut = 0 if ratio >= 1.0 else round(ratio * (1 << 64))


def set_root_sampler(decide: Callable[[int], bool] | None) -> None:
    """Decide every new trace (one without a sampled OTel parent) with ``decide(trace_id)`` instead
    of a ratio: how an application's own OpenTelemetry sampler is honoured (see span_processor).
    Called on the program's thread once per new trace; an exception leaves the call unrecorded."""
    _state.root_sampler = decide


def _otel_current() -> Any:
    var = _otel_context_var
    if var is not None:
        return var.get().get(_span_key)
    from opentelemetry import trace

    span = trace.get_current_span()
    return span if span.get_span_context().is_valid else None


def set_adaptive(budget: int) -> None:
    """Per-node adaptive sampling: every node (function) has its first ``budget`` calls recorded,
    then one in 2, one in 4, ... (the rate halves each time another ``budget`` are recorded, down
    to one in 2**20). Each event a recorded call records (branches, statements, values) counts as one
    more call, so that at the finer levels a function's first calls are recorded whole while a hot
    loop's share stays bounded. A call left out, with all it calls, is counted on its nearest recorded caller
    (``execscope.unrecorded.<node_id>`` attributes), or, for a call made directly under an
    application's OTel span, on a tally span under it (``execscope.unrecorded``), so recorded spans
    plus those counts are every call, exactly. Budgets restart with every application trace (each
    test of a pytest session, each request; traces execscope starts itself share the process's).
    Roots are decided by head sampling only. 0 records every call."""
    if budget < 0:
        raise ValueError(f"adaptive sampling budget must be >= 0, got {budget}")
    _state.adaptive = int(budget)


_node_counts: dict[int, list] = {}  # id(info) -> [info, calls, recorded, generation] (the pure-Python core's)
_trace_gen = [1, 0]  # [generation, last trace started]: budgets restart with every new trace


def _note_trace(trace_id: int) -> None:
    if trace_id != _trace_gen[1]:
        _trace_gen[1] = trace_id
        _trace_gen[0] += 1


def _adaptive_keep(info: tuple, budget: int) -> bool:
    entry = _node_counts.get(id(info))
    if entry is None or entry[0] is not info:
        entry = _node_counts[id(info)] = [info, 0, 0, 0]
    if entry[3] != _trace_gen[0]:
        entry[1:] = [0, 0, _trace_gen[0]]
    call, recorded = entry[1], entry[2]
    entry[1] = call + 1
    keep = recorded < budget or call & ((1 << min(20, 1 + (recorded - budget) // budget)) - 1) == 0
    entry[2] = recorded + keep
    return keep


def _charge_events(frame: Any) -> None:
    """A recorded call's events (kept or dropped) count toward its node's budget, each as one call
    (see set_adaptive), within the trace the budget belongs to."""
    events = frame.dropped_events + (len(frame.events) if frame.events else 0)
    if not events:
        return
    entry = _node_counts.get(id(frame.info))
    if entry is not None and entry[0] is frame.info and entry[3] == _trace_gen[0]:
        entry[2] += events


# A tally: the span counting the calls left out directly under an application's OTel span, which
# have no recorded caller to be counted on (see set_adaptive). Its info names no node.
TALLY_INFO = ("", "execscope.unrecorded", "", 0, "", ())
_tally: list[Any] = [None, None]  # [tally frame, its OTel span] (the pure-Python core's)
_tally_lock = threading.RLock()


def _tally_for(otel: Any, ctx: Any) -> Any:
    if _tally[0] is not None and _tally[1] is otel:
        return _tally[0]
    close_tally()
    t = FastFrame()
    t.trace_id, t.parent_id, t.span_id = ctx.trace_id, ctx.span_id, getrandbits(64) | 1
    t.info, t.args, t.kind, t.seq, t.anchor, t.outer = TALLY_INFO, (), "call", SEQUENCE, None, None
    t.seq0 = SEQUENCE.next()
    t.start = _time_ns()
    _tally[:] = [t, otel]
    return t


def close_tally() -> None:
    """End the current tally and buffer it for export (call before taking the buffer)."""
    if NATIVE is not None:
        NATIVE.close_tally()
        return
    with _tally_lock:
        t = _tally[0]
        if t is None:
            return
        _tally[:] = [None, None]
        t.end = _time_ns()
        t.seq1 = t.seq.next()
        _state.buffer_frame(t, True)


def _forget_tally() -> None:  # in a forked child: the parent exports its own tally
    global _tally_lock
    _tally[:] = [None, None]
    _tally_lock = threading.RLock()


os.register_at_fork(after_in_child=_forget_tally)


def _unrecorded(carrier: Any, top: Any, otel: Any, info: tuple) -> Any:
    counts = carrier.unrecorded
    if counts is None:
        counts = carrier.unrecorded = {}
    node = info[0]
    counts[node] = counts.get(node, 0) + 1
    f = _Unrecorded()
    f.foreign = True
    f.info = info  # its node, for the events it counts
    f.counted_in = carrier
    f.trace_id = carrier.trace_id
    f.anchor = otel
    f.outer = top
    _set_current(f)
    return f


def _skip(trace_id: int, otel: Any, top: Any, count: bool) -> _Skipped:
    skipped = _Skipped()
    skipped.foreign = True
    skipped.anchor = otel
    skipped.outer = top
    skipped.trace_id = trace_id
    skipped.span_id = 0
    _state.sampled_out += count  # traces this core left out (not those its OTel parent did)
    _set_current(skipped)
    return skipped


def _start(info: tuple, args: Any, kind: str) -> Any:
    top: Any = _get_current()
    otel = _otel_current()
    if top is not None and top.anchor is otel:
        if top.skip:
            return NO_FRAME
        if top.counting:
            return _unrecorded(top.counted_in, top, otel, info)
        if _state.adaptive > 0 and kind == "call" and not top.foreign and not _adaptive_keep(info, _state.adaptive):
            return _unrecorded(top, top, otel, info)
        f = FastFrame()
        f.trace_id = top.trace_id
        f.parent_id = top.span_id
        f.seq = top.seq
    else:
        ctx = otel.get_span_context() if otel is not None else None
        if ctx is not None and ctx.is_valid:
            if not ctx.trace_flags.sampled:  # so is all of this call: skipped at once below it
                return _skip(ctx.trace_id, otel, top, count=False)
            _note_trace(ctx.trace_id)
            if _state.adaptive > 0 and kind == "call" and not _adaptive_keep(info, _state.adaptive):
                with _tally_lock:  # counted on a tally that another thread may be closing
                    return _unrecorded(_tally_for(otel, ctx), top, otel, info)
            f = FastFrame()
            f.trace_id = ctx.trace_id
            f.parent_id = ctx.span_id
        else:
            trace_id = getrandbits(128) or 1
            sampler = _state.root_sampler
            if not (sampler(trace_id) if sampler is not None
                    else _state.sample_all or trace_id & 0xFFFFFFFFFFFFFFFF < _state.sample_cut):
                return _skip(trace_id, otel, top, count=True)
            f = FastFrame()
            f.trace_id = trace_id
            f.parent_id = 0
        f.seq = SEQUENCE
    for a in args:  # recorded as they are now: later mutation must not change them
        if type(a) not in IMMUTABLE:
            args = tuple(map(snapshot, args))
            break
    f.anchor = otel
    f.span_id = getrandbits(64) or 1
    f.info = info
    f.args = args
    f.kind = kind
    f.outer = top
    f.seq0 = f.seq.next()
    f.start = _time_ns()
    _set_current(f)  # cores share the context variable
    return f


def enter(info: tuple, args: tuple) -> Any:
    if _state.paused:
        _state.dropped += 1
        return NO_FRAME
    try:
        return _start(info, args, "call")
    except Exception as exc:
        stats.failed(exc)
        return NO_FRAME


def enter_module(info: tuple) -> Any:
    if _state.paused:
        return NO_FRAME
    try:
        return _start(info, (), "module")
    except Exception as exc:
        stats.failed(exc)
        return NO_FRAME


def ret(frame: Any, value: Any) -> Any:
    if frame is not NO_FRAME and not frame.foreign:  # a foreign frame is never exported
        frame.ret = value if type(value) in IMMUTABLE else snapshot(value)
        frame.has_ret = True
    return value


def enter_current(info: tuple, args: tuple) -> None:
    """``enter`` for the no-variable form: the thread keeps the frame (runtime.push_entered)."""
    frame = enter(info, args)
    if frame is not NO_FRAME:
        runtime.push_entered(frame, sys._getframe(1))


def ret_current(value: Any) -> Any:
    frame = runtime.entered_by(sys._getframe(1))
    if frame is not None and not frame.foreign:
        try:
            frame.ret = value if type(value) in IMMUTABLE else snapshot(value)
            frame.has_ret = True
        except Exception as exc:
            stats.failed(exc)
    return value


def fail_current() -> None:
    caller = sys._getframe(1)
    frame = runtime.entered_by(caller)
    if frame is not None:
        _fail(frame, sys.exc_info()[1], caller)  # type: ignore[arg-type]


def leave_current() -> None:
    frame = runtime.pop_entered(sys._getframe(1))
    if frame is not None:
        leave(frame)


def _below(top: Any, frame: Any) -> bool:
    """Whether ``frame`` is a caller of ``top``: calls whose leave() never ran (CPython raised
    RecursionError before the hook could) end with ``frame``, or every later call would nest there."""
    p = getattr(top, "outer", None)
    for _ in range(1024):
        if p is None:
            return False
        if p is frame:
            return True
        p = getattr(p, "outer", None)
    return False


def leave(frame: Any) -> None:
    # Same steps as runtime.leave (restore the context, skip foreign frames, root hook), kept inline
    # in each core: this is the hottest function after enter.
    if frame is NO_FRAME:
        return
    try:
        top = _get_current()
        if top is frame or (top is not None and _below(top, frame)):
            _set_current(frame.outer)
        if frame.counting:
            _count_left_out_events(frame)
        if frame.foreign:
            return
        frame.end = _time_ns()
        frame.seq1 = frame.seq.next()
        if _state.adaptive > 0 and frame.kind == "call":
            _charge_events(frame)
        outer = frame.outer
        if outer is not None and outer.span_id == frame.parent_id:  # the caller is the parent: its child time
            outer.child_ns += frame.end - frame.start
        root = outer is None or outer.foreign
        _state.buffer_frame(frame, root or frame.child_ns > 0)
        if root and runtime._on_root_end is not None:
            runtime._on_root_end()
    except Exception as exc:
        stats.failed(exc)


def _exception_entries(exc: BaseException, caller: Any) -> tuple[int, tuple[tuple[str, int, str], ...]]:
    """runtime.exception_entries; in C when the native core is loaded (NATIVE.tb_entries: the walk
    a pointer chase, the entries' tuples shared with the previous result where the chains end alike)."""
    if NATIVE is not None:
        return NATIVE.tb_entries(exc, caller, runtime._STACK_LIMIT)
    return runtime.exception_entries(exc, caller)


def fail(frame: Any, exc: BaseException) -> None:
    _fail(frame, exc, sys._getframe(1))


def _fail(frame: Any, exc: BaseException, caller: Any) -> None:
    """``exc`` leaves the call of ``frame``, whose code runs in Python frame ``caller``."""
    if frame is NO_FRAME or frame.foreign:
        return
    try:
        type_name = runtime.exception_type_name(exc)
        if runtime._not_an_error(exc):
            frame.exit = type_name
            return
        line, entries = _exception_entries(exc, caller)
        message = exception_message(exc, DEFAULT_LIMITS)
        # formatted (source lines read) by the encoder, off the program's thread
        frame.error = (type_name, message, entries, line, _time_ns(), frame.seq.next())
    except Exception as e:
        stats.failed(e)


MAX_EVENTS_PER_FRAME = 65536


def set_event_rate(per_second: int) -> None:
    """Budget for statement/branch/assignment events: at most ``per_second`` kept per second (each
    call's span is always kept); beyond it events are dropped and counted on their span
    (``execscope.dropped_events``). 0 removes the limit (the default)."""
    if per_second < 0:
        raise ValueError(f"events per second must be >= 0, got {per_second}")
    _state.rate = int(per_second)
    _state.rate_used = 0
    _state.rate_window = 0


def _event(frame: Any, kind: int, node_id: str, a: Any = None, b: Any = None) -> None:
    events = frame.events
    state = _state
    ts = 0
    if state.rate:  # the clock is read here only when a budget is set; else when the event is kept
        ts = _time_ns()
        if ts - state.rate_window >= 1_000_000_000:
            state.rate_window = ts
            state.rate_used = 0
        state.rate_used += 1
    if (state.events >= state.max_events or state.paused or (state.rate and state.rate_used > state.rate)
            or (events is not None and len(events) >= MAX_EVENTS_PER_FRAME)):
        frame.dropped_events += 1  # bounded memory and budget: count what is not kept
        frame.seq.next()
        return
    if events is None:
        events = frame.events = []
    state.events += 1
    events.append((kind, node_id, ts or _time_ns(), frame.seq.next(), a, b))


def suspend(frame: Any, value: Any, node_id: str | None = None) -> Any:
    if frame is not NO_FRAME:
        try:
            if _get_current() is frame:
                _set_current(frame.outer)
            if not frame.foreign and node_id is not None:
                _event(frame, EV_YIELD, node_id)
        except Exception as exc:
            stats.failed(exc)
    return value


def resumed(frame: Any, value: Any, node_id: str | None = None) -> Any:
    if frame is not NO_FRAME:
        try:
            frame.outer = _get_current()
            _set_current(frame)
            if not frame.foreign and node_id is not None:
                _event(frame, EV_RESUME, node_id)
        except Exception as exc:
            stats.failed(exc)
    return value


def branch(frame: Any, node_id: str) -> None:
    if frame is not NO_FRAME and not frame.foreign:
        try:
            _event(frame, EV_BRANCH, node_id)
        except Exception as exc:
            stats.failed(exc)


def caught(frame: Any, node_id: str, points: tuple = ()) -> None:
    """runtime.caught: the exception an except handler caught (when raised in its frame), then its
    arm. Both this core and the native one record it here (an EV_EXCEPTION event, formatted off the
    program's thread); only a handler that runs calls this."""
    if frame is not NO_FRAME and not frame.foreign:
        try:
            found = runtime.caught_exception(sys._getframe(1), points, node_id)
            if found is not None:
                exc, type_name, line, node, entries = found
                _event(frame, EV_EXCEPTION, node, line, (type_name, exception_message(exc, DEFAULT_LIMITS), entries))
        except Exception as exc:
            stats.failed(exc)
        try:
            _event(frame, EV_BRANCH, node_id)
        except Exception as exc:
            stats.failed(exc)


def arm(frame: Any, node_id: str, value: Any) -> Any:
    if frame is not NO_FRAME and not frame.foreign:
        try:
            _event(frame, EV_BRANCH, node_id)
        except Exception as exc:
            stats.failed(exc)
    return value


def _count_left_out_events(frame: Any) -> None:
    """A left-out call ends: its statement events go to its carrier's ``unrecorded_events``."""
    carrier = frame.counted_in
    if frame.counted_events and carrier is not None:
        node = frame.info[0]
        counts = carrier.unrecorded_events
        if counts is None:
            counts = carrier.unrecorded_events = {}
        counts[node] = counts.get(node, 0) + frame.counted_events
        frame.counted_events = 0


def line(frame: Any, node_id: str, lineno: int) -> None:
    if frame is NO_FRAME:
        return
    if frame.foreign:  # a call left out by adaptive sampling counts its statement events
        if frame.counting:
            frame.counted_events += 1
    else:
        try:
            _event(frame, EV_LINE, node_id, lineno)
        except Exception as exc:
            stats.failed(exc)


def assign(frame: Any, node_id: str, name: str, value: Any) -> None:
    if frame is NO_FRAME:
        return
    if frame.foreign:  # a call left out by adaptive sampling counts its statement events
        if frame.counting:
            frame.counted_events += 1
    else:
        try:
            _event(frame, EV_ASSIGN, node_id, name, value if type(value) in IMMUTABLE else snapshot(value))
        except Exception as exc:
            stats.failed(exc)


def value(frame: Any, node_id: str, name: str, val: Any) -> Any:
    assign(frame, node_id, name, val)
    return val


HOOKS = {name: globals()[name] for name in runtime.HOOK_NAMES}
if NATIVE is not None:
    HOOKS.update(enter=NATIVE.enter, enter_module=NATIVE.enter_module, ret=NATIVE.ret, leave=NATIVE.leave,
                 suspend=NATIVE.suspend, resumed=NATIVE.resumed, enter_current=NATIVE.enter_current,
                 ret_current=NATIVE.ret_current,
                 fail_current=NATIVE.fail_current, leave_current=NATIVE.leave_current,
                 line=NATIVE.line, branch=NATIVE.branch, arm=NATIVE.arm, assign=NATIVE.assign, value=NATIVE.value)


def set_max_events_per_frame(n: int) -> None:
    """At most ``n`` events kept per recorded call (both cores); beyond, they are counted on it."""
    global MAX_EVENTS_PER_FRAME
    MAX_EVENTS_PER_FRAME = int(n)
    if NATIVE is not None:
        NATIVE.configure_events(EV_LINE, EV_BRANCH, EV_ASSIGN, MAX_EVENTS_PER_FRAME)


def _parent_of(span: Any) -> Any:
    """For the native core: where a call under OTel span ``span`` belongs (see _start)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    if not ctx.trace_flags.sampled:
        return False
    return ctx.trace_id, ctx.span_id


def _configure_native() -> None:
    NATIVE.configure(
        state=_state, current=_current, otel_var=_otel_context_var, span_key=_span_key,
        otel_current=_otel_current, parent_of=_parent_of, snapshot=snapshot,
        failed=stats.failed, root_end=lambda: runtime._on_root_end, no_frame=NO_FRAME, sequence=SEQUENCE,
        rendered_type=Rendered, max_chars=DEFAULT_LIMITS.max_chars, max_items=DEFAULT_LIMITS.max_items,
        max_depth=DEFAULT_LIMITS.max_depth, tally_info=TALLY_INFO, event=_event, ev_yield=EV_YIELD,
        ev_resume=EV_RESUME, fail=fail)
    NATIVE.configure_events(EV_LINE, EV_BRANCH, EV_ASSIGN, MAX_EVENTS_PER_FRAME)


def activate() -> None:
    """Make rewritten code record through this core (see :func:`runtime.use_core`)."""
    global _exiting
    _exiting = False  # recording anew (a test's, after another stopped new calls)
    _bind_otel()
    _follow_tracemalloc()
    if NATIVE is not None:
        _configure_native()
    runtime.use_core(HOOKS, runtime.GATE_SAMPLED, read_current=_get_current, write_current=_set_current,
                     sync_current=None if NATIVE is None else NATIVE.sync_current)


_window = False   # the program asked to trace its allocations (set before waiting for our threads)
_exiting = False  # stop_new_calls: what is held for the window goes out with the final flush


def _wait_for_the_worker(timeout_s: float) -> bool:
    """Until the capture worker's drain under way, if any, has ended (False after ``timeout_s``)."""
    worker = _active_worker
    return True if worker is None else worker.wait_idle(timeout_s)


# the writers tracemalloc.start() waits for: the capture worker, and those added (SDK exports)
_idle_waiters: list[Callable[[float], bool]] = [_wait_for_the_worker]


def allocation_window() -> bool:
    """True while the program traces its own allocations (``tracemalloc``), from the moment it asks
    to start, unless the process is exiting: nothing of ours should allocate then (see
    :mod:`...export.held_while_tracing`)."""
    if _exiting:
        return False
    return _window or bool(_is_tracing())


def add_idle_waiter(wait: Callable[[float], bool]) -> None:
    """``wait(timeout_s)`` is called by ``tracemalloc.start()`` before tracing begins, after the
    window is open: it returns once the writer it stands for has finished what it was doing."""
    if wait not in _idle_waiters:
        _idle_waiters.append(wait)


def _follow_tracemalloc() -> None:
    """Pause recording while the program traces its own allocations with tracemalloc, so that
    execscope's buffers never count in what the program measures (calls are counted as dropped).
    Tracing started before (``-X tracemalloc``) pauses now; ``tracemalloc.start``/``stop`` are
    wrapped once the program imports ``tracemalloc`` (~3 ms that most programs never pay)."""
    from execscope.instrumentation import post_import

    _state.paused = _is_tracing()
    post_import.when_imported("tracemalloc", _wrap_tracemalloc)


def _wrap_tracemalloc(tracemalloc: Any) -> None:
    if getattr(tracemalloc.start, "__execscope__", False):
        return
    start, stop = tracemalloc.start, tracemalloc.stop

    def traced_start(*args: Any, **kwargs: Any) -> Any:
        global _window
        _window = True
        # no new drain starts; one under way is waited for (bounded), and so is an SDK export: what
        # they allocate (the first export imports protobuf) would otherwise count in the measurement
        _state.paused = True
        for wait in list(_idle_waiters):
            wait(5.0)
        return start(*args, **kwargs)

    def traced_stop(*args: Any, **kwargs: Any) -> Any:
        global _window
        try:
            return stop(*args, **kwargs)
        finally:
            _window = False
            _state.paused = False

    for wrapper, original in ((traced_start, start), (traced_stop, stop)):
        wrapper.__execscope__ = True  # type: ignore[attr-defined]
        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
        wrapper.__doc__ = original.__doc__
    tracemalloc.start, tracemalloc.stop = traced_start, traced_stop
    if tracemalloc.is_tracing():  # started through _tracemalloc before the module was imported
        _state.paused = True


def stop_new_calls() -> None:
    """Record no call that starts from now on; calls under way still finish and are exported.

    Called when the interpreter exits: threads still running then (daemon threads, say) would
    otherwise fill the buffer as fast as the final flush empties it, and the flush would never end.
    """
    global _exiting
    runtime._set_gate(runtime.GATE_OFF)
    _state.paused = True  # the pure-Python core has no gate: its enter hooks check this
    _exiting = True


def take_pending() -> tuple[list[FastFrame], int]:
    """Take every thread's finished frames (atomic under the GIL); returns them and the drop count."""
    close_tally()
    state = _state
    frames = state.take()
    state.events = 0
    return frames, state.dropped


_active_worker: CaptureWorker | None = None  # the process's worker (see _follow_tracemalloc)
DRAIN_CHUNK = 2048  # frames handed to the sink at a time (a spool file's, a Kafka message's worth)
POLL_S = 0.05  # how often the worker looks at the buffers' fill between its periodic drains
EARLY_DRAIN_FILL = 4  # drained at once when 1/EARLY_DRAIN_FILL of max_pending waits


class CaptureWorker:
    """Drains finished frames every ``interval_s`` into ``sink(frames, dropped)``, and at once when a
    quarter of the buffers' bound waits (looked at every :data:`POLL_S`); one per process.

    ``force_flush`` and ``shutdown`` may be called from any thread; both are bounded by their
    timeout, and ``shutdown`` is idempotent. After ``os.fork`` the child gets a fresh buffer and its
    own worker thread; the parent's pending frames stay with the parent.
    """

    def __init__(self, sink: Callable[[list[FastFrame], int], None], interval_s: float = 0.5) -> None:
        self.sink = sink
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._held: list[FastFrame] = []  # frames a periodic drain left when tracemalloc started
        self._thread: threading.Thread | None = None
        self._start_thread()
        global _active_worker
        _active_worker = self
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="execscope-capture", daemon=True)
        self._thread.start()

    def _after_fork_in_child(self) -> None:
        _state.clear()
        self._held = []  # the parent's, as its pending frames
        _state.dropped = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        if not self._stopped:
            self._start_thread()

    def _run(self) -> None:
        from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, set_value

        attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        last = time.monotonic()
        while not self._stopped:
            woke = self._wake.wait(min(self.interval_s, POLL_S))
            if woke:
                self._wake.clear()
            now = time.monotonic()
            # every interval_s, and early while a burst fills the buffers (a look at two integers
            # each POLL_S): a burst of calls filling them within one interval was dropped from the
            # buffers' end, the drain still waiting for its turn
            state = _state
            if woke or now - last >= self.interval_s or state.n_pending * EARLY_DRAIN_FILL >= state.max_pending:
                last = now
                self._drain(periodic=True)

    def _drain(self, timeout_s: float = -1, periodic: bool = False) -> bool:
        if not self._lock.acquire(timeout=timeout_s):  # the worker's drain did not end in time
            return False
        try:
            # While the program traces allocations, ours would count in them. Checked under the lock:
            # tracemalloc.start() sets ``paused`` and then waits for the lock (wait_idle), so a drain
            # either ends before tracing starts or sees the flag (checked before taking the lock, a
            # drain could start just after wait_idle returned: more-itertools saw 362 KB, once).
            if periodic and _state.paused:
                return True
            frames, dropped = take_pending()
            if self._held:  # what a drain left when tracing began, first
                frames, self._held = self._held + frames, []
            # In chunks, so that a drain with a large backlog yields to tracemalloc.start() after the
            # chunk under way (its wait_idle is bounded: a drain of many seconds, on a loaded machine,
            # would otherwise still be allocating once the program's measurement began).
            for i in range(0, len(frames), DRAIN_CHUNK):
                if i and periodic and _state.paused:
                    self._held = frames[i:]
                    return True
                chunk = frames[i:i + DRAIN_CHUNK]
                try:
                    self.sink(chunk, dropped)
                except Exception as exc:  # this chunk and the rest counted as dropped: the reader sees the gap
                    _state.dropped += len(frames) - i
                    stats.failed(exc)
                    return False
            return True
        finally:
            self._lock.release()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no drain is under way (False after ``timeout_s``, or when called from inside one)."""
        if self._thread is threading.current_thread():
            return False
        if not self._lock.acquire(timeout=timeout_s):
            return False
        self._lock.release()
        return True

    def force_flush(self, timeout_s: float = 5.0) -> bool:
        """Export every frame finished before this call. Frames other threads finish meanwhile are
        left for the next drain: a thread that keeps calling recorded functions (a daemon thread at
        interpreter exit, say) must not keep the flush chasing it."""
        return self._drain(max(0.0, timeout_s))

    def shutdown(self, timeout_s: float = 5.0) -> None:
        if self._stopped:
            return
        deadline = time.monotonic() + timeout_s
        self.force_flush(timeout_s)
        self._stopped = True
        self._wake.set()
        thread = self._thread  # once it has stopped, no drain of this worker can take later frames
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
