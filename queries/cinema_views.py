"""The cinema as SQL: frames, navigation, variables, call stack and source of one position of a
trace, for the front doors that cannot hold a :class:`~execscope.queries.cinema.Cinema` in memory
(the Grafana dashboards).

Positions are the cinema's: frames (calls, statements, branch arms, writes, returns, exceptions)
ordered by the recording's sequence numbers within one process, by (hybrid logical clock, sequence,
return flag) when the trace spans several processes; ``seq`` is the 0-based position in that order, the
same number ``execscope cinema --at`` and the HTML page use. A test checks these views against the
in-memory cinema (frames, step over/out, exceptions) and ``execscope query state-at`` position by
position.

Every statement is a :class:`~execscope.queries.dialect.SqlTemplate`: the store binds ``{trace:String}``
and ``{seq:UInt64}``; a dashboard turns them into its ``$trace`` and ``$seq`` variables.
"""

from __future__ import annotations

from execscope.queries.dialect import SqlTemplate
from execscope.storage.store import Store

EVENT_KINDS = ("execscope.line", "execscope.branch", "execscope.assign", "exception")


def frames_ctes(traces: str) -> str:
    """CTEs ``sp`` (the spans), ``multi``, ``depths`` (walking the span tree: the statement needs
    ``WITH RECURSIVE``), ``keys`` (every frame's ordering key), ``frames`` and ``lined`` (with
    positions, lines, functions, depths) of the traces selected by ``traces`` (SQL returning
    ``TraceId``). ClickHouse computes only the CTEs a statement uses: positions alone need ``keys``."""
    return f"""
sp AS (
    SELECT TraceId, SpanId AS span_id, ParentSpanId AS parent, NodeId AS node_id, CodeVersion AS code_version,
           SpanAttributes['code.function.name'] AS function, SpanAttributes['code.file.path'] AS file,
           toUInt32OrZero(SpanAttributes['code.line.number']) AS def_line,
           mapApply((k, v) -> (substring(k, 15), v),
                    mapFilter((k, v) -> startsWith(k, 'execscope.arg.'), SpanAttributes)) AS args,
           Seq AS s0, SeqEnd AS s1, Hlc AS t0, HlcEnd AS t1,
           fromUnixTimestamp64Nano(toInt64(toUnixTimestamp64Nano(Timestamp) + Duration)) AS end_ts,
           StatusCode = 'STATUS_CODE_ERROR' AS failed, Timestamp AS start,
           SpanAttributes['execscope.return.value'] AS returned, ResourceAttributes['process.pid'] AS pid,
           ResourceAttributes['host.name'] AS host
    FROM otel_traces
    WHERE TraceId IN ({traces}) AND NodeId != '' AND length(SpanId) = 16
),
multi AS (SELECT TraceId, toUInt8(uniqExact(host, pid) > 1) AS multi FROM sp GROUP BY TraceId),
depths AS (
    SELECT TraceId, span_id, toUInt32(0) AS depth FROM sp
    WHERE (TraceId, parent) NOT IN (SELECT TraceId, span_id FROM sp)
    UNION ALL
    SELECT sp.TraceId, sp.span_id, depths.depth + 1 FROM sp
    INNER JOIN depths ON sp.TraceId = depths.TraceId AND sp.parent = depths.span_id
),
keys AS (
    SELECT sp.TraceId AS TraceId, 'call' AS kind, span_id, if(m.multi, t0, 0) AS k0, s0 AS k1, toUInt8(0) AS k2,
           start AS ts, node_id, def_line AS line_raw, '' AS var, '' AS value
    FROM sp INNER JOIN multi AS m ON m.TraceId = sp.TraceId
    UNION ALL
    SELECT sp.TraceId, 'return', span_id, if(m.multi, t1, 0), s1, m.multi,
           end_ts, node_id, 0, '', returned
    FROM sp INNER JOIN multi AS m ON m.TraceId = sp.TraceId WHERE NOT failed
    UNION ALL
    SELECT e.TraceId, multiIf(e.EventName = 'execscope.line', 'line', e.EventName = 'execscope.branch', 'branch',
                              e.EventName = 'execscope.assign', 'assign', 'exception'),
           e.SpanId, if(m.multi, e.Hlc, 0), e.Seq, 0, e.Timestamp, e.NodeId,
           e.LineNumber,
           if(e.EventName = 'exception', e.Attributes['exception.type'], e.VarName),
           if(e.EventName = 'exception', e.Attributes['exception.message'], e.VarValue)
    FROM execscope_events AS e INNER JOIN multi AS m ON m.TraceId = e.TraceId
    WHERE e.TraceId IN ({traces}) AND e.EventName IN {EVENT_KINDS!r}
),
frames AS (
    SELECT keys.TraceId AS TraceId, keys.kind AS kind, keys.span_id AS span_id, keys.k0 AS k0, keys.k1 AS k1,
           keys.k2 AS k2, keys.ts AS ts, keys.node_id AS node_id, keys.var AS var, keys.value AS value,
           toUInt64(row_number() OVER (PARTITION BY keys.TraceId ORDER BY keys.k0, keys.k1, keys.k2) - 1) AS seq,
           if(keys.line_raw > 0 OR keys.kind IN ('call', 'return'), keys.line_raw, coalesce(n.line, 0)) AS own_line,
           coalesce(sp.function, '') AS function, coalesce(sp.file, '') AS file,
           coalesce(sp.code_version, '') AS code_version, coalesce(sp.node_id, '') AS function_node,
           coalesce(d.depth, 0) AS depth
    FROM keys
    LEFT JOIN sp ON sp.TraceId = keys.TraceId AND sp.span_id = keys.span_id
    LEFT JOIN depths AS d ON d.TraceId = keys.TraceId AND d.span_id = keys.span_id
    LEFT JOIN (SELECT node_id, code_version, any(line) AS line FROM cpg_nodes
               WHERE code_version IN (SELECT code_version FROM sp) GROUP BY node_id, code_version) AS n
        ON n.node_id = keys.node_id AND n.code_version = sp.code_version
    SETTINGS join_use_nulls = 1
),
lined AS (
    SELECT *, if(own_line > 0 AND kind != 'return', own_line,
                 coalesce(last_value(if(kind IN ('line', 'call') AND own_line > 0, own_line, NULL))
                          OVER (PARTITION BY TraceId, span_id ORDER BY seq
                                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)) AS line
    FROM frames
)"""


ONE_TRACE = "SELECT {trace:String}"

POSITIONS = """positions AS (
    SELECT *, toUInt64(row_number() OVER (PARTITION BY TraceId ORDER BY k0, k1, k2) - 1) AS seq FROM keys
)"""
"""Frame positions from the keys alone (no span details, depths or source lines): what navigation,
the variables and the stack need."""

SOURCE_LINE = ("if(line > 0, arrayElement(splitByChar('\\n', coalesce(src.source, '')), toInt64(line)), '') AS source")
SOURCES = ("LEFT JOIN (SELECT code_version, any(source) AS source FROM cpg_sources GROUP BY code_version) AS src "
           "ON src.code_version = lined.code_version")

# A frame's line of text in the frame list: what it did.
WHAT = """multiIf(kind = 'assign', concat(var, ' = ', value), kind = 'return', concat('return ', value),
                 kind = 'exception', concat('raise ', var, if(value != '', concat(': ', value), '')),
                 kind = 'branch', concat('branch ', arrayElement(splitByChar(':', node_id), -1)),
                 kind = 'call', concat('call ', function), '')"""

FRAMES_AROUND = SqlTemplate(f"""
WITH RECURSIVE {frames_ctes(ONE_TRACE)}
SELECT seq, if(seq = {{seq:UInt64}}, '▶', '') AS here, kind, function, line, {SOURCE_LINE}, {WHAT} AS what,
       var, value, depth, lined.node_id AS node_id, function_node, span_id, ts AS timestamp, TraceId AS trace_id
FROM lined {SOURCES}
WHERE seq BETWEEN toUInt64(greatest(toInt64({{seq:UInt64}}) - {{before:UInt32}}, 0))
              AND {{seq:UInt64}} + {{after:UInt32}}
ORDER BY seq
SETTINGS join_use_nulls = 1
""", {"before": 10, "after": 20})
"""The frames around position ``seq`` of ``trace`` (``here`` marks it): seq, kind, function, line,
source, what it did (value written, returned or raised)."""

# Positions a viewer's keys lead to from ``seq`` (the terminal viewer's rules: Cinema.step_over,
# step_out, find(kind='exception')); NULL where there is none. One aggregate over the positions,
# given the frame there (a scalar: ClickHouse evaluates a CTE again wherever it is used).
NAVIGATION = SqlTemplate(f"""
WITH RECURSIVE {frames_ctes(ONE_TRACE)},
{POSITIONS},
(SELECT tuple(seq, span_id) FROM positions
 WHERE seq = least({{seq:UInt64}}, (SELECT toUInt64(count() - 1) FROM positions))) AS here
SELECT p AS position, last, if(p > 0, p - 1, NULL) AS back, if(p < last, p + 1, NULL) AS forward,
       if(returned IS NOT NULL, least(returned + 1, last),
          if(raised IS NOT NULL, least(raised + 1, last), NULL)) AS out,
       if(called IS NOT NULL, greatest(toInt64(called) - 1, 0), NULL) AS out_back,
       coalesce(later, out) AS over, coalesce(earlier, out_back) AS over_back,
       exc_after AS next_exception, exc_before AS prev_exception
FROM (
    SELECT here.1 AS p, max(seq) AS last,
           minIfOrNull(seq, span_id = here.2 AND seq > p) AS later,
           maxIfOrNull(seq, span_id = here.2 AND seq < p) AS earlier,
           minIfOrNull(seq, span_id = here.2 AND kind = 'call') AS called,
           minIfOrNull(seq, span_id = here.2 AND kind = 'return') AS returned,
           minIfOrNull(seq, span_id = here.2 AND kind = 'exception' AND seq > p) AS raised,
           minIfOrNull(seq, kind = 'exception' AND seq > p) AS exc_after,
           maxIfOrNull(seq, kind = 'exception' AND seq < p) AS exc_before
    FROM positions
)
""")
"""One row: ``position``, ``last`` and where each key goes (``back``, ``forward``, ``over``,
``over_back``, ``out``, ``out_back``, ``next_exception``, ``prev_exception``)."""

# Calls alive at a position: started at or before it and not returned before it (a call that
# raised is alive until its end in time or sequence, as in Cinema._alive); for each, what it wrote up
# to that position and the last line it reached.
_ALIVE = """
(SELECT (seq, k0, k1) FROM positions WHERE seq = {seq:UInt64}) AS here,
per_span AS (
    SELECT span_id, minIf(seq, kind = 'call') AS call_pos, minIf(seq, kind = 'return') AS return_pos,
           countIf(kind = 'return') > 0 AS returned,
           argMaxIf(line_raw, seq, kind IN ('line', 'call') AND line_raw > 0 AND seq <= here.1) AS line,
           arraySort(w -> w.4, groupArrayIf((node_id, var, value, seq), kind = 'assign' AND seq <= here.1)) AS writes
    FROM positions WHERE span_id IN (SELECT span_id FROM sp) GROUP BY span_id
),
alive AS (
    SELECT sp.span_id AS span_id, sp.function AS function, sp.node_id AS node_id, sp.args AS args,
           sp.code_version AS code_version, d.depth AS depth, ps.call_pos AS call_pos, ps.line AS line,
           ps.writes AS writes
    FROM sp INNER JOIN multi AS m ON m.TraceId = sp.TraceId
    INNER JOIN depths AS d ON d.span_id = sp.span_id
    INNER JOIN per_span AS ps ON ps.span_id = sp.span_id
    WHERE ps.call_pos <= here.1
      AND if(ps.returned, ps.return_pos >= here.1, if(m.multi = 1, sp.t1 >= here.2, sp.s1 >= here.3))
)"""

# A class body running inline in a function binds class attributes: shown as Class.name
# (cinema.variable_label); w is (target node id, name, value, position).
_LABEL = """w -> if(length(splitByChar(':', w.1)) < 3 OR splitByChar(':', w.1)[2] = ''
                   OR splitByChar(':', w.1)[2] = substring(node_id, position(node_id, ':') + 1),
                   w.2, concat(arrayElement(splitByChar('.', splitByChar(':', w.1)[2]), -1), '.', w.2))"""

STATE_AT = SqlTemplate(f"""
WITH RECURSIVE {frames_ctes(ONE_TRACE)},
{POSITIONS},
{_ALIVE}
SELECT depth, function, span_id, tupleElement(nv, 1) AS variable, tupleElement(nv, 2) AS value
FROM (
    SELECT depth, function, span_id,
           arrayReverse(arrayMap({_LABEL}, writes)) AS labels, arrayReverse(arrayMap(w -> w.3, writes)) AS values,
           arrayFilter((l, i) -> indexOf(labels, l) = i, labels, arrayEnumerate(labels)) AS written,
           arrayMap(l -> values[indexOf(labels, l)], written) AS written_values,
           arrayFilter(k -> NOT has(written, k), mapKeys(args)) AS given,
           arrayConcat(arrayZip(written, written_values), arrayMap(k -> (k, args[k]), given)) AS all_vars,
           if(empty(all_vars), [('', '')], all_vars) AS vars
    FROM alive
)
ARRAY JOIN vars AS nv
ORDER BY depth, span_id, variable
""")
"""Variables of every call alive at position ``seq`` (outermost first): the arguments, then the
last value written up to and including that frame; a live call without variables is one row with
an empty ``variable``."""

STACK_AT = SqlTemplate(f"""
WITH RECURSIVE {frames_ctes(ONE_TRACE)},
{POSITIONS},
{_ALIVE}
SELECT a.depth AS depth, a.function AS function, a.line AS line,
       if(a.line > 0, arrayElement(splitByChar('\\n', coalesce(src.source, '')), toInt64(a.line)), '') AS source,
       a.call_pos AS seq, a.span_id AS span_id
FROM alive AS a
LEFT JOIN (SELECT code_version, any(source) AS source FROM cpg_sources GROUP BY code_version) AS src
    ON src.code_version = a.code_version
ORDER BY depth DESC
SETTINGS join_use_nulls = 1
""")
"""The call stack at position ``seq``, innermost first: each live call's function, the line it is
at and that line's text, and ``seq``, the position of the call."""


def line_heat(prefix: str, target: str, where: str) -> str:
    """Statement: every line of one function's source with how often it ran in spans of that
    function matching ``where`` (a condition on columns ``otel_traces`` and ``execscope_events``
    share), ``here`` marking one line. ``target``: SQL of one row (function node id, code version,
    line to mark), read once as a scalar; ``prefix``: ``WITH`` and CTEs it needs, ending in a comma."""
    return f"""
{prefix}
({target}) AS fn,
span_range AS (SELECT any(line) AS first, any(end_line) AS last FROM cpg_nodes
               WHERE node_id = fn.1 AND code_version = fn.2),
text AS (SELECT splitByChar('\\n', any(source)) AS lines FROM cpg_sources WHERE code_version = fn.2),
hits AS (
    SELECT LineNumber AS line, count() AS executions FROM execscope_events
    WHERE EventName = 'execscope.line' AND {where}
      AND (TraceId, SpanId) IN (SELECT TraceId, SpanId FROM otel_traces
                                WHERE NodeId = fn.1 AND CodeVersion = fn.2 AND {where})
    GROUP BY line
)
SELECT ls.l AS line, if(ls.l = fn.3, '▶', '') AS here, arrayElement((SELECT lines FROM text), ls.l) AS code,
       coalesce(h.executions, 0) AS executions
FROM (SELECT arrayJoin(range(toUInt32(first), toUInt32(last) + 1)) AS l FROM span_range) AS ls
LEFT JOIN hits AS h ON h.line = ls.l
WHERE ls.l > 0
ORDER BY line
SETTINGS join_use_nulls = 1
"""


SOURCE_AT = SqlTemplate(line_heat(
    f"WITH RECURSIVE {frames_ctes(ONE_TRACE)},",
    "SELECT (function_node, code_version, line) FROM lined WHERE seq = {seq:UInt64}", "TraceId = {trace:String}"))
"""The source of the function running at position ``seq`` (the line there marked ``▶``), with how
often each line ran in this trace."""

TRACE_SPANS = SqlTemplate("""
SELECT TraceId AS traceID, SpanId AS spanID, ParentSpanId AS parentSpanID, ServiceName AS serviceName,
       SpanName AS operationName, multiply(toUnixTimestamp64Nano(Timestamp), 0.000001) AS startTime,
       multiply(Duration, 0.000001) AS duration,
       arrayMap(key -> map('key', key, 'value', SpanAttributes[key]), mapKeys(SpanAttributes)) AS tags,
       arrayMap(key -> map('key', key, 'value', ResourceAttributes[key]), mapKeys(ResourceAttributes)) AS serviceTags,
       if(StatusCode IN ('Error', 'STATUS_CODE_ERROR'), 2, 0) AS statusCode, StatusMessage AS statusMessage,
       SpanKind AS kind,
       arrayMap((name, timestamp, attributes) -> tuple(name, toString(toUnixTimestamp64Milli(timestamp)),
                    arrayMap(key -> map('key', key, 'value', attributes[key]), mapKeys(attributes)))
                    ::Tuple(name String, timestamp String, fields Array(Map(String, String))),
                arraySlice(Events.Name, 1, {max_logs:UInt32}), arraySlice(Events.Timestamp, 1, {max_logs:UInt32}),
                arraySlice(Events.Attributes, 1, {max_logs:UInt32})) AS logs
FROM otel_traces
WHERE TraceId = {trace:String}
ORDER BY Timestamp
LIMIT 10000
""", {"max_logs": 1000})
"""One trace for Grafana's trace view (the columns the ClickHouse plugin's trace queries give it),
statement, branch, assignment and exception events as each span's logs (at most ``max_logs``).
Needs only the OpenTelemetry Collector exporter's columns."""


NODE_CODES = SqlTemplate("""
SELECT node_id, any(code) FROM cpg_nodes WHERE node_id IN {ids:Array(String)} GROUP BY node_id
""")


def node_codes(store: Store, node_ids: list[str]) -> dict[str, str]:
    """Source text of each node (its first line, as the CPG stores it): what Cinema.find(text=...)
    searches besides values and variable names."""
    out: dict[str, str] = {}
    for start in range(0, len(node_ids), 5000):
        out.update(NODE_CODES.run(store, {"ids": node_ids[start:start + 5000]}).rows)
    return out
