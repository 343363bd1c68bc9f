"""Where fast-captured frames are turned into OTLP: one ``ExportTraceServiceRequest`` per batch.

Produces exactly the attributes and events the SDK core produces (see :mod:`.runtime`): semantic
``code.*`` attributes, ``execscope.node_id`` / ``code_version`` / ``kind`` / ``seq`` / ``seq.end``,
``execscope.arg.<name>`` and ``execscope.return.value`` (bounded, secrets redacted by name), span
events ``execscope.line`` / ``branch`` / ``assign`` / ``yield`` / ``resume``, the semantic
``exception`` event of an exception caught in its frame (``exception.escaped`` false) and that of
one leaving the call (escaped, with ERROR status). Built with opentelemetry-proto's generated classes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from execscope.instrumentation.capture import clocks, values
from execscope.instrumentation.capture.fast_capture import (
    EV_ASSIGN,
    EV_BRANCH,
    EV_EXCEPTION,
    EV_LINE,
    EV_RESUME,
    EV_YIELD,
    NATIVE,
    FastFrame,
    Rendered,
)
from execscope.instrumentation.capture.runtime import I_FILE, I_LINE, I_NAME, I_NODE, I_PARAMS, I_VERSION, format_stack
from execscope.instrumentation.capture.values import DEFAULT_LIMITS, REDACTED, ReprLimits, capture
from execscope.instrumentation.export import otlp_wire as w

_EVENT_NAMES = {EV_LINE: "execscope.line", EV_BRANCH: "execscope.branch", EV_ASSIGN: "execscope.assign",
                EV_YIELD: "execscope.yield", EV_RESUME: "execscope.resume"}
_INTERNAL = 1  # Span.SpanKind.SPAN_KIND_INTERNAL (opentelemetry-proto; not imported: start-up)
_ERROR = 2  # Status.StatusCode.STATUS_CODE_ERROR


def render(name: str, value: Any, limits: ReprLimits = DEFAULT_LIMITS) -> str:
    """What :func:`values.capture` gives, for a value kept raw or already rendered on the hot path."""
    if type(value) is Rendered:  # rendered (and its text redacted) when captured
        return REDACTED if name and values.policy().is_secret_name(name) else str.__str__(value)
    return capture(name, value, limits)


def _resource_attrs(values: Mapping[str, Any]) -> bytes:
    out = []
    for k, v in values.items():
        if isinstance(v, bool):
            kv = w.kv_bool(k, v)
        elif isinstance(v, int):
            kv = w.kv_int(k, v)
        elif isinstance(v, float):
            kv = w.kv_double(k, v)
        else:
            kv = w.kv_str(k, str(v))
        out.append(w.retag(kv, b"\x0a"))
    return b"".join(out)


_NATIVE_CLOCK = NATIVE is not None and hasattr(NATIVE, "set_clock")
if _NATIVE_CLOCK:  # the native encoder writes the HLC offsets itself, from the clock's live step lists
    NATIVE.set_clock(*clocks.steps())

_HEAD_CACHE: dict[tuple[tuple, str], bytes] = {}
_EVENTS = w.EventEncoder()


def _head(info: tuple, kind: str) -> bytes:
    """The attributes every span of one function shares, encoded once."""
    key = (info, kind)
    head = _HEAD_CACHE.get(key)
    if head is None:
        head = b"".join((
            w.kv_str("code.function.name", info[I_NAME]), w.kv_str("code.file.path", info[I_FILE]),
            w.kv_int("code.line.number", info[I_LINE]), w.kv_str("execscope.node_id", info[I_NODE]),
            w.kv_str("execscope.code_version", info[I_VERSION]), w.kv_str("execscope.kind", kind)))
        if len(_HEAD_CACHE) < 65536:
            _HEAD_CACHE[key] = head
    return head


def _is_secret(name: str) -> bool:
    return values.policy().is_secret_name(name)


def native_head(info: tuple, kind: str) -> tuple[bytes, bytes, tuple[bytes, ...], tuple[bool, ...]]:
    """What the native encoder needs of a function, computed once per ``info``: the span's name
    field, the shared attributes, each parameter's attribute key and whether it is a secret."""
    params = info[I_PARAMS] if len(info) > I_PARAMS else ()
    return (w.ld(b"\x2a", w._utf8(info[I_NAME])), _head(info, kind),
            tuple(w._key("execscope.arg." + name) for name in params),
            tuple(_is_secret(name) for name in params))


def encode_frame(f: FastFrame) -> bytes:
    info = f.info
    kv_str = w.kv_str
    parts = [_head(info, f.kind), w.kv_int("execscope.seq", f.seq0), w.kv_int("execscope.seq.end", f.seq1)]
    # hybrid logical clock: l - timestamp where a receive put this process's floor above the clock
    off0 = off1 = 0
    timed = clocks.needs_offsets(f.seq1, f.start)
    if timed:
        off0, off1 = clocks.offset(f.seq0, f.start), clocks.offset(f.seq1, f.end)
        if off0:
            parts.append(w.kv_int("execscope.hlc.offset", off0))
        if off1 != off0:
            parts.append(w.kv_int("execscope.hlc.end_offset", off1))
    for name, value in zip(info[I_PARAMS], f.args):
        parts.append(kv_str("execscope.arg." + name, render(name, value)))
    if f.has_ret:
        parts.append(kv_str("execscope.return.value", render("", f.ret)))
    if f.exit is not None:
        parts.append(kv_str("execscope.exit", f.exit))
    if f.child_ns:
        parts.append(w.kv_int("execscope.child_ns", f.child_ns))
    if f.unrecorded:
        parts.extend(w.kv_int("execscope.unrecorded." + node, n) for node, n in f.unrecorded.items())
    if f.unrecorded_events:
        parts.extend(w.kv_int("execscope.unrecorded_events." + node, n) for node, n in f.unrecorded_events.items())
    if f.events:
        event, ev_str, names = _EVENTS.event, w.ev_str, _EVENT_NAMES
        for kind, node_id, ts, seq, a, b in f.events:
            hlc = b""
            if timed:
                off = clocks.offset(seq, ts)
                if off != off0:
                    hlc = w.ev_int("execscope.hlc.offset", off)
            if kind == EV_LINE:
                parts.append(event(ts, "execscope.line", node_id, seq, a, hlc))
            elif kind == EV_ASSIGN:
                parts.append(event(ts, "execscope.assign", node_id, seq, None,
                                   ev_str("execscope.var.name", a) + ev_str("execscope.var.value", render(a, b)) + hlc))
            elif kind == EV_EXCEPTION:  # caught in its frame (fast_capture.caught); the native encoder hands
                type_name, message, entries = b  # frames holding one to this function
                parts.append(w.event(ts, "exception", b"".join((
                    ev_str("exception.type", type_name), ev_str("exception.message", message),
                    ev_str("exception.stacktrace", format_stack(entries, type_name, message)),
                    w.ev_bool("exception.escaped", False), w.ev_int("code.line.number", a),
                    w.ev_int("execscope.seq", seq), ev_str("execscope.node_id", node_id), hlc))))
            else:
                parts.append(event(ts, names[kind], node_id, seq, None, hlc))
    status_code, status_message = 0, ""
    if f.error is not None:
        type_name, message, entries, line, ts, seq = f.error
        stack = format_stack(entries, type_name, message)
        off = clocks.offset(seq, ts) if timed else 0
        parts.append(w.event(ts, "exception", b"".join((
            w.ev_str("exception.type", type_name), w.ev_str("exception.message", message),
            w.ev_str("exception.stacktrace", stack), w.ev_bool("exception.escaped", True),
            w.ev_int("code.line.number", line), w.ev_int("execscope.seq", seq),
            w.ev_str("execscope.node_id", info[I_NODE]),
            w.ev_int("execscope.hlc.offset", off) if off != off0 else b""))))
        status_code, status_message = _ERROR, f"{type_name}: {message}"[:1024]
    if f.dropped_events:
        parts.append(w.dropped_events(f.dropped_events))
        parts.append(w.kv_int("execscope.dropped_events", f.dropped_events))
    return w.span(f.trace_id.to_bytes(16, "big"), f.span_id.to_bytes(8, "big"),
                  f.parent_id.to_bytes(8, "big") if f.parent_id else b"", info[I_NAME], _INTERNAL,
                  f.start, f.end, b"".join(parts), status_code, status_message)


def count_events(frames: list[FastFrame]) -> int:
    """How many span events ``frames`` encode to (their events, and an exception event each)."""
    if NATIVE is not None:
        return int(NATIVE.count_events(frames))
    return sum(len(f.events) for f in frames if f.events) + sum(1 for f in frames if f.error is not None)


RECEIVE_SPAN = "execscope.receive"
"""The name of the span recording one message received from another process (clock-skew estimates)."""


def encode_receive(r: clocks.Receive) -> bytes:
    """One message received from another recording process, as a zero-length span at its receipt
    (child of the sender's span): the sender's process id, physical send time and HLC, this
    process's receive time and HLC, and the transport."""
    attrs = b"".join((
        w.kv_str("execscope.clock.peer", r.sender.process), w.kv_int("execscope.clock.sent_ns", r.sender.pt),
        w.kv_int("execscope.clock.sent_hlc", r.sender.l), w.kv_int("execscope.clock.received_ns", r.receiver.pt),
        w.kv_int("execscope.clock.hlc", r.receiver.l), w.kv_int("execscope.clock.seq", r.receiver.c),
        w.kv_str("execscope.clock.transport", r.transport)))
    trace_id = r.trace_id or int.from_bytes(os.urandom(16), "big")
    return w.span(trace_id.to_bytes(16, "big"), os.urandom(8),
                  r.parent_span_id.to_bytes(8, "big") if r.parent_span_id else b"", RECEIVE_SPAN, _INTERNAL,
                  r.receiver.pt, r.receiver.pt, attrs)


def encode_request(frames: Iterable[FastFrame], resource: Mapping[str, Any], scope_version: str,
                   dropped: int = 0, receives: Sequence[clocks.Receive] = ()) -> bytes:
    """One serialized ExportTraceServiceRequest holding every frame (and a span per receive);
    ``dropped`` (cumulative count of frames lost to a full buffer) rides on the resource as
    ``execscope.dropped_spans``."""
    resource_attrs: dict[str, Any] = dict(values.policy().redact_attributes(resource))  # OTEL_RESOURCE_ATTRIBUTES
    if dropped:
        resource_attrs["execscope.dropped_spans"] = dropped
    extra = [encode_receive(r) for r in receives]
    if NATIVE is not None:  # frames with an exception caught in them are handed back to encode_frame
        frames = frames if isinstance(frames, list) else list(frames)
        if clocks.has_steps() and not _NATIVE_CLOCK:  # frames with HLC offsets (an older native build)
            timed = [f for f in frames if clocks.needs_offsets(f.seq1, f.start)]
            if timed:
                frames = [f for f in frames if not clocks.needs_offsets(f.seq1, f.start)]
                extra.extend(encode_frame(f) for f in timed)
        if not extra:
            return NATIVE.encode_spans(frames, encode_frame, native_head, render, _resource_attrs(resource_attrs),
                                       w.scope("execscope", scope_version), _is_secret, format_stack)
        return w.request_encoded(_resource_attrs(resource_attrs), "execscope", scope_version,
                                 NATIVE.encode_spans(frames, encode_frame, native_head, render)
                                 + b"".join([w.ld(b"\x12", s) for s in extra]))
    return w.request(_resource_attrs(resource_attrs), "execscope", scope_version,
                     [encode_frame(f) for f in frames] + extra)


TRUSTED_SCOPES = frozenset({"execscope"})
"""Spans of these instrumentation scopes were redacted when captured (by the same policy)."""


def _redact_any(policy: Any, key: str, value: Any) -> None:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        new = policy.redact_value(key, value.string_value)
        if new != value.string_value:
            value.string_value = new
    elif kind == "array_value":
        for item in value.array_value.values:
            _redact_any(policy, key, item)
    elif kind == "kvlist_value":
        _redact_kvs(policy, value.kvlist_value.values)


def _redact_kvs(policy: Any, kvs: Any) -> None:
    for kv in kvs:
        _redact_any(policy, kv.key, kv.value)


def redact_sdk_request(request: Any, trusted: frozenset[str] = TRUSTED_SCOPES) -> Any:
    """Apply the secrets policy, in place, to an ``ExportTraceServiceRequest`` of SDK spans (the
    program's own OpenTelemetry instrumentations, exported next to execscope's): attribute values
    (by key name and by pattern, at any depth), span names, event names, status messages and the
    resource. Spans of ``trusted`` scopes are left alone (captured redacted). Returns ``request``."""
    policy = values.policy()
    for resource_spans in request.resource_spans:
        _redact_kvs(policy, resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            if scope_spans.scope.name in trusted:
                continue
            for span in scope_spans.spans:
                red = policy.redact_text(span.name)
                if red != span.name:
                    span.name = red
                _redact_kvs(policy, span.attributes)
                for event in span.events:
                    _redact_kvs(policy, event.attributes)
                for link in span.links:
                    _redact_kvs(policy, link.attributes)
                if span.status.message:
                    red = policy.redact_text(span.status.message)
                    if red != span.status.message:
                        span.status.message = red
    return request
