"""``cfg-violations``: observed transitions between nodes of one call that the stored CFG lacks.

ClickHouse finds every distinct consecutive pair of reported nodes inside one span (``line`` and
``branch`` events ordered by ``Seq``, a window function), with how often it happened and one trace
that shows it; spans that dropped events are left out (their sequence has holes). Python then checks
each pair against the stored CFG of the span's function and code version (:mod:`.cfg_check`): at
``--level branches`` a pair may be joined through statements, which report nothing at that level.
An empty result means the static CFG explains everything that was recorded.
"""

from __future__ import annotations

from typing import Any

from execscope.instrumentation.analysis.cfg_check import ScopeGraph, scope_graphs
from execscope.storage.store import QueryResult, Store

COLUMNS = ("code_version", "scope", "src", "dst", "level", "count", "example_trace", "reason")


def call_events_sql(events: str) -> str:
    """The events named in ``events`` (an SQL list of event names) of every call whose sequence is
    complete (its span dropped none), with the call's function (``scope``) and ``code_version``:
    the transitions cfg-violations checks and the path model (:mod:`.paths`) learns. Binds
    ``{trace:String}`` and ``{function:String}`` (empty: all)."""
    return f"""
SELECT e.TraceId AS TraceId, e.SpanId AS SpanId, e.NodeId AS NodeId, e.Seq AS Seq, e.EventName AS EventName,
       s.NodeId AS scope, s.CodeVersion AS code_version, s.ServiceName AS service, s.Seq AS call_seq
FROM (
    SELECT TraceId, SpanId, NodeId, Seq, EventName FROM execscope_events
    WHERE EventName IN ({events}) AND ({{trace:String}} = '' OR TraceId = {{trace:String}})
) AS e
INNER JOIN (
    SELECT TraceId, SpanId, NodeId, CodeVersion, ServiceName, Seq FROM otel_traces
    WHERE NodeId != '' AND SpanAttributes['execscope.dropped_events'] = ''
      AND ({{trace:String}} = '' OR TraceId = {{trace:String}})
      AND ({{function:String}} = '' OR NodeId = {{function:String}})
) AS s ON s.TraceId = e.TraceId AND s.SpanId = e.SpanId"""


PAIRS_SQL = f"""
SELECT code_version, scope, prev AS src, NodeId AS dst, statements, count() AS n, any(TraceId) AS example_trace
FROM (
    SELECT TraceId, NodeId, code_version, scope,
           lagInFrame(NodeId, 1, '') OVER (PARTITION BY TraceId, SpanId ORDER BY Seq
                                           ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS prev,
           max(EventName = 'execscope.line') OVER (PARTITION BY TraceId, SpanId) AS statements
    FROM ({call_events_sql("'execscope.line', 'execscope.branch'")})
)
WHERE prev != ''
GROUP BY code_version, scope, src, dst, statements
ORDER BY code_version, scope, src, dst
"""

CFG_SQL = """
SELECT code_version, properties['scope'] AS scope, src, dst FROM cpg_edges
WHERE kind = 'CFG' AND code_version IN {versions:Array(String)}
"""

ARMS_SQL = """
SELECT DISTINCT node_id FROM cpg_nodes
WHERE kind IN ('arm', 'except') AND code_version IN {versions:Array(String)}
"""


def cfg_violations(store: Store, trace: str = "") -> QueryResult:
    """Rows ``code_version, scope, src, dst, level, count, example_trace, reason`` (empty: sound)."""
    pairs = store.query(PAIRS_SQL, parameters={"trace": trace, "function": ""}).rows
    versions = sorted({r[0] for r in pairs})
    graphs: dict[tuple[str, str], ScopeGraph] = {}
    if versions:
        edges = store.query(CFG_SQL, parameters={"versions": versions}).rows
        arms = [r[0] for r in store.query(ARMS_SQL, parameters={"versions": versions}).rows]
        by_version: dict[str, list[tuple[str, str, str]]] = {}
        for version, scope, src, dst in edges:
            by_version.setdefault(version, []).append((scope, src, dst))
        for version, version_edges in by_version.items():
            for scope, graph in scope_graphs(version_edges, arms).items():
                graphs[(version, scope)] = graph
    rows: list[tuple[Any, ...]] = []
    for version, scope, src, dst, statements, n, example in pairs:
        g = graphs.get((version, scope))
        level = "statements" if statements else "branches"
        if g is None:
            rows.append((version, scope, src, dst, level, n, example, "no CFG stored for this function version"))
        elif not g.explains(src, dst, bool(statements)):
            rows.append((version, scope, src, dst, level, n, example, "transition missing from the CFG"))
    return QueryResult(list(COLUMNS), rows)
