"""OTLP trace requests for the converter tests: every AnyValue kind, events, links, resource
attributes, unicode, empty values, the execscope attributes behind native_ingest.DERIVED, several
resource and scope groups per request."""

from __future__ import annotations

import random
from typing import Any


def any_values() -> list[Any]:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

    nested = AnyValue(kvlist_value=KeyValueList(values=[
        KeyValue(key="k", value=AnyValue(string_value="v\"\\\n\t\x01\x7f~ é😀")),
        KeyValue(key="n", value=AnyValue(int_value=-3)),
        KeyValue(key="k", value=AnyValue(double_value=0.1)),  # repeated key: last value, first place
        KeyValue(key="none"),
        KeyValue(key="é", value=AnyValue(bytes_value=b"\x00\xff")),
    ]))
    array = AnyValue(array_value=ArrayValue(values=[
        AnyValue(string_value="a"), AnyValue(string_value="\x7f~ \"\\\n\r\t\b\f\x00\x1f é😀\u2028"),
        AnyValue(bool_value=True), AnyValue(int_value=2 ** 63 - 1),
        AnyValue(double_value=float("nan")), AnyValue(double_value=float("-inf")), AnyValue(double_value=1e-7),
        AnyValue(bytes_value=b"\x01"), AnyValue(), nested,
        AnyValue(array_value=ArrayValue(values=[AnyValue(array_value=ArrayValue())])),
    ]))
    doubles = [0.0, -0.0, 1.0, 0.5, 0.1, 1e20, 1e21, 1e22, 1e-6, 1e-7, 123456789012345680000.0, 1.5e300, 2.5e-5,
               3e16, -2.2250738585072014e-308, 5e-324, 1.7976931348623157e308, float("nan"), float("inf"),
               float("-inf"), 12345.678, -0.000123]
    return [AnyValue(string_value=""), AnyValue(string_value="plain"), AnyValue(string_value="ünïcødé ✓ 😀"),
            AnyValue(bool_value=True), AnyValue(bool_value=False), AnyValue(int_value=0),
            AnyValue(int_value=-(2 ** 63)), AnyValue(int_value=2 ** 63 - 1), AnyValue(bytes_value=b""),
            AnyValue(bytes_value=bytes(range(256))), AnyValue(), array, nested,
            *[AnyValue(double_value=d) for d in doubles]]


def requests(seed: int = 7, engine_safe: bool = False) -> list[bytes]:
    """Requests covering every AnyValue kind, events, links, resource attributes, unicode, empty
    values, the execscope attributes behind DERIVED, several resource and scope groups per request.

    ``engine_safe``: without what the engine's own protobuf parse (native_ingest) stores otherwise
    than the Python decoder: array and kvlist values (it leaves them empty), a key repeated in one
    map (it keeps both), a span kind or status code outside the enum (it writes '')."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

    rng = random.Random(seed)
    values = any_values()
    if engine_safe:
        values = [v for v in values if v.WhichOneof("value") not in ("array_value", "kvlist_value")]
    derived = [("execscope.node_id", "m:f"), ("execscope.code_version", "abc123"), ("execscope.seq", "41"),
               ("execscope.seq.end", "+42"), ("execscope.child_ns", "-1"), ("execscope.hlc.offset", "17"),
               ("execscope.hlc.end_offset", "18446744073709551616"), ("execscope.seq", "007")]

    def kvs(n: int) -> list[Any]:
        out = [KeyValue(key=rng.choice(["a", "b", "ключ", "", "k.with.dots"]) + str(rng.randrange(3)),
                        value=rng.choice(values)) for _ in range(n)]
        out += [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in rng.sample(derived, rng.randrange(4))]
        if engine_safe:  # one value per key
            out = list({kv.key: kv for kv in out}.values())
        return out

    kinds = [0, 1, 2, 3, 4, 5] + ([] if engine_safe else [9, -1])

    def span(i: int) -> Any:
        return Span(
            trace_id=rng.randbytes(16), span_id=rng.randbytes(8),
            parent_span_id=rng.choice([b"", rng.randbytes(8)]), trace_state=rng.choice(["", "execscope=1-2"]),
            name=rng.choice(["", "f", "名前", f"span{i}"]), kind=rng.choice(kinds),
            start_time_unix_nano=rng.choice([0, 1, 1_700_000_000_000_000_000, 2 ** 63 - 1]),
            end_time_unix_nano=rng.choice([0, 5, 1_700_000_000_000_001_000]),
            attributes=kvs(rng.randrange(6)),
            events=[Span.Event(time_unix_nano=rng.randrange(2 ** 63), name=rng.choice(["", "exception", "ëv"]),
                               attributes=kvs(rng.randrange(3))) for _ in range(rng.randrange(3))],
            links=[Span.Link(trace_id=rng.randbytes(16), span_id=rng.randbytes(8), trace_state="x=y",
                             attributes=kvs(rng.randrange(2))) for _ in range(rng.randrange(3))],
            status=rng.choice([Status(), Status(code=2, message="bäd"), Status(code=1)]
                              + ([] if engine_safe else [Status(code=7)])),
        )

    out = []
    for r in range(12):
        request = ExportTraceServiceRequest()
        for g in range(1 + r % 3):
            resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=f"svc{g} ✓"))]
                                + kvs(rng.randrange(3)))
            if r == 5:
                resource = Resource()  # no service name at all
            scopes = [ScopeSpans(scope=InstrumentationScope(name=f"scope{s}", version=rng.choice(["", "1.0"])),
                                 spans=[span(i) for i in range(rng.randrange(4))]) for s in range(1 + g)]
            request.resource_spans.append(ResourceSpans(resource=resource, scope_spans=scopes))
        out.append(request.SerializeToString())
    return out


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


