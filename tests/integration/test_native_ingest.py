"""The native ingest writes otel_traces' MATERIALIZED columns itself: exactly what the table computes."""

from __future__ import annotations

import re
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from execscope.collector import native_ingest
from execscope.collector.spool_source import SpoolSource
from execscope.instrumentation.export.spool import Spool
from execscope.storage import open_store

T0 = 1_780_000_000_000_000_000


def _kv(key: str, value: object) -> KeyValue:
    kv = KeyValue(key=key)
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    else:
        kv.value.string_value = str(value)
    return kv


# every way a derived column's attribute can come: int, string, negative, garbage, double, bool,
# missing, twice, end offset with and without the start offset; a span ending before it starts
SPANS: list[tuple[int, int, list[tuple[str, object]]]] = [
    (T0, T0 + 500, [("execscope.node_id", "m:f"), ("execscope.code_version", "abc"), ("execscope.seq", 5),
                    ("execscope.seq.end", 9), ("execscope.child_ns", 100), ("execscope.hlc.offset", 7),
                    ("execscope.hlc.end_offset", 11)]),
    (T0 + 1, T0 + 2, [("execscope.seq", "12"), ("execscope.seq.end", -3), ("execscope.child_ns", 1.5),
                      ("execscope.hlc.offset", 40)]),
    (T0 + 9, T0 + 3, []),
    (T0 + 10, T0 + 30, [("execscope.hlc.offset", "garbage"), ("execscope.seq", True), ("execscope.seq", 4),
                        ("execscope.hlc.end_offset", 2), ("execscope.node_id", "")]),
    (T0 + 11, T0 + 12, [("execscope.code_version", 3), ("execscope.hlc.end_offset", "5"),
                        ("execscope.hlc.offset", "18446744073709551615")]),
]


def _request() -> bytes:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(_kv("service.name", "svc"))
    ss = rs.scope_spans.add()
    ss.scope.name = "execscope"
    for i, (start, end, attrs) in enumerate(SPANS):
        span = ss.spans.add()
        span.trace_id = bytes(range(1, 17))
        span.span_id = bytes([0, 0, 0, 0, 0, 0, 0, i + 1])
        span.name = f"s{i}"
        span.start_time_unix_nano, span.end_time_unix_nano = start, end
        span.attributes.extend(_kv(k, v) for k, v in attrs)
    return request.SerializeToString()


COLUMNS = "SpanId, SpanAttributes, Duration, " + ", ".join(native_ingest.DERIVED)
MATERIALIZED = ("SELECT name, default_expression FROM system.columns WHERE database = currentDatabase() "
                "AND table = 'otel_traces' AND default_kind = 'MATERIALIZED'")


def test_native_derived_columns_are_the_tables_own_expressions(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    assert spool.write_batch(_request())
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        report = SpoolSource(spool, store, native=True).drain()
        assert report.spans == len(SPANS) and not report.errors
        expressions = dict(store.query(MATERIALIZED).rows)
        assert set(native_ingest.DERIVED) <= set(expressions)
        checks = ", ".join(f"countIf({name} != ({expr}))" for name, expr in expressions.items())
        # each stored column equals the migration's expression evaluated over the stored row
        assert store.query(f"SELECT count(), {checks} FROM otel_traces").rows[0] == (len(SPANS),) + (0,) * len(
            expressions)
        rows = store.query(f"SELECT {COLUMNS} FROM otel_traces ORDER BY SpanId").rows
    assert [r[3:] for r in rows[:3]] == [
        ("m:f", "abc", 5, 9, 100, T0 + 7, T0 + 500 + 11),
        ("", "", 12, 0, 0, T0 + 1 + 40, T0 + 1 + 1 + 40),
        ("", "", 0, 0, 0, T0 + 9, T0 + 9),
    ]


def test_native_and_python_decoding_store_the_same_derived_columns(tmp_path: Path) -> None:
    payload = _request()
    rows = {}
    for native in (True, False):  # False: the Python decoder, the table computes the columns
        spool = Spool(tmp_path / str(native) / "spool")
        assert spool.write_batch(payload)
        with open_store(f"chdb://{tmp_path / str(native) / 'db'}") as store:
            assert SpoolSource(spool, store, native=native).drain().spans == len(SPANS)
            rows[native] = store.query(f"SELECT {COLUMNS} FROM otel_traces ORDER BY SpanId").rows
    # span 4 has a key twice: the Python decoder keeps the last value, the engine's map both (as before)
    assert [r for i, r in enumerate(rows[True]) if i != 3] == [r for i, r in enumerate(rows[False]) if i != 3]
    assert len(rows[True]) == len(SPANS)


def test_derived_expressions_are_the_migrations_own(tmp_path: Path) -> None:
    """A migration changing a MATERIALIZED expression of otel_traces must change DERIVED too."""
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        table = dict(store.query(MATERIALIZED).rows)
    ours = {name: expr.replace("span_attributes", "SpanAttributes").replace("span_ts", "Timestamp")
            .replace("span_duration", "Duration") for name, expr in native_ingest.DERIVED.items()}

    def norm(expr: str) -> str:
        return re.sub(r"[\s()]", "", expr)

    assert {k: norm(v) for k, v in ours.items()} == {k: norm(v) for k, v in table.items()}
