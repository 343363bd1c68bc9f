"""The columns of ``otel_traces`` the collector writes, in the order of its columnar batches (what
:mod:`.otlp_decode` produces and :mod:`.clickhouse_writer` inserts). A module of its own, free of
protobuf, so that code naming columns (the processor chain ``execscope run`` builds before the
program starts) does not load the decoder."""

from __future__ import annotations

TRACE_COLUMNS = (
    "Timestamp", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName", "SpanKind", "ServiceName",
    "ResourceAttributes", "ScopeName", "ScopeVersion", "SpanAttributes", "Duration", "StatusCode",
    "StatusMessage", "Events.Timestamp", "Events.Name", "Events.Attributes", "Links.TraceId",
    "Links.SpanId", "Links.TraceState", "Links.Attributes",
)
