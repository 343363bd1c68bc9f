"""The execscope propagator: W3C trace context carrying the process's hybrid logical clock.

:class:`ExecscopePropagator` is the W3C ``traceparent``/``tracestate`` propagator with one more
``tracestate`` entry, ``execscope=<l>.<c>.<lead>.<process id>`` (see :mod:`.capture.clocks`):
``inject`` is a send event of the clock, ``extract`` a receive that merges the sender's clock. It is
registered as the ``opentelemetry_propagator`` entry point ``execscope`` (``OTEL_PROPAGATORS=execscope,baggage``)
and :func:`install` puts it in place of ``tracecontext`` in the global propagator, so every
instrumentation that propagates through OpenTelemetry carries it: HTTP clients and servers
(``requests``, WSGI, ...), Kafka message headers (``kafka-python``'s instrumentation), ...

Responses: an HTTP response is a message too. :class:`ExecscopeResponsePropagator` is the global
response propagator of ``opentelemetry-instrumentation`` (server instrumentations that support one
inject it into their responses; a propagator set before is kept and runs first), and :func:`install`
makes ``http.client`` (under ``requests``, ``urllib3``, ``urllib``) merge the entry of every
response it reads (patched once it is imported, see :mod:`.post_import`). Subprocesses and spawned
workers merge the parent's clock from ``EXECSCOPE_HLC``.

Everything here runs on the application's threads inside its requests: it never raises into them.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.propagators import (
    ResponsePropagator,
    get_global_response_propagator,
    set_global_response_propagator,
)
from opentelemetry.propagators import textmap
from opentelemetry.trace import NonRecordingSpan, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from execscope.instrumentation import post_import
from execscope.instrumentation.capture import clocks

_log = logging.getLogger("execscope")
KEY = clocks.TRACESTATE_KEY
_installed = False


def _transport(getter: Any) -> str:
    name = type(getter).__name__.lower()
    for label in ("kafka", "wsgi", "asgi", "grpc"):
        if label in name:
            return label
    return "propagator"


class ExecscopePropagator(TraceContextTextMapPropagator):
    """W3C trace context with the execscope clock entry in ``tracestate`` (see the module docstring)."""

    def inject(self, carrier: textmap.CarrierT, context: Context | None = None,
               setter: textmap.Setter[textmap.CarrierT] = textmap.default_setter) -> None:
        span_context = trace.get_current_span(context).get_span_context()
        if span_context.is_valid:
            try:
                value = clocks.send().encode()
                state = span_context.trace_state
                state = state.update(KEY, value) if KEY in state else state.add(KEY, value)
                span_context = SpanContext(span_context.trace_id, span_context.span_id, span_context.is_remote,
                                           span_context.trace_flags, state)
                context = trace.set_span_in_context(NonRecordingSpan(span_context), context)
            except Exception:  # never into the application: plain trace context then
                _log.debug("execscope: clock entry not injected", exc_info=True)
        super().inject(carrier, context, setter)

    def extract(self, carrier: textmap.CarrierT, context: Context | None = None,
                getter: textmap.Getter[textmap.CarrierT] = textmap.default_getter) -> Context:
        extracted = super().extract(carrier, context, getter)
        try:
            span_context = trace.get_current_span(extracted).get_span_context()
            value = span_context.trace_state.get(KEY) if span_context.is_valid else None
            stamp = clocks.Stamp.decode(value) if value else None
            if stamp is not None:
                clocks.receive(stamp, _transport(getter), span_context.trace_id, span_context.span_id)
        except Exception:
            _log.debug("execscope: clock entry not merged", exc_info=True)
        return extracted

    @property
    def fields(self) -> set[str]:
        return set(super().fields)


class ExecscopeResponsePropagator(ResponsePropagator):
    """Injects ``tracestate: execscope=...`` into HTTP responses (a send event), after the response
    propagator it wraps, if any."""

    def __init__(self, wrapped: ResponsePropagator | None = None) -> None:
        self.wrapped = wrapped

    def inject(self, carrier: textmap.CarrierT, context: Context | None = None,
               setter: textmap.Setter = textmap.default_setter) -> None:
        if self.wrapped is not None:
            self.wrapped.inject(carrier, context=context, setter=setter)
        try:
            setter.set(carrier, "tracestate", f"{KEY}={clocks.send().encode()}")
        except Exception:
            _log.debug("execscope: clock entry not injected into a response", exc_info=True)


def merge_response_headers(headers: Any) -> None:
    """Merge the execscope entry of a response's ``tracestate`` header (``headers.get``), if any."""
    try:
        raw = headers.get("tracestate") if headers is not None else None
        if not raw or KEY not in raw:
            return
        for member in str(raw).split(","):
            key, _, value = member.strip().partition("=")
            if key == KEY:
                stamp = clocks.Stamp.decode(value)
                if stamp is not None:
                    span_context = trace.get_current_span().get_span_context()
                    clocks.receive(stamp, "http.response", span_context.trace_id, span_context.span_id)
                return
    except Exception:
        _log.debug("execscope: response clock entry not merged", exc_info=True)


def _patch_http_client(module: Any) -> None:
    """Make ``http.client`` (``module``) merge the entry of every response it reads. Idempotent."""
    original = module.HTTPConnection.getresponse
    if getattr(original, "_execscope", False):
        return

    def getresponse(self: Any, *args: Any, **kwargs: Any) -> Any:
        response = original(self, *args, **kwargs)
        merge_response_headers(getattr(response, "headers", None))
        return response

    getresponse._execscope = True  # type: ignore[attr-defined]
    module.HTTPConnection.getresponse = getresponse


def _with_execscope(textmap_propagator: Any) -> Any:
    """The global propagator with ``tracecontext`` replaced by :class:`ExecscopePropagator` (left as
    it is when it has no W3C trace context: the user chose another format)."""
    from opentelemetry.propagators.composite import CompositePropagator

    if isinstance(textmap_propagator, ExecscopePropagator):
        return textmap_propagator
    if type(textmap_propagator) is TraceContextTextMapPropagator:
        return ExecscopePropagator()
    if isinstance(textmap_propagator, CompositePropagator):
        children = list(getattr(textmap_propagator, "_propagators", []))
        replaced = [ExecscopePropagator() if type(p) is TraceContextTextMapPropagator else p for p in children]
        if any(isinstance(p, ExecscopePropagator) for p in replaced):
            return CompositePropagator(replaced)
    return textmap_propagator


def install() -> None:
    """Put the execscope propagators in place (global text map and response propagators, responses
    read by ``http.client``) and merge the parent's clock from the environment. Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    from opentelemetry import propagate

    propagate.set_global_textmap(_with_execscope(propagate.get_global_textmap()))
    current = get_global_response_propagator()
    if not isinstance(current, ExecscopeResponsePropagator):
        set_global_response_propagator(ExecscopeResponsePropagator(current))
    # once the program imports it: most never do, and it costs ~8 ms (email, ssl) at every start
    post_import.when_imported("http.client", _patch_http_client)
    clocks.merge_from_environment()
