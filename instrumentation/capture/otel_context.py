"""The recorded call as OpenTelemetry's current span, without an SDK span per call.

A recorded call of the fast core is a compact frame, not an OpenTelemetry span, so without this the
OpenTelemetry API would not see it: a span the application starts inside it (an HTTP client's, a
database driver's) would begin a trace of its own, and a ``traceparent`` injected there would name
that trace. :class:`ExecscopeRuntimeContext` is OpenTelemetry's own runtime context (the
``contextvars`` one, same variable, same tokens) whose :meth:`~ExecscopeRuntimeContext.get_current`
shows the innermost recorded call as the current span when it is innermost: a
:class:`RecordedCallSpan` (a ``NonRecordingSpan``) with the call's trace id and span id (the very ids
its exported span gets), the sampled flag and the trace state of the trace it belongs to. Under the
SDK core the call's own SDK span is shown. The cost is paid when something asks for the context,
never by a call: the capture hooks are unchanged.

Which is innermost, the recorded call or the application's span? Every ``attach`` notes in a
context variable of its own the recorded frame that was current when a context with a new current
span was attached (its *owner*). While that frame is the current one, the attached span was started
inside it and is innermost; under any other current frame (a call started under that span, a
generator or task resumed elsewhere) the frame is. A context that only re-attaches the recorded
call's own span (``set_value`` on the current context, a thread handed the context of the call that
started it) is stored with the span that was current when the call's chain started, so the stored
context never holds a :class:`RecordedCallSpan` of the frame it stands for, and the capture cores
(which read the stored context directly, as before) see what they always saw.

Server instrumentations (WSGI, ASGI, Flask, Django, Tornado...) start a request's span through
``opentelemetry.instrumentation.utils._start_internal_or_server_span``: a ``SERVER`` span continuing
the request's ``traceparent`` when no span is current, else an ``INTERNAL`` child of the current
one. A server whose serving loop runs inside a recorded call (``main()`` calling ``serve_forever()``)
must still continue its clients' traces: :func:`install` wraps that function so that it does not
see a recorded call as current when the stored context has no span of its own (the recorded calls
are a chain execscope started); under an application span it sees the recorded call, as any span.

Installed by :func:`install`, which the runtime calls whenever a capture core starts recording
(``execscope run``, ``opentelemetry-instrument``, ``instrument()``): it replaces
``opentelemetry.context._RUNTIME_CONTEXT`` in place, keeping its variable, so contexts and tokens of
before stay valid. It is also the ``execscope`` entry point of the ``opentelemetry_context`` group,
so ``OTEL_PYTHON_CONTEXT=execscope`` makes it OpenTelemetry's runtime context from the first import.
A runtime context of another kind (another ``OTEL_PYTHON_CONTEXT``) is left alone (no overlay).

Never raises into the program: a failure while overlaying returns the stored context as is.
"""

from __future__ import annotations

import contextvars
from typing import Any

from opentelemetry.context.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

# Bound by install() (this module is also loaded while ``opentelemetry.context`` itself is being
# imported, through the entry point, so it imports nothing of ``opentelemetry.trace`` at first).
_SPAN_KEY = "current-span"  # opentelemetry.trace.propagation._SPAN_KEY
_runtime: Any = None  # execscope.instrumentation.capture.runtime, once a core records
_types: Any = None    # (NonRecordingSpan, SpanContext, TraceFlags, TraceState, sampled flags, runtime.Frame)
_getrandbits: Any = None
_context_api: Any = None  # opentelemetry.context
RecordedCallSpan: Any = None
"""The type of the spans shown for recorded calls: a ``NonRecordingSpan`` whose ``frame`` is the
recorded frame it stands for (made by install(), see _recorded_call_span_type)."""

# The recorded frame current when the stored context got its current span (see the docstring).
_owner: contextvars.ContextVar[Any] = contextvars.ContextVar("execscope_context_owner", default=None)
# True while a server instrumentation decides whether a request continues its client's trace.
_hidden: contextvars.ContextVar[bool] = contextvars.ContextVar("execscope_context_hidden", default=False)

# One-entry caches, replaced whole (a tuple read is atomic under the GIL): the overlay span of the
# last frame asked about (a stable identity: the capture cores cache per span), and the last
# overlaid context.
_span_cache: tuple[Any, Any] = (None, None)             # (frame, span or None)
_ctx_cache: tuple[Any, Any, Any] = (None, None, None)   # (stored context, frame, overlaid context)


class _Tokens:
    """What :meth:`ExecscopeRuntimeContext.attach` returns when it also moved the owner."""

    __slots__ = ("context", "owner")

    def __init__(self, context: contextvars.Token, owner: contextvars.Token) -> None:
        self.context = context
        self.owner = owner


class ExecscopeRuntimeContext(ContextVarsRuntimeContext):
    """OpenTelemetry's contextvars runtime context, with the current recorded call as current span."""

    def __init__(self, variable: contextvars.ContextVar[Context] | None = None) -> None:
        super().__init__()
        if variable is not None:  # the variable of the runtime context this one replaces
            self._current_context = variable

    def stored(self) -> Context:
        """The context as attached, without the recorded call (what the capture cores read)."""
        return self._current_context.get()

    def get_current(self) -> Context:
        ctx = self._current_context.get()
        rt = _runtime
        if rt is None:
            return ctx
        try:
            frame = rt._read_current()
            if frame is None or _owner.get() is frame or _hidden.get():
                return ctx
            cached = _ctx_cache
            if cached[0] is ctx and cached[1] is frame:
                return cached[2]
            return _overlay(ctx, frame)
        except Exception:
            return ctx

    def attach(self, context: Context) -> contextvars.Token[Context]:
        var = self._current_context
        rt = _runtime
        owner = _owner.get()
        new_owner = owner
        try:
            frame = rt._read_current() if rt is not None else None
            if frame is None and owner is None:
                return var.set(context)
            span = context.get(_SPAN_KEY)
            if frame is not None and span is not None and _stands_for(span, frame):
                # the recorded call's own context again: stored as it was when the call's chain began
                context = _replace_span(context, frame.anchor)
                new_owner = None
            elif span is not var.get().get(_SPAN_KEY):
                new_owner = frame  # a span made current inside this frame: innermost while it runs
        except Exception:  # as the stock runtime context would
            new_owner = owner
        token = var.set(context)
        if new_owner is owner:
            return token
        return _Tokens(token, _owner.set(new_owner))  # type: ignore[return-value]

    def detach(self, token: Any) -> None:
        if type(token) is _Tokens:
            self._current_context.reset(token.context)
            _owner.reset(token.owner)
        else:
            self._current_context.reset(token)


def _stands_for(span: Any, frame: Any) -> bool:
    """Whether ``span`` is what get_current shows for ``frame``."""
    if type(span) is RecordedCallSpan:
        return span.frame is frame
    return type(frame) is _types[5] and span is frame.span


def _replace_span(context: Context, span: Any) -> Context:
    values = dict(context)
    if span is None:
        values.pop(_SPAN_KEY, None)
    else:
        values[_SPAN_KEY] = span
    return Context(values)


def _overlay(ctx: Context, frame: Any) -> Context:
    global _ctx_cache
    try:
        span = span_of(frame)
        if span is None:
            return ctx
        values = dict(ctx)
        values[_SPAN_KEY] = span
        out = Context(values)
    except Exception:
        return ctx
    _ctx_cache = (ctx, frame, out)
    return out


def span_of(frame: Any) -> Any:
    """The span OpenTelemetry sees for recorded ``frame``: its SDK span (SDK core), else a
    :class:`RecordedCallSpan` with its ids; None when it has none to show."""
    global _span_cache
    cached = _span_cache
    if cached[0] is frame:
        return cached[1]
    span = _make_span(frame)
    _span_cache = (frame, span)
    return span


def _make_span(frame: Any) -> Any:
    non_recording, span_context, _flags, trace_state, sampled, sdk_frame = _types
    if type(frame) is sdk_frame:
        if frame.foreign:  # a parent process's span (inherited through fork): its ids only
            return non_recording(frame.span.get_span_context())
        return frame.span
    anchor = frame.anchor
    if frame.skip:  # the root of a trace head sampling left out
        if anchor is not None and anchor.get_span_context().is_valid:
            return None  # under an OTel span its sampler left out: that span says it all
        trace_id = frame.trace_id
        if not trace_id:
            return None
        return RecordedCallSpan(span_context(trace_id, _getrandbits(64) | 1, False, _flags(0)), frame)
    ids = frame.counted_in if frame.counting else frame  # left out by adaptive sampling: its counter
    trace_id = ids.trace_id
    state = trace_state()
    if anchor is not None:
        anchor_ctx = anchor.get_span_context()
        if anchor_ctx.trace_id == trace_id:
            state = anchor_ctx.trace_state
    return RecordedCallSpan(span_context(trace_id, ids.span_id, False, sampled, state), frame)


def stored_context() -> Context:
    """The current OpenTelemetry context as attached, without the recorded call."""
    if _context_api is None:
        _bind()
    rc = _context_api._RUNTIME_CONTEXT
    return rc.stored() if isinstance(rc, ExecscopeRuntimeContext) else rc.get_current()


def _recorded_call_span_type(non_recording: type) -> type:
    class RecordedCallSpan(non_recording):
        """A recorded call as OpenTelemetry's current span: its ids, no recording of its own."""

        def __init__(self, context: Any, frame: Any) -> None:
            super().__init__(context)
            self.frame = frame

        def __repr__(self) -> str:
            c = self.get_span_context()
            return f"RecordedCallSpan(trace_id=0x{c.trace_id:032x}, span_id=0x{c.span_id:016x})"

    RecordedCallSpan.__module__ = __name__
    return RecordedCallSpan


def _bind() -> None:
    global _SPAN_KEY, _types, _getrandbits, _context_api, RecordedCallSpan
    if _types is not None:
        return
    from opentelemetry import context
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
    from opentelemetry.trace.propagation import _SPAN_KEY as span_key

    from execscope.instrumentation.capture import runtime
    from execscope.instrumentation.capture.ids import PROCESS_IDS

    RecordedCallSpan = _recorded_call_span_type(NonRecordingSpan)
    _SPAN_KEY = span_key
    _getrandbits = PROCESS_IDS.getrandbits
    _context_api = context
    _types = (NonRecordingSpan, SpanContext, TraceFlags, TraceState, TraceFlags(TraceFlags.SAMPLED), runtime.Frame)


def _server_span_hook(original: Any) -> Any:
    """``_start_internal_or_server_span`` that continues the request's trace under recorded calls
    alone (see the module docstring)."""

    def _start_internal_or_server_span(*args: Any, **kwargs: Any) -> Any:
        try:
            rt = _runtime
            stored: Any = stored_context().get(_SPAN_KEY)
            if rt is None or rt._read_current() is None or stored is not None and stored.get_span_context().is_valid:
                return original(*args, **kwargs)
        except Exception:
            return original(*args, **kwargs)
        token = _hidden.set(True)
        try:
            return original(*args, **kwargs)
        finally:
            _hidden.reset(token)

    _start_internal_or_server_span.__wrapped__ = original  # type: ignore[attr-defined]
    _start_internal_or_server_span.__execscope__ = True  # type: ignore[attr-defined]
    _start_internal_or_server_span.__doc__ = original.__doc__
    return _start_internal_or_server_span


def _hook_server_spans() -> None:
    """Wrap ``_start_internal_or_server_span`` once ``opentelemetry.instrumentation.utils`` is
    imported (now, if it is; a program using no OpenTelemetry instrumentation library never imports
    it, and importing it costs ~13 ms: wrapt, asyncio)."""
    from execscope.instrumentation import post_import

    post_import.when_imported("opentelemetry.instrumentation.utils", _wrap_server_span_start)


def _wrap_server_span_start(utils: Any) -> None:
    """Wrap ``_start_internal_or_server_span`` in ``utils`` and in the instrumentation modules that
    imported it already (later imports take the wrapped one)."""
    import sys

    original = getattr(utils, "_start_internal_or_server_span", None)
    if original is None or getattr(original, "__execscope__", False):
        return
    hooked = _server_span_hook(original)
    utils._start_internal_or_server_span = hooked
    for name, module in list(sys.modules.items()):
        if name.startswith("opentelemetry.instrumentation.") and \
                getattr(module, "_start_internal_or_server_span", None) is original:
            module._start_internal_or_server_span = hooked  # type: ignore[attr-defined]


def install() -> bool:
    """Make the current recorded call visible to OpenTelemetry (idempotent); False when the runtime
    context is of another kind than OpenTelemetry's contextvars one, which is left alone."""
    global _runtime
    _bind()
    rc = _context_api._RUNTIME_CONTEXT
    if type(rc) is ContextVarsRuntimeContext:
        _context_api._RUNTIME_CONTEXT = ExecscopeRuntimeContext(rc._current_context)
    elif not isinstance(rc, ExecscopeRuntimeContext):
        return False
    from execscope.instrumentation.capture import runtime

    _hook_server_spans()
    _runtime = runtime
    return True
