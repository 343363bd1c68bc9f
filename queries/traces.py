"""The list of recorded traces (``execscope traces``): one row per trace, newest first."""

from __future__ import annotations

from execscope.queries.dialect import SqlTemplate
from execscope.storage.store import QueryResult, Store

# The newest traces are picked from the small otel_traces_trace_id_ts table first (second
# resolution, so a few more than asked), and only their spans are read. A root is a span whose
# parent is not in the trace (an anti join: memory grows with the spans, not their square). The
# Execution Cinema dashboard's trace picker runs the same statement over its time range.
TRACES = SqlTemplate("""
WITH recent AS (SELECT TraceId FROM otel_traces_trace_id_ts WHERE $__timeFilter(Start) GROUP BY TraceId
                ORDER BY max(End) DESC LIMIT {limit:UInt32} * 4 + 16),
     spans AS (SELECT TraceId, SpanId, ParentSpanId, SpanName, Timestamp, Duration, StatusCode, ServiceName
               FROM otel_traces WHERE TraceId IN recent),
     roots AS (SELECT s.TraceId AS TraceId, argMin(s.SpanName, s.Timestamp) AS root FROM spans AS s
               LEFT ANTI JOIN spans AS p ON p.TraceId = s.TraceId AND p.SpanId = s.ParentSpanId
               GROUP BY s.TraceId)
SELECT
    s.TraceId AS trace_id,
    if(any(r.root) != '', any(r.root), argMin(s.SpanName, s.Timestamp)) AS root,
    count() AS spans,
    countIf(s.StatusCode = 'STATUS_CODE_ERROR') AS errors,
    min(s.Timestamp) AS start,
    round((max(toUnixTimestamp64Nano(s.Timestamp) + s.Duration) - min(toUnixTimestamp64Nano(s.Timestamp)))
          / 1e6, 3) AS duration_ms,
    any(s.ServiceName) AS service
FROM spans AS s LEFT JOIN roots AS r ON r.TraceId = s.TraceId
GROUP BY s.TraceId
ORDER BY start DESC
LIMIT {limit:UInt32}
""")


def list_traces(store: Store, limit: int = 20) -> QueryResult:
    """Traces with ``trace_id``, ``root`` (root span name), ``spans``, ``errors``, ``start``,
    ``duration_ms`` and ``service``. The root is the span without a recorded parent."""
    if limit < 0:
        raise ValueError("limit must be >= 0")
    return TRACES.run(store, {"limit": limit})


def latest_trace(store: Store) -> str | None:
    """The id of the trace that ended last (from the small trace-id table), or None when empty."""
    rows = store.query("SELECT TraceId FROM otel_traces_trace_id_ts GROUP BY TraceId ORDER BY max(End) DESC "
                       "LIMIT 1").rows
    return rows[0][0] if rows else None
