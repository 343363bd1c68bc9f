"""Decode: OTLP protobuf (``ExportTraceServiceRequest``) into ``otel_traces`` columns.

Columnar end to end: one list per column, no row objects. Values follow the OpenTelemetry Collector
ClickHouse exporter: hex ids, ``SPAN_KIND_*`` / ``STATUS_CODE_*`` strings, every attribute value as
a string (arrays and maps as JSON), nanosecond timestamps and durations.
"""

from __future__ import annotations

import json
import math
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from execscope.collector.columns import TRACE_COLUMNS

_KIND = {v: k for k, v in Span.SpanKind.items()}
_STATUS = {v: k for k, v in Status.StatusCode.items()}


# otel_traces' times are DateTime64(9), signed nanoseconds: a span or event time from 2^63 ns on
# cannot be stored (the engine would wrap it to 1677). Refused alike by the C converter.
MAX_TIME_NS = (1 << 63) - 1
TIME_RANGE_ERROR = "span or event time beyond 2262-04-11 (2^63 ns), outside otel_traces' DateTime64(9)"


class DecodeError(ValueError):
    """The payload is not an ExportTraceServiceRequest (poison message)."""


def any_value_to_str(value: AnyValue) -> str:
    """An attribute value as ``otel_traces`` stores it, whichever path wrote the row (this decoder,
    the engine's protobuf parse in :mod:`.native_ingest`, the C converter of :mod:`.native_block`):
    a double as ClickHouse's ``toString(Float64)`` writes it (:func:`float_str`), bytes as lower hex,
    an array or kvlist as compact JSON (the engine's parse leaves those empty), no value as ''."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "int_value":
        return str(value.int_value)
    if which == "double_value":
        return float_str(value.double_value)
    if which == "bytes_value":
        return value.bytes_value.hex()
    if which is None:
        return ""
    return json.dumps(_plain(value), separators=(",", ":"))


def float_str(x: float) -> str:
    """ClickHouse's ``toString(Float64)``: the shortest digits that read back as ``x`` (as ``repr``),
    in plain notation for decimal exponents -6 to 20 and as ``d.ddde-N`` / ``d.ddde N`` (no '+')
    otherwise; ``nan``, ``inf``, ``-inf``, ``-0``."""
    if x != x:
        return "nan"
    if x in (math.inf, -math.inf):
        return "inf" if x > 0 else "-inf"
    text = repr(x)
    sign = "-" if text.startswith("-") else ""
    mantissa, _, exponent = text.lstrip("-").partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + int(exponent or 0)  # x = 0.<digits> * 10**point
    significant = digits.lstrip("0")
    point -= len(digits) - len(significant)
    significant = significant.rstrip("0")
    if not significant:
        return sign + "0"
    n, e = len(significant), point - 1
    if -6 <= e < 21:
        if point <= 0:
            return f"{sign}0.{'0' * -point}{significant}"
        if point >= n:
            return sign + significant + "0" * (point - n)
        return f"{sign}{significant[:point]}.{significant[point:]}"
    rest = f".{significant[1:]}" if n > 1 else ""
    return f"{sign}{significant[0]}{rest}e{e}"


def _plain(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which) if which else None


def _attrs(key_values: Any) -> dict[str, str]:
    return {kv.key: any_value_to_str(kv.value) for kv in key_values}


def parse_request(payload: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(payload)
    except Exception as exc:
        raise DecodeError(f"not an OTLP ExportTraceServiceRequest: {exc}") from exc
    return request


def decode_columns(payload: bytes) -> tuple[list[list[Any]], int]:
    """Columns of ``otel_traces`` (order of :data:`TRACE_COLUMNS`) and the number of events."""
    request = parse_request(payload)
    cols: list[list[Any]] = [[] for _ in TRACE_COLUMNS]
    (ts, tid, sid, psid, tstate, name, kind, service, rattrs, sname, sversion, sattrs, duration, scode,
     smsg, ev_ts, ev_name, ev_attrs, l_tid, l_sid, l_state, l_attrs) = cols
    events = 0
    for resource_spans in request.resource_spans:
        resource = _attrs(resource_spans.resource.attributes)
        service_name = resource.get("service.name", "")
        for scope_spans in resource_spans.scope_spans:
            scope_name, scope_version = scope_spans.scope.name, scope_spans.scope.version
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    raise DecodeError("span with a malformed trace or span id")
                if (span.start_time_unix_nano > MAX_TIME_NS or span.end_time_unix_nano > MAX_TIME_NS
                        or any(e.time_unix_nano > MAX_TIME_NS for e in span.events)):
                    raise DecodeError(TIME_RANGE_ERROR)
                ts.append(span.start_time_unix_nano)
                tid.append(span.trace_id.hex())
                sid.append(span.span_id.hex())
                psid.append(span.parent_span_id.hex())
                tstate.append(span.trace_state)
                name.append(span.name)
                kind.append(_KIND.get(span.kind, "SPAN_KIND_UNSPECIFIED"))
                service.append(service_name)
                rattrs.append(resource)
                sname.append(scope_name)
                sversion.append(scope_version)
                sattrs.append(_attrs(span.attributes))
                duration.append(max(0, span.end_time_unix_nano - span.start_time_unix_nano))
                scode.append(_STATUS.get(span.status.code, "STATUS_CODE_UNSET"))
                smsg.append(span.status.message)
                ev_ts.append([e.time_unix_nano for e in span.events])
                ev_name.append([e.name for e in span.events])
                ev_attrs.append([_attrs(e.attributes) for e in span.events])
                events += len(span.events)
                l_tid.append([link.trace_id.hex() for link in span.links])
                l_sid.append([link.span_id.hex() for link in span.links])
                l_state.append([link.trace_state for link in span.links])
                l_attrs.append([_attrs(link.attributes) for link in span.links])
    return cols, events
