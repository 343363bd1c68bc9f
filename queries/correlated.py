"""Named queries that join the recording with the code property graph (``execscope query NAME``).

Each function takes the store and already-converted parameters and returns a :class:`QueryResult`;
every value reaches ClickHouse as a bound parameter. The statements are
:class:`~execscope.queries.dialect.SqlTemplate` s: the dashboards run the same text, with Grafana
variables and the time range in place of the parameters (``execscope.queries.panels``). Times are
in milliseconds unless a column says otherwise.
"""

from __future__ import annotations

from typing import Any

from execscope.queries.cinema_views import POSITIONS, frames_ctes
from execscope.queries.dialect import SqlTemplate
from execscope.storage.store import QueryResult, Store

# Self time = duration - time spent in recorded callees, which both capture cores add to the caller
# as it runs (execscope.child_ns, the ChildNs column). Read from execscope_node_stats, which a
# materialized view keeps per node, day and service: no scan of the spans.
HOT_NODES = SqlTemplate("""
WITH calls AS (
    SELECT NodeId, CodeVersion, sum(executions) AS executions, sum(total_ns) AS total_ns,
           sum(child_ns) AS child_ns, quantileTDigestMerge(0.95)(duration_digest) AS p95_ns
    FROM execscope_node_stats
    WHERE $__conditionalAll(ServiceName = {service:String}, $service) AND $__dateFilter(Day)
    GROUP BY NodeId, CodeVersion
    ORDER BY total_ns DESC
    LIMIT {limit:UInt32}
)
SELECT calls.NodeId AS node_id, n.kind AS kind, n.qualname AS qualname, n.file AS file, n.line AS line,
       n.code AS code, calls.executions AS executions, round(calls.total_ns / 1e6, 3) AS total_ms,
       round(greatest(calls.total_ns - calls.child_ns, 0) / 1e6, 3) AS self_ms,
       round(calls.p95_ns / 1e6, 3) AS p95_ms, calls.CodeVersion AS code_version, n.module AS module
FROM calls
LEFT JOIN (SELECT node_id, code_version, any(kind) AS kind, any(qualname) AS qualname, any(file) AS file,
                  any(line) AS line, any(code) AS code, any(module) AS module FROM cpg_nodes
           WHERE node_id IN (SELECT NodeId FROM calls) GROUP BY node_id, code_version) AS n
    ON n.node_id = calls.NodeId AND n.code_version = calls.CodeVersion
ORDER BY total_ms DESC
""", {"service": ""})

HOT_STATEMENTS = SqlTemplate("""
SELECT e.NodeId AS node_id, any(n.kind) AS kind, any(n.qualname) AS qualname, any(n.file) AS file,
       any(n.line) AS line, any(n.code) AS code, count() AS executions,
       arrayStringConcat(arraySlice(splitByChar(':', e.NodeId), 1, 2), ':') AS function
FROM execscope_events AS e
LEFT JOIN (SELECT node_id, any(kind) AS kind, any(qualname) AS qualname, any(file) AS file, any(line) AS line,
                  any(code) AS code FROM cpg_nodes GROUP BY node_id) AS n ON n.node_id = e.NodeId
WHERE e.EventName IN ('execscope.line', 'execscope.branch')
  AND $__conditionalAll(e.ServiceName = {service:String}, $service) AND $__timeFilter(e.Timestamp)
GROUP BY e.NodeId
ORDER BY executions DESC
LIMIT {limit:UInt32}
""", {"service": ""})


def hot_nodes(store: Store, limit: int = 20, service: str = "", statements: bool = False) -> QueryResult:
    """Functions by total time (executions, total, self and p95 time, joined to their code); with
    ``statements``, statements and branch arms by executions instead."""
    return (HOT_STATEMENTS if statements else HOT_NODES).run(store, {"limit": limit, "service": service})


SLOW_PATHS = SqlTemplate("""
WITH calls AS (
    SELECT TraceId, SpanId, Duration FROM otel_traces
    WHERE (NodeId = {function:String} OR SpanAttributes['code.function.name'] = {function:String})
      AND $__timeFilter(Timestamp)
),
paths AS (
    SELECT TraceId, SpanId, arrayStringConcat(arrayMap(x -> x.2, arraySort(x -> x.1, groupArray((Seq, NodeId)))),
                                              ' -> ') AS path
    FROM execscope_events
    WHERE EventName = 'execscope.branch' AND (TraceId, SpanId) IN (SELECT TraceId, SpanId FROM calls)
    GROUP BY TraceId, SpanId
)
SELECT coalesce(nullIf(paths.path, ''), '(no branch)') AS path, count() AS calls,
       round(avg(calls.Duration) / 1e6, 3) AS avg_ms, round(quantile(0.95)(calls.Duration) / 1e6, 3) AS p95_ms,
       round(max(calls.Duration) / 1e6, 3) AS max_ms, any(calls.TraceId) AS example_trace
FROM calls LEFT JOIN paths ON paths.TraceId = calls.TraceId AND paths.SpanId = calls.SpanId
GROUP BY path
ORDER BY p95_ms DESC, calls DESC
LIMIT {limit:UInt32}
""")


def slow_paths(store: Store, function: str, limit: int = 20) -> QueryResult:
    """Paths through ``function`` (node ID or qualified name), as the sequence of arms taken per call,
    ranked by p95 latency (needs ``--level branches`` or ``statements``)."""
    if not function:
        raise ValueError("slow-paths needs function=<node id or module.qualname>")
    return SLOW_PATHS.run(store, {"function": function, "limit": limit})


# Every exception raised out of a call (the ``exception`` event) and every handler entered (the
# branch event of an ``except`` node), one row each.
EXCEPTION_OCCURRENCES = """
occurrences AS (
    SELECT 'raised' AS what, e.NodeId AS node_id, e.Attributes['exception.type'] AS type,
           toUInt32OrZero(e.Attributes['code.line.number']) AS line, e.TraceId AS trace_id, e.Seq AS event_seq,
           e.Timestamp AS ts, e.Hlc AS hlc, e.Attributes['exception.message'] AS message
    FROM execscope_events AS e
    WHERE e.EventName = 'exception' AND $__conditionalAll(e.TraceId = {trace:String}, $trace)
      AND $__timeFilter(e.Timestamp)
    UNION ALL
    SELECT 'caught', e.NodeId, n.code, n.line, e.TraceId, e.Seq, e.Timestamp, e.Hlc, ''
    FROM execscope_events AS e
    INNER JOIN (SELECT node_id, any(code) AS code, any(line) AS line FROM cpg_nodes WHERE kind = 'except'
                GROUP BY node_id) AS n ON n.node_id = e.NodeId
    WHERE e.EventName = 'execscope.branch' AND $__conditionalAll(e.TraceId = {trace:String}, $trace)
      AND $__timeFilter(e.Timestamp)
)"""

# Each row names its latest occurrence as a cinema position (trace_id, seq): the frame positions of
# those traces come from their frame keys (cinema_views).
EXCEPTIONS = SqlTemplate(f"""
WITH RECURSIVE {EXCEPTION_OCCURRENCES},
grouped AS (
    SELECT what, node_id, type, line, count() AS count, groupUniqArray(3)(trace_id) AS traces,
           any(message) AS example_message, argMax((trace_id, event_seq, hlc), ts)
               AS latest
    FROM occurrences GROUP BY what, node_id, type, line
),
{frames_ctes("SELECT DISTINCT tupleElement(latest, 1) FROM grouped")},
{POSITIONS}
SELECT g.what AS what, g.node_id AS node_id, g.type AS type, g.line AS line, g.count AS count, g.traces AS traces,
       g.example_message AS example_message, tupleElement(g.latest, 1) AS trace_id, p.seq AS seq
FROM grouped AS g
LEFT JOIN positions AS p ON p.TraceId = tupleElement(g.latest, 1) AND p.k1 = tupleElement(g.latest, 2)
    AND (p.k0 = 0 OR p.k0 = tupleElement(g.latest, 3)) AND p.kind IN ('exception', 'branch')
ORDER BY count DESC, node_id, what
""", {"trace": ""})


def exceptions(store: Store, trace: str = "") -> QueryResult:
    """Exceptions raised (type, line) and caught by handlers, with up to 3 traces each and the latest
    occurrence as a cinema position (``trace_id``, ``seq``: ``execscope cinema TRACE --at SEQ``). A
    ``raised`` row's node is the function an exception left, or the statement that raised one its own
    frame caught (``exception.escaped`` false: the handler's ``caught`` hook recorded it); ``caught``
    rows are the handlers that ran."""
    return EXCEPTIONS.run(store, {"trace": trace})


COVERAGE = SqlTemplate("""
WITH cfg AS (
    SELECT properties['scope'] AS scope, code_version, src, dst FROM cpg_edges FINAL
    WHERE kind = 'CFG' AND $__conditionalAll(properties['scope'] = {function:String}, $function)
      AND $__conditionalAll(splitByChar(':', properties['scope'])[1] = {module:String}, $module)
),
nodes AS (
    SELECT DISTINCT scope, code_version, node FROM cfg ARRAY JOIN [src, dst] AS node
    WHERE NOT endsWith(node, '.entry') AND NOT endsWith(node, '.exit')
),
seen AS (SELECT DISTINCT NodeId FROM execscope_events
         WHERE EventName IN ('execscope.line', 'execscope.branch') AND $__timeFilter(Timestamp)),
pairs AS (
    SELECT DISTINCT prev AS src, NodeId AS dst FROM (
        SELECT NodeId, lagInFrame(NodeId, 1, '') OVER (PARTITION BY TraceId, SpanId ORDER BY Seq
                                                      ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS prev
        FROM execscope_events WHERE EventName IN ('execscope.line', 'execscope.branch') AND $__timeFilter(Timestamp))
    WHERE prev != ''
),
node_cov AS (SELECT scope, code_version, count() AS nodes, countIf(node IN seen) AS nodes_hit FROM nodes
             GROUP BY scope, code_version),
edge_cov AS (SELECT scope, code_version, count() AS edges,
                    countIf((src, dst) IN pairs) AS edges_hit
             FROM (SELECT DISTINCT scope, code_version, src, dst FROM cfg
                   WHERE NOT endsWith(src, '.entry') AND NOT endsWith(dst, '.exit'))
             GROUP BY scope, code_version)
SELECT node_cov.scope AS function, node_cov.code_version AS code_version, nodes, nodes_hit,
       round(100 * nodes_hit / nodes, 1) AS node_pct, edges, edges_hit,
       round(100 * edges_hit / greatest(edges, 1), 1) AS edge_pct
FROM node_cov LEFT JOIN edge_cov ON edge_cov.scope = node_cov.scope AND edge_cov.code_version = node_cov.code_version
WHERE nodes > 0
ORDER BY node_pct ASC, function
LIMIT {limit:UInt32}
""", {"function": "", "module": ""})


def coverage(store: Store, function: str = "", module: str = "", limit: int = 1000) -> QueryResult:
    """Per function: CFG nodes and edges executed vs not (edges between nodes of the CFG that ran one
    right after the other; recorded at ``--level statements`` for full edge coverage)."""
    return COVERAGE.run(store, {"function": function, "module": module, "limit": limit})


VALUE_HISTORY = SqlTemplate("""
SELECT e.TraceId AS trace_id, e.Seq AS seq, e.Timestamp AS timestamp, e.SpanName AS function,
       coalesce(n.line, 0) AS line, e.VarName AS variable, e.VarValue AS value, e.NodeId AS node_id
FROM execscope_events AS e
LEFT JOIN (SELECT node_id, any(line) AS line FROM cpg_nodes GROUP BY node_id) AS n ON n.node_id = e.NodeId
WHERE e.EventName = 'execscope.assign' AND e.VarName = {var:String}
  AND $__conditionalAll(e.TraceId = {trace:String}, $trace)
  AND $__conditionalAll(e.SpanName = {function:String}, $function)
  AND $__timeFilter(e.Timestamp)
ORDER BY e.Hlc, e.Seq
LIMIT {limit:UInt32}
""", {"trace": "", "function": ""})


def value_history(store: Store, var: str, trace: str = "", function: str = "", limit: int = 10000) -> QueryResult:
    """Every value variable ``var`` took (optionally in one trace / function), in order, with where."""
    if not var:
        raise ValueError("value-history needs var=<variable name>")
    return VALUE_HISTORY.run(store, {"var": var, "trace": trace, "function": function, "limit": limit})


def state_at(store: Store, trace: str, at: int) -> QueryResult:
    """Variables of every call alive at frame ``at`` of ``trace`` (outermost first): what a debugger
    would show in every stack frame at that point."""
    from execscope.queries.cinema import open_cinema

    if not trace:
        raise ValueError("state-at needs trace=<trace id> and at=<frame>")
    film = open_cinema(store, trace)
    if not 0 <= at < film.total:
        raise ValueError(f"at={at} is outside the trace (0..{film.total - 1})")
    out: list[tuple[Any, ...]] = []
    for depth, function, span_id, variables in film.stack_at(at):
        if not variables:  # a live call with no variables (yet) is still a frame of the stack
            out.append((depth, function, span_id, "", ""))
        out.extend((depth, function, span_id, name, value) for name, value in sorted(variables.items()))
    out.sort(key=lambda r: (r[0], r[2], r[3]))
    return QueryResult(["depth", "function", "span_id", "variable", "value"], out)


CALL_GRAPH = SqlTemplate("""
WITH runtime AS (
    SELECT p.NodeId AS caller, c.NodeId AS callee, count() AS calls
    FROM otel_traces AS c
    INNER JOIN (SELECT TraceId, SpanId, NodeId FROM otel_traces WHERE NodeId != '') AS p
        ON c.TraceId = p.TraceId AND c.ParentSpanId = p.SpanId
    WHERE c.NodeId != '' AND $__timeFilter(c.Timestamp)
    GROUP BY caller, callee
),
static AS (
    SELECT DISTINCT arrayStringConcat(arraySlice(splitByChar(':', src), 1, 2), ':') AS caller, dst AS callee
    FROM cpg_edges WHERE kind = 'CALL'
),
recorded AS (SELECT DISTINCT node_id FROM cpg_nodes WHERE kind IN ('function', 'class'))
SELECT caller, callee, calls, static, status FROM (
    SELECT coalesce(r.caller, s.caller) AS caller, coalesce(r.callee, s.callee) AS callee,
           coalesce(r.calls, 0) AS calls, s.caller IS NOT NULL AS static,
           multiIf(r.caller IS NULL, 'static only (never ran)', s.caller IS NULL, 'dynamic only',
                   'static and dynamic') AS status
    FROM (SELECT caller, callee, calls FROM runtime) AS r
    FULL OUTER JOIN (SELECT caller, callee FROM static) AS s ON r.caller = s.caller AND r.callee = s.callee
    SETTINGS join_use_nulls = 1
)
WHERE $__conditionalAll(startsWith(caller, concat({module:String}, ':')), $module)
  AND $__conditionalAll(status = {status:String}, $status)
  AND (status != 'static only (never ran)' OR caller IN (SELECT node_id FROM recorded))
ORDER BY status, calls DESC, caller, callee
LIMIT {limit:UInt32}
""", {"module": "", "status": ""})


def call_graph(store: Store, module: str = "", limit: int = 1000, status: str = "") -> QueryResult:
    """Runtime call edges (caller span -> callee span) next to the static CALL edges of the CPG:
    both, static only (never ran: dead here), dynamic only (dispatch the syntax does not show)."""
    return CALL_GRAPH.run(store, {"module": module, "limit": limit, "status": status})
