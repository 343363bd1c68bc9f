"""The cinema as SQL: frames, navigation, variables, call stack and source of one position of a
trace, for the front doors that cannot hold a :class:`~execscope.queries.cinema.Cinema` in memory
(the Grafana dashboards) and for ``execscope query state-at``.

Positions are the cinema's: frames (calls, statements, branch arms, writes, returns, exceptions)
ordered by the recording's sequence numbers within one process, by (timestamp, sequence, return
flag) when the trace spans several processes; ``seq`` is the 0-based position in that order, the
same number ``execscope cinema --at`` and the HTML page use. A test checks these views against the
in-memory cinema frame by frame.

Every statement is a :class:`~execscope.queries.dialect.SqlTemplate`: the store binds ``{trace:String}``
and ``{seq:UInt64}``; a dashboard turns them into its ``$trace`` and ``$seq`` variables.
"""

from __future__ import annotations

from execscope.queries.dialect import SqlTemplate

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
           Seq AS s0, SeqEnd AS s1, toUInt64(toUnixTimestamp64Nano(Timestamp)) AS t0, t0 + Duration AS t1,
           StatusCode = 'STATUS_CODE_ERROR' AS failed, Timestamp AS start,
           SpanAttributes['execscope.return.value'] AS returned, ResourceAttributes['process.pid'] AS pid
    FROM otel_traces
    WHERE TraceId IN ({traces}) AND NodeId != '' AND length(SpanId) = 16
),
multi AS (SELECT TraceId, toUInt8(uniqExact(pid) > 1) AS multi FROM sp GROUP BY TraceId),
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
           fromUnixTimestamp64Nano(toInt64(t1)), node_id, 0, '', returned
    FROM sp INNER JOIN multi AS m ON m.TraceId = sp.TraceId WHERE NOT failed
    UNION ALL
    SELECT e.TraceId, multiIf(e.EventName = 'execscope.line', 'line', e.EventName = 'execscope.branch', 'branch',
                              e.EventName = 'execscope.assign', 'assign', 'exception'),
           e.SpanId, if(m.multi, toUInt64(toUnixTimestamp64Nano(e.Timestamp)), 0), e.Seq, 0, e.Timestamp, e.NodeId,
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
    SELECT TraceId, kind, k0, k1, toUInt64(row_number() OVER (PARTITION BY TraceId ORDER BY k0, k1, k2) - 1) AS seq
    FROM keys
)"""
"""Frame positions from the keys alone (no span details, depths or lines)."""

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
       var, value, depth, lined.node_id AS node_id, span_id, ts AS timestamp, TraceId AS trace_id
FROM lined {SOURCES}
WHERE seq BETWEEN toUInt64(greatest(toInt64({{seq:UInt64}}) - {{before:UInt32}}, 0))
              AND {{seq:UInt64}} + {{after:UInt32}}
ORDER BY seq
SETTINGS join_use_nulls = 1
""", {"before": 10, "after": 20})
"""The frames around position ``seq`` of ``trace`` (``here`` marks it): seq, kind, function, line,
source, what it did (value written, returned or raised)."""

# Positions a viewer's keys lead to from ``seq`` (the terminal viewer's rules: Cinema.step_over,
# step_out, find(kind='exception')); NULL where there is none.
NAVIGATION = SqlTemplate(f"""
WITH RECURSIVE {frames_ctes(ONE_TRACE)},
here AS (SELECT seq, span_id, k0, k1 FROM lined WHERE seq = least({{seq:UInt64}}, (SELECT max(seq) FROM lined))),
span_frames AS (SELECT seq, kind FROM lined WHERE span_id = (SELECT span_id FROM here)),
bounds AS (
    SELECT (SELECT max(seq) FROM lined) AS last, (SELECT seq FROM here) AS p,
           (SELECT minOrNull(seq) FROM span_frames WHERE kind = 'call') AS call_pos,
           (SELECT minOrNull(seq) FROM span_frames WHERE kind = 'return') AS return_pos,
           (SELECT minOrNull(seq) FROM span_frames WHERE seq > p) AS next_in_call,
           (SELECT maxOrNull(seq) FROM span_frames WHERE seq < p) AS prev_in_call,
           (SELECT minOrNull(seq) FROM span_frames WHERE kind = 'exception' AND seq > p) AS raised_here,
           (SELECT minOrNull(seq) FROM lined WHERE kind = 'exception' AND seq > p) AS next_exc,
           (SELECT maxOrNull(seq) FROM lined WHERE kind = 'exception' AND seq < p) AS prev_exc
)
SELECT p AS position, last,
       if(p > 0, p - 1, NULL) AS back, if(p < last, p + 1, NULL) AS forward,
       if(return_pos IS NOT NULL, least(return_pos + 1, last),
          if(raised_here IS NOT NULL, least(raised_here + 1, last), NULL)) AS out,
       if(call_pos IS NOT NULL, greatest(toInt64(call_pos) - 1, 0), NULL) AS out_back,
       coalesce(next_in_call, out) AS over, coalesce(prev_in_call, out_back) AS over_back,
       next_exc AS next_exception, prev_exc AS prev_exception
FROM bounds
""")
"""One row: ``position``, ``last`` and where each key goes (``back``, ``forward``, ``over``,
``over_back``, ``out``, ``out_back``, ``next_exception``, ``prev_exception``)."""

# Calls alive at a position: started at or before it and not returned before it (a call that
# raised is alive until its end in time or sequence, as in Cinema._alive).
_ALIVE = """
here AS (SELECT seq, k0, k1 FROM lined WHERE seq = {seq:UInt64}),
ends AS (SELECT span_id, minIf(seq, kind = 'call') AS call_pos, minIf(seq, kind = 'return') AS return_pos,
                countIf(kind = 'return') > 0 AS returned
         FROM lined WHERE kind IN ('call', 'return') GROUP BY span_id),
alive AS (
    SELECT sp.span_id AS span_id, sp.function AS function, sp.node_id AS node_id, sp.args AS args,
           d.depth AS depth, e.call_pos AS call_pos
    FROM sp INNER JOIN multi AS m ON m.TraceId = sp.TraceId
    INNER JOIN depths AS d ON d.span_id = sp.span_id
    INNER JOIN ends AS e ON e.span_id = sp.span_id
    WHERE e.call_pos <= (SELECT seq FROM here)
      AND if(e.returned, e.return_pos >= (SELECT seq FROM here),
             if(m.multi = 1, sp.t1 >= (SELECT k0 FROM here), sp.s1 >= (SELECT k1 FROM here)))
)"""

# A class body running inline in a function binds class attributes: shown as Class.name
# (cinema.variable_label).
_LABEL = """if(length(splitByChar(':', w.node_id)) < 3 OR splitByChar(':', w.node_id)[2] = ''
              OR splitByChar(':', w.node_id)[2] = substring(a.node_id, position(a.node_id, ':') + 1),
              w.var, concat(arrayElement(splitByChar('.', splitByChar(':', w.node_id)[2]), -1), '.', w.var))"""

STATE_AT = SqlTemplate(f"""
WITH RECURSIVE {frames_ctes(ONE_TRACE)},
{_ALIVE},
written AS (
    SELECT a.span_id AS span_id, {_LABEL} AS variable, argMax(w.value, w.seq) AS value
    FROM lined AS w INNER JOIN alive AS a ON a.span_id = w.span_id
    WHERE w.kind = 'assign' AND w.seq <= (SELECT seq FROM here)
    GROUP BY span_id, variable
),
given AS (SELECT span_id, k AS variable, args[k] AS value FROM alive ARRAY JOIN mapKeys(args) AS k),
vars AS (
    SELECT span_id, variable, argMax(value, pri) AS value FROM (
        SELECT span_id, variable, value, 0 AS pri FROM given
        UNION ALL SELECT span_id, variable, value, 1 AS pri FROM written)
    GROUP BY span_id, variable
)
SELECT a.depth AS depth, a.function AS function, a.span_id AS span_id,
       coalesce(v.variable, '') AS variable, coalesce(v.value, '') AS value
FROM alive AS a LEFT JOIN vars AS v ON v.span_id = a.span_id
ORDER BY depth, span_id, variable
SETTINGS join_use_nulls = 1
""")
"""Variables of every call alive at position ``seq`` (outermost first): the arguments, then the
last value written up to and including that frame; a live call without variables is one row with
an empty ``variable``."""
