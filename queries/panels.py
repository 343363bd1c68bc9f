"""The SQL behind every Grafana panel and dashboard variable, by name.

Panels that show what a CLI command shows use that command's statement (``execscope traces``,
``execscope query hot-nodes``, ``exceptions``, ``coverage``, ``value-history``, ``call-graph``;
the cinema's positions, variables and stack from :mod:`.cinema_views`); the rest are here. Every
entry is a :class:`~execscope.queries.dialect.SqlTemplate`, so a test runs each one on the store
with the plugin's macros expanded, and ``execscope.dashboards`` renders it as a target's ``rawSql``.
"""

from __future__ import annotations

from execscope.queries import cinema_views, correlated
from execscope.queries.dialect import SqlTemplate
from execscope.queries.traces import TRACES

# --- variables ----------------------------------------------------------------------------------

TRACE_OPTIONS = SqlTemplate(f"""
SELECT trace_id, concat(root, ' · ', toString(duration_ms), ' ms', if(errors > 0, concat(' · ', toString(errors),
       ' errors'), ''), ' · ', trace_id) AS label
FROM ({TRACES.sql})
""")
"""Variable ``trace``: recent traces (value: trace id; text: root span, duration, errors)."""

VARIABLE_OPTIONS = SqlTemplate("""
SELECT DISTINCT VarName FROM execscope_events
WHERE TraceId = {trace:String} AND EventName = 'execscope.assign'
ORDER BY VarName
""")
"""Variable ``var``: the variables written in the chosen trace."""

FUNCTION_OPTIONS = SqlTemplate("""
SELECT NodeId FROM otel_traces WHERE NodeId != '' AND $__timeFilter(Timestamp)
GROUP BY NodeId ORDER BY count() DESC, NodeId LIMIT 500
""")
"""Variable ``function``: functions that ran in the time range (node ids), most called first."""

MODULE_OPTIONS = SqlTemplate("SELECT DISTINCT module FROM cpg_nodes ORDER BY module")
"""Variable ``module``: modules with a code property graph."""

SERVICE_OPTIONS = SqlTemplate("""
SELECT DISTINCT ServiceName FROM otel_traces WHERE $__timeFilter(Timestamp) ORDER BY ServiceName
""")
"""Variable ``service``."""

COLLECTOR_OPTIONS = SqlTemplate("""
SELECT DISTINCT Collector FROM execscope_collector_stats WHERE $__timeFilter(Timestamp) ORDER BY Collector
""")
"""Variable ``collector``: collectors that wrote stats in the time range."""

# --- Execution Cinema ---------------------------------------------------------------------------

RECENT_TRACES = TRACES
FRAMES_AROUND = cinema_views.FRAMES_AROUND
NAVIGATION = cinema_views.NAVIGATION
STATE_AT = cinema_views.STATE_AT
STACK_AT = cinema_views.STACK_AT
SOURCE_AT = cinema_views.SOURCE_AT
TRACE_SPANS = cinema_views.TRACE_SPANS
VALUE_TIMELINE = correlated.VALUE_HISTORY

# --- Code Heatmap -------------------------------------------------------------------------------

HOT_FUNCTIONS = correlated.HOT_NODES
HOT_STATEMENTS = correlated.HOT_STATEMENTS

FLAME_GRAPH = SqlTemplate("""
WITH RECURSIVE
spans AS (
    SELECT TraceId, SpanId, ParentSpanId, SpanName, Duration FROM otel_traces
    WHERE $__timeFilter(Timestamp) AND $__conditionalAll(TraceId = {trace:String}, $trace)
),
paths AS (
    SELECT TraceId, SpanId, [toString(SpanName)] AS path, Duration FROM spans
    WHERE (TraceId, ParentSpanId) NOT IN (SELECT TraceId, SpanId FROM spans)
    UNION ALL
    SELECT c.TraceId, c.SpanId, arrayPushBack(p.path, toString(c.SpanName)), c.Duration
    FROM spans AS c INNER JOIN paths AS p ON c.TraceId = p.TraceId AND c.ParentSpanId = p.SpanId
),
totals AS (SELECT path, sum(Duration) AS value FROM paths GROUP BY path),
inner AS (SELECT arrayPopBack(path) AS parent, sum(value) AS value FROM totals
          WHERE length(path) > 1 GROUP BY parent)
SELECT arrayElement(t.path, -1) AS label, toUInt32(length(t.path) - 1) AS level, t.value AS value,
       toUInt64(greatest(toInt64(t.value) - toInt64(coalesce(i.value, 0)), 0)) AS self
FROM totals AS t LEFT JOIN inner AS i ON i.parent = t.path
ORDER BY t.path
SETTINGS join_use_nulls = 1
""", {"trace": ""})
"""The call tree of the time range (or of one trace) for Grafana's flame graph: one row per call
path in depth-first order, ``value`` its total time and ``self`` the time not in recorded callees
(ns). Needs only the OpenTelemetry Collector exporter's columns."""

LINE_HEAT = SqlTemplate(cinema_views.line_heat(
    "WITH", "SELECT ({function:String}, argMax(code_version, inserted_at), 0) FROM cpg_nodes "
    "WHERE node_id = {function:String}", "$__timeFilter(Timestamp)"))
"""Every line of one function (its newest code version) with how often it ran in the time range."""

# --- Call Graph ---------------------------------------------------------------------------------

CALL_EDGES = correlated.CALL_GRAPH

CALL_GRAPH_NODES = SqlTemplate(f"""
SELECT node AS id, arrayElement(splitByChar(':', node), -1) AS title, splitByChar(':', node)[1] AS subtitle,
       concat(toString(sum(calls_in)), ' calls') AS mainstat,
       if(sum(ran) > 0, 'ran', 'never ran') AS secondarystat,
       if(sum(ran) > 0, 1, 0) AS arc__ran, if(sum(ran) > 0, 0, 1) AS arc__never
FROM (
    SELECT callee AS node, calls AS calls_in, toUInt64(calls > 0) AS ran FROM ({correlated.CALL_GRAPH.sql})
    UNION ALL
    SELECT caller, 0, 1 FROM ({correlated.CALL_GRAPH.sql})
)
GROUP BY node
ORDER BY node
""", dict(correlated.CALL_GRAPH.defaults))
"""Nodes of the call graph (node graph ``id``, ``title``, ``subtitle``, stats and arcs)."""

CALL_GRAPH_EDGES = SqlTemplate(f"""
SELECT concat(caller, ' -> ', callee) AS id, caller AS source, callee AS target,
       concat(toString(calls), ' calls') AS mainstat, status AS secondarystat
FROM ({correlated.CALL_GRAPH.sql})
""", dict(correlated.CALL_GRAPH.defaults))
"""Edges of the call graph (node graph ``id``, ``source``, ``target``; status as a stat)."""

# --- Exceptions ---------------------------------------------------------------------------------

EXCEPTIONS = correlated.EXCEPTIONS

EXCEPTIONS_OVER_TIME = SqlTemplate(f"""
WITH {correlated.EXCEPTION_OCCURRENCES}
SELECT $__timeInterval(ts) AS time, concat(what, ' ', node_id) AS series, count() AS occurrences
FROM occurrences
GROUP BY time, series
ORDER BY time, series
""", {"trace": ""})
"""Raised and caught exceptions per node and time bucket (long format: one series per node)."""

# --- Coverage -----------------------------------------------------------------------------------

COVERAGE = correlated.COVERAGE

ARMS_NEVER_TAKEN = SqlTemplate("""
WITH taken AS (SELECT DISTINCT NodeId FROM execscope_events
               WHERE EventName = 'execscope.branch' AND $__timeFilter(Timestamp)),
ran AS (SELECT DISTINCT NodeId, CodeVersion FROM otel_traces WHERE NodeId != '' AND $__timeFilter(Timestamp))
SELECT arrayStringConcat(arraySlice(splitByChar(':', node_id), 1, 2), ':') AS function, node_id AS arm,
       kind, name AS label, line, code, file
FROM cpg_nodes FINAL
WHERE kind IN ('arm', 'except') AND (function, code_version) IN (SELECT NodeId, CodeVersion FROM ran)
  AND node_id NOT IN (SELECT NodeId FROM taken)
  AND $__conditionalAll(module = {module:String}, $module)
  AND $__conditionalAll(function = {function:String}, $function)
ORDER BY function, line, arm
LIMIT 1000
""", {"module": "", "function": ""})
"""Branch arms and handlers of functions that ran in the time range that never ran themselves, with
their source line."""

# --- Pipeline Health ----------------------------------------------------------------------------

_STATS = ("FROM execscope_collector_stats WHERE $__timeFilter(Timestamp) "
          "AND $__conditionalAll(Collector = {collector:String}, $collector)")

COLLECTOR_LAG = SqlTemplate(f"""
SELECT $__timeInterval(Timestamp) AS time, Collector AS collector, max(TotalLag) AS lag
{_STATS}
GROUP BY time, collector ORDER BY time, collector
""", {"collector": ""})
"""Records not yet consumed, per collector over time."""

COLLECTOR_THROUGHPUT = SqlTemplate(f"""
SELECT $__timeInterval(Timestamp) AS time, Collector AS collector, avg(RowsPerS) AS rows_per_s
{_STATS}
GROUP BY time, collector ORDER BY time, collector
""", {"collector": ""})
"""Spans stored per second, per collector over time."""

COLLECTOR_BATCHES = SqlTemplate(f"""
SELECT $__timeInterval(Timestamp) AS time, min(BatchSpansMin) AS min_spans, avg(BatchSpansMean) AS mean_spans,
       max(BatchSpansMax) AS max_spans
{_STATS}
GROUP BY time ORDER BY time
""", {"collector": ""})
"""Batch sizes (spans per insert) over time."""

COLLECTOR_ERRORS = SqlTemplate(f"""
SELECT time, sum(errors) AS store_errors, sum(dead) AS dead_letters, sum(replayed) AS replayed_batches
FROM (
    SELECT $__timeInterval(Timestamp) AS time, Collector, max(StoreErrors) AS errors, max(DeadLetters) AS dead,
           max(ReplayedBatches) AS replayed
    {_STATS}
    GROUP BY time, Collector
)
GROUP BY time ORDER BY time
""", {"collector": ""})
"""Store errors retried, messages sent to the dead letter topic and batches replayed after a
restart, over time (each collector counts from its start)."""

COLLECTOR_LATEST = SqlTemplate(f"""
SELECT Collector AS collector, argMax(Timestamp, Timestamp) AS time, argMax(Spans, Timestamp) AS spans,
       argMax(Messages, Timestamp) AS messages, argMax(Batches, Timestamp) AS batches,
       argMax(StoreErrors, Timestamp) AS store_errors, argMax(DeadLetters, Timestamp) AS dead_letters,
       argMax(ReplayedBatches, Timestamp) AS replayed_batches, argMax(Rejoins, Timestamp) AS rejoins,
       argMax(TotalLag, Timestamp) AS lag, argMax(AssignedPartitions, Timestamp) AS partitions,
       argMax(LastError, Timestamp) AS last_error
{_STATS}
GROUP BY collector ORDER BY collector
""", {"collector": ""})
"""Each collector's latest figures: what ``execscope collect --stats`` printed last."""

DROPS = SqlTemplate("""
SELECT time, sum(dropped_spans) AS dropped_spans, sum(dropped_events) AS dropped_events,
       sum(unrecorded) AS unrecorded_calls
FROM (
    SELECT $__timeInterval(Timestamp) AS time, ResourceAttributes['process.pid'] AS pid,
           max(toUInt64OrZero(ResourceAttributes['execscope.dropped_spans'])) AS dropped_spans,
           sum(toUInt64OrZero(SpanAttributes['execscope.dropped_events'])) AS dropped_events,
           sum(arraySum(arrayMap(v -> toUInt64OrZero(v), mapValues(mapFilter(
               (k, v) -> startsWith(k, 'execscope.unrecorded.'), SpanAttributes))))) AS unrecorded
    FROM otel_traces WHERE $__timeFilter(Timestamp)
    GROUP BY time, pid
)
GROUP BY time ORDER BY time
""")
"""What recording left out, over time: calls not kept (capture buffers or spool full; each process
counts them from its start, the largest count it reported in a bucket is taken), statement events
over ``--max-events-per-s``, and calls counted instead of recorded by adaptive sampling."""
