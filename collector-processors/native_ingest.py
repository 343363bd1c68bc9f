"""Native decode: the embedded engine parses OTLP spool files itself and inserts the result.

The fallback of the embedded store's sources: they convert batches into Native blocks in C
(:mod:`.native_block`, about 1.5x faster end to end) and come here when that converter is not built
or refuses a batch.

``INSERT INTO otel_traces SELECT ... FROM file(<spool file>, 'ProtobufSingle', <structure>)`` with
the OTLP schema in :file:`otlp_trace.proto`: no Python object per span or attribute, an order of
magnitude faster than decoding in Python (:mod:`.otlp_decode`). Attribute values become strings the
way the collector's ClickHouse exporter writes them; ``array_value``/``kvlist_value`` attributes are
not decoded here (they come out empty), which execscope's own spans never use.

Only for the embedded engine (it reads the spool directory); a server store goes through the Python
decoder. Idempotent with the same deduplication token as the Python path.

The statement also writes ``otel_traces``' own MATERIALIZED columns (:data:`DERIVED`, with
``insert_allow_materialized_columns``), from the attribute map it has just built: the same
expressions the migrations give them, evaluated once on a plain ``Map(String, String)`` instead of
by the table on its ``LowCardinality``-keyed map after the insert (measured: about a tenth of the
insert's CPU; ``tests/benchmarks/bench_store.py``). Rows written any other way (the Python decoder,
the stock collector exporter) still get them from the table. A test compares the two for every
column listed, so a migration that changes an expression must change :data:`DERIVED` too.
"""

from __future__ import annotations

from pathlib import Path

from execscope.collector.otlp_decode import MAX_TIME_NS, TIME_RANGE_ERROR
from execscope.storage.migrations import INSERT_INDEX_SETTINGS
from execscope.storage.store import Store

SCHEMA = Path(__file__).resolve().parent / "otlp_trace.proto"

_ANY = ("Tuple(value Enum8(''none'' = 0, ''string_value'' = 1, ''bool_value'' = 2, ''int_value'' = 3, "
        "''double_value'' = 4, ''bytes_value'' = 7), string_value String, bool_value Bool, int_value Int64, "
        "double_value Float64, bytes_value String)")
_KVS = f"Array(Tuple(key String, value {_ANY}))"
STRUCTURE = (
    f"resource_spans Array(Tuple(resource Tuple(attributes {_KVS}), scope_spans Array(Tuple("
    f"scope Tuple(name String, version String), spans Array(Tuple(trace_id String, span_id String, "
    f"trace_state String, parent_span_id String, name String, kind Int32, start_time_unix_nano UInt64, "
    f"end_time_unix_nano UInt64, attributes {_KVS}, events Array(Tuple(time_unix_nano UInt64, name String, "
    f"attributes {_KVS})), links Array(Tuple(trace_id String, span_id String, trace_state String, "
    f"attributes {_KVS})), status Tuple(message String, code Int32)))))))"
)


def _map(kvs: str) -> str:
    value = ("multiIf(kv.value.value = 'string_value', kv.value.string_value, "
             "kv.value.value = 'int_value', toString(kv.value.int_value), "
             "kv.value.value = 'bool_value', if(kv.value.bool_value, 'true', 'false'), "
             "kv.value.value = 'double_value', toString(kv.value.double_value), "
             "kv.value.value = 'bytes_value', lower(hex(kv.value.bytes_value)), '')")
    return f"mapFromArrays(arrayMap(kv -> kv.key, {kvs}), arrayMap(kv -> {value}, {kvs}))"


# otel_traces' MATERIALIZED columns (migrations 0001, 0006, 0007, 0010), the same expressions over the
# SELECT's own aliases: span_attributes (SpanAttributes), span_ts (Timestamp), span_duration (Duration).
DERIVED: dict[str, str] = {
    "NodeId": "span_attributes['execscope.node_id']",
    "CodeVersion": "span_attributes['execscope.code_version']",
    "Seq": "toUInt64OrZero(span_attributes['execscope.seq'])",
    "SeqEnd": "toUInt64OrZero(span_attributes['execscope.seq.end'])",
    "ChildNs": "toUInt64OrZero(span_attributes['execscope.child_ns'])",
    "Hlc": "toUInt64(toUnixTimestamp64Nano(span_ts)) + toUInt64OrZero(span_attributes['execscope.hlc.offset'])",
    "HlcEnd": ("toUInt64(toUnixTimestamp64Nano(span_ts)) + span_duration + toUInt64OrZero("
               "if(mapContains(span_attributes, 'execscope.hlc.end_offset'), "
               "span_attributes['execscope.hlc.end_offset'], span_attributes['execscope.hlc.offset']))"),
}

INSERT_SQL = f"""
INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind, ServiceName,
    ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode, StatusMessage,
    `Events.Timestamp`, `Events.Name`, `Events.Attributes`, `Links.TraceId`, `Links.SpanId`,
    `Links.TraceState`, `Links.Attributes`, {', '.join(DERIVED)})
SELECT
    fromUnixTimestamp64Nano(toInt64(s.start_time_unix_nano + throwIf(
        greatest(s.start_time_unix_nano, s.end_time_unix_nano, arrayMax(e -> e.time_unix_nano, s.events))
            > {MAX_TIME_NS}, '{TIME_RANGE_ERROR.replace("'", "''")}'))) AS span_ts,
    lower(hex(s.trace_id)), lower(hex(s.span_id)), lower(hex(s.parent_span_id)), s.trace_state, s.name,
    ['SPAN_KIND_UNSPECIFIED', 'SPAN_KIND_INTERNAL', 'SPAN_KIND_SERVER', 'SPAN_KIND_CLIENT', 'SPAN_KIND_PRODUCER',
     'SPAN_KIND_CONSUMER'][if(s.kind BETWEEN 0 AND 5, s.kind + 1, 1)],
    resource_attributes['service.name'],
    resource_attributes, ss.scope.name, ss.scope.version,
    {_map('s.attributes')} AS span_attributes,
    if(s.end_time_unix_nano > s.start_time_unix_nano, s.end_time_unix_nano - s.start_time_unix_nano, 0)
        AS span_duration,
    ['STATUS_CODE_UNSET', 'STATUS_CODE_OK', 'STATUS_CODE_ERROR'][
        if(s.status.code BETWEEN 0 AND 2, s.status.code + 1, 1)],
    s.status.message,
    arrayMap(e -> fromUnixTimestamp64Nano(toInt64(e.time_unix_nano)), s.events),
    arrayMap(e -> e.name, s.events),
    arrayMap(e -> {_map('e.attributes')}, s.events),
    arrayMap(l -> lower(hex(l.trace_id)), s.links),
    arrayMap(l -> lower(hex(l.span_id)), s.links),
    arrayMap(l -> l.trace_state, s.links),
    arrayMap(l -> {_map('l.attributes')}, s.links),
    {', '.join(DERIVED.values())}
FROM file({{path:String}}, 'ProtobufSingle', '{STRUCTURE}')
ARRAY JOIN resource_spans AS rs
ARRAY JOIN rs.scope_spans AS ss
ARRAY JOIN ss.spans AS s
LEFT ARRAY JOIN [{_map('rs.resource.attributes')}] AS resource_attributes
"""


def native_settings(dedup_token: str) -> dict[str, object]:
    return {
        "format_schema": f"{SCHEMA}:ExportTraceServiceRequest",
        "input_format_protobuf_oneof_presence": 1,
        "insert_allow_materialized_columns": 1,  # DERIVED
        "insert_deduplication_token": dedup_token,
        "deduplicate_blocks_in_dependent_materialized_views": 1,
        **INSERT_INDEX_SETTINGS,  # the maps' bloom filters built by the merges, as native_block's inserts
    }


COUNT_SQL = f"""
SELECT count(), sum(length(s.events))
FROM file({{path:String}}, 'ProtobufSingle', '{STRUCTURE}')
ARRAY JOIN resource_spans AS rs
ARRAY JOIN rs.scope_spans AS ss
ARRAY JOIN ss.spans AS s
"""


def count_spans(store: Store, path: Path) -> tuple[int, int]:
    """(spans, events) in one spool file, parsed by the engine; raises StoreError if unparsable."""
    rows = store.query(COUNT_SQL, parameters={"path": str(path)},
                       settings={"format_schema": f"{SCHEMA}:ExportTraceServiceRequest",
                                 "input_format_protobuf_oneof_presence": 1}).rows
    return int(rows[0][0]), int(rows[0][1] or 0)


def ingest_file(store: Store, path: Path, dedup_token: str) -> None:
    """Insert every span of one spool file. Raises StoreError (bad file or failing engine alike)."""
    store.command(INSERT_SQL, parameters={"path": str(path)}, settings=native_settings(dedup_token))


# Many requests in one file, each prefixed by its length as a varint (ClickHouse's ``Protobuf``
# format; the Kafka source frames a batch of messages this way): one statement for the whole batch.
INSERT_FRAMED_SQL = INSERT_SQL.replace("'ProtobufSingle'", "'Protobuf'")


def frame(payloads: list[bytes]) -> bytes:
    """Length-delimited concatenation of serialized requests (input of :func:`ingest_framed`)."""
    from google.protobuf.internal.encoder import _VarintBytes

    out = bytearray()
    for payload in payloads:
        out += _VarintBytes(len(payload))
        out += payload
    return bytes(out)


def ingest_framed(store: Store, path: Path, dedup_token: str, max_threads: int = 1) -> None:
    """Insert every span of a file written by :func:`frame`. Raises StoreError.

    One engine thread by default: measured on 2 cores, a batch of 60k spans inserts in about 0.5 s
    CPU with one thread against 0.7-0.9 s with the default (the work is mostly serial: the extra
    threads only add scheduling)."""
    settings = {**native_settings(dedup_token), "max_threads": max_threads}
    store.command(INSERT_FRAMED_SQL, parameters={"path": str(path)}, settings=settings)
