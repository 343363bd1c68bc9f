"""``insights``: patterns found on the code property graph and confirmed by recorded runs.

Each finder reads the CPG (``cpg_nodes``, ``cpg_functions``, ``cpg_edges``, built from the parse the
rewriter used) for the places where a pattern *can* occur, then the recording (``otel_traces``,
``execscope_events``) for whether it *did*, and returns one row per confirmed place with evidence: a
trace, the recorded sequence number (``seq``: ``execscope.seq``, the order within the trace) of the
occurrence, the file and line, a count and a sentence saying what happened.

Patterns (and the recording level each needs):

* ``swallowed-exception`` (branches): a broad handler (``except:``, ``except Exception``,
  ``except BaseException``) with no ``raise`` in its body was entered.
* ``blocking-in-async`` (statements): a blocking call (``time.sleep``, ``open``, ``input``, socket,
  requests, urllib, subprocess, ``os.system``/``os.wait*``), not awaited, inside ``async def``
  whose statement held the thread (no other event of the trace recorded; another thread's events
  would shorten the gap, so the figure is a lower bound) for more than ``blocking_ms``.
* ``repeated-call`` (statements): a call inside a loop body, to a function the CPG resolves (a CALL
  edge), executed more than ``repeat`` times in one trace (the N+1 pattern).
* ``mutable-default-changed`` (functions; call sites need statements): a parameter whose default is a
  list/dict/set display or constructor, recorded at entry with different values in calls that did not
  pass it (call site from the caller's statement; calls whose site is unknown are left out).
* ``deep-recursion`` (functions): a function the CPG shows calling itself, with more than ``depth``
  of its calls nested in one chain of a trace.
* ``never-executed`` (functions; arms need branches): functions and branch arms / handlers of a
  recorded code version that no recorded run executed (arms only in versions whose runs reported
  branches, and only in functions that ran).
* ``complexity-hot-spot`` (functions): cyclomatic complexity >= ``complexity`` and self time >=
  ``hot_ms``, ranked by cyclomatic x self time.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from execscope.storage.store import QueryResult, Store

COLUMNS = ("pattern", "node_id", "file", "line", "count", "trace_id", "seq", "detail")

PATTERNS = ("swallowed-exception", "blocking-in-async", "repeated-call", "mutable-default-changed",
            "deep-recursion", "never-executed", "complexity-hot-spot")


@dataclass(frozen=True, slots=True)
class Insight:
    pattern: str
    node_id: str
    file: str
    line: int
    count: int
    trace_id: str
    seq: int
    detail: str

    def row(self) -> tuple[Any, ...]:
        return (self.pattern, self.node_id, self.file, self.line, self.count, self.trace_id, self.seq,
                self.detail)


@dataclass(frozen=True, slots=True)
class Thresholds:
    repeat: int = 10
    depth: int = 20
    blocking_ms: float = 100.0
    complexity: int = 10
    hot_ms: float = 50.0


# The CPG of every code version that has recorded spans (one row per node).
NODES_SQL = """
SELECT node_id, code_version, kind, name, file, line, parent_id, code FROM cpg_nodes FINAL
WHERE code_version IN (SELECT DISTINCT CodeVersion FROM otel_traces WHERE NodeId != '')
"""

ASYNC_SQL = """
SELECT DISTINCT code_version, node_id FROM cpg_functions FINAL WHERE is_async
  AND code_version IN (SELECT DISTINCT CodeVersion FROM otel_traces WHERE NodeId != '')
"""

CALL_EDGES_SQL = """
SELECT DISTINCT code_version, src, dst FROM cpg_edges FINAL
WHERE kind = 'CALL' AND code_version IN (SELECT DISTINCT CodeVersion FROM otel_traces WHERE NodeId != '')
"""


@dataclass(slots=True)
class _Node:
    node_id: str
    kind: str
    name: str
    file: str
    line: int
    parent_id: str
    code: str


class _Cpg:
    """The CPG nodes of one code version with the few walks the finders need."""

    def __init__(self) -> None:
        self.nodes: dict[str, _Node] = {}
        self.children: dict[str, list[str]] = defaultdict(list)
        self.calls: dict[str, set[str]] = defaultdict(set)  # call node -> resolved callees
        self.is_async: set[str] = set()  # async def functions (cpg_functions.is_async)

    def ancestors(self, node_id: str) -> Iterable[_Node]:
        """Enclosing nodes, nearest first, up to (and including) the enclosing function or module."""
        parent = self.nodes[node_id].parent_id if node_id in self.nodes else ""
        while parent and parent in self.nodes:
            node = self.nodes[parent]
            yield node
            if node.kind in _SCOPES:
                return
            parent = node.parent_id

    def scope(self, node_id: str) -> _Node | None:
        for node in self.ancestors(node_id):
            if node.kind in _SCOPES:
                return node
        return None

    def descendants(self, node_id: str) -> Iterable[_Node]:
        """Nodes inside ``node_id``, not entering nested functions, lambdas or classes."""
        stack = list(self.children.get(node_id, ()))
        while stack:
            node = self.nodes[stack.pop()]
            yield node
            if node.kind not in _SCOPES and node.kind != "class":
                stack.extend(self.children.get(node.node_id, ()))


_SCOPES = frozenset({"function", "lambda", "module"})
_BROAD = re.compile(r"^except\s*(?::|\(?\s*(?:builtins\.)?(?:Exception|BaseException)\s*[,):\s]|"
                    r"\([^)]*\b(?:Exception|BaseException)\b[^)]*\))")
_BLOCKING = re.compile(r"^(?:time\.sleep|open|input|os\.system|os\.wait\w*|os\.read|socket\..*|"
                       r"subprocess\..*|requests\..*|urllib\.request\..*|http\.client\..*|shutil\..*)$")
_LOOPS = frozenset({"for", "while"})
_EXPRESSIONS = frozenset({"call", "target", "arm", "lambda", "comprehension", "await", "bool_op", "if_exp",
                          "walrus", "yield"})


def _load_cpg(store: Store) -> dict[str, _Cpg]:
    cpgs: dict[str, _Cpg] = defaultdict(_Cpg)
    for node_id, version, kind, name, file, line, parent, code in store.query(NODES_SQL).rows:
        cpg = cpgs[version]
        cpg.nodes[node_id] = _Node(node_id, kind, name, file, int(line), parent, code)
    for cpg in cpgs.values():
        for node in cpg.nodes.values():
            if node.parent_id:
                cpg.children[node.parent_id].append(node.node_id)
    for version, src, dst in store.query(CALL_EDGES_SQL).rows:
        cpgs[version].calls[src].add(dst)
    for version, node_id in store.query(ASYNC_SQL).rows:
        cpgs[version].is_async.add(node_id)
    return cpgs


def insights(store: Store, repeat: int = 10, depth: int = 20, blocking_ms: float = 100.0,
             complexity: int = 10, hot_ms: float = 50.0, pattern: str = "") -> QueryResult:
    """Rows ``pattern, node_id, file, line, count, trace_id, seq, detail``, grouped by pattern.

    ``pattern`` (one of :data:`PATTERNS`, empty for all) limits the finders run; the thresholds are
    strict (``repeat`` calls exactly is not reported, ``repeat + 1`` is). Raises ValueError for an
    unknown pattern.
    """
    if pattern and pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r} (known: {', '.join(PATTERNS)})")
    limits = Thresholds(repeat, depth, blocking_ms, complexity, hot_ms)
    cpgs = _load_cpg(store)
    finders: dict[str, Callable[[Store, dict[str, _Cpg], Thresholds], list[Insight]]] = {
        "swallowed-exception": _swallowed, "blocking-in-async": _blocking, "repeated-call": _repeated,
        "mutable-default-changed": _mutable_defaults, "deep-recursion": _recursion,
        "never-executed": _never_executed, "complexity-hot-spot": _hot_spots,
    }
    rows: list[tuple[Any, ...]] = []
    for name in PATTERNS:
        if not pattern or pattern == name:
            rows.extend(i.row() for i in finders[name](store, cpgs, limits))
    return QueryResult(list(COLUMNS), rows)


# -- swallowed exceptions ------------------------------------------------------------------------

# Each entry of the given handlers with the exception it caught: the latest exception event of the
# same call before the handler's branch event (ASOF join on the sequence number).
HANDLERS_SQL = """
SELECT h.NodeId AS node, count() AS n, argMin(h.TraceId, h.Seq) AS trace_id, min(h.Seq) AS seq,
       groupUniqArray(8)(x.type) AS types
FROM (SELECT TraceId, SpanId, NodeId, Seq FROM execscope_events
      WHERE EventName = 'execscope.branch' AND NodeId IN {nodes:Array(String)}) AS h
ASOF LEFT JOIN (SELECT TraceId, SpanId, Seq, Attributes['exception.type'] AS type FROM execscope_events
                WHERE EventName = 'exception') AS x
    ON x.TraceId = h.TraceId AND x.SpanId = h.SpanId AND x.Seq < h.Seq
GROUP BY h.NodeId
"""


def _swallowed(store: Store, cpgs: dict[str, _Cpg], limits: Thresholds) -> list[Insight]:
    candidates: dict[str, _Node] = {}
    for cpg in cpgs.values():
        for node in cpg.nodes.values():
            if node.kind == "except" and _BROAD.match(node.code.strip()) and not any(
                    d.kind == "raise" for d in cpg.descendants(node.node_id)):
                candidates[node.node_id] = node
    if not candidates:
        return []
    out = []
    for node_id, n, trace, seq, types in store.query(HANDLERS_SQL, parameters={"nodes": sorted(candidates)}).rows:
        node = candidates[node_id]
        caught = ", ".join(sorted(t for t in types if t)) or "an exception"
        out.append(Insight("swallowed-exception", node_id, node.file, node.line, int(n), trace, int(seq),
                           f"{node.code.split('#')[0].strip()} swallowed {caught} (no re-raise)"))
    return out


# -- blocking calls in async functions -------------------------------------------------------------

# Each execution of the given statements, with the time until the next event of the trace (the next
# thing any code of that process recorded): how long the statement kept the thread.
HELD_SQL = """
SELECT NodeId, TraceId, Seq, held_ns FROM (
    SELECT NodeId, TraceId, Seq, EventName,
           toInt64(toUnixTimestamp64Nano(leadInFrame(Timestamp, 1, Timestamp) OVER w))
               - toInt64(toUnixTimestamp64Nano(Timestamp)) AS held_ns
    FROM execscope_events
    WHERE TraceId IN (SELECT DISTINCT TraceId FROM execscope_events WHERE NodeId IN {nodes:Array(String)})
    WINDOW w AS (PARTITION BY TraceId ORDER BY Seq ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING)
)
WHERE EventName = 'execscope.line' AND NodeId IN {nodes:Array(String)} AND held_ns > {min_ns:Int64}
ORDER BY NodeId, held_ns DESC
"""


def _callee(cpg: _Cpg, call: _Node) -> set[str]:
    """Dotted names of what a call calls: resolved CALL edges, else the call's own callee text."""
    resolved = {dst.replace(":", ".") for dst in cpg.calls.get(call.node_id, ())}
    return resolved or {call.code.split("(", 1)[0].strip()}


def _statement(cpg: _Cpg, call: _Node) -> _Node | None:
    """The statement a call belongs to (its nearest enclosing node that is not an expression part)."""
    for node in cpg.ancestors(call.node_id):
        if node.kind not in _EXPRESSIONS:
            return node if node.kind not in _SCOPES else None
    return None


def _blocking(store: Store, cpgs: dict[str, _Cpg], limits: Thresholds) -> list[Insight]:
    statements: dict[str, tuple[_Node, str]] = {}
    for cpg in cpgs.values():
        for call in cpg.nodes.values():
            if call.kind != "call":
                continue
            scope = cpg.scope(call.node_id)
            if scope is None or scope.node_id not in cpg.is_async:
                continue
            blocking = sorted(c for c in _callee(cpg, call) if _BLOCKING.match(c))
            statement = _statement(cpg, call)
            awaited = cpg.nodes.get(call.parent_id, call).kind == "await"  # returns an awaitable: not blocking
            if blocking and statement is not None and not awaited:
                statements[statement.node_id] = (statement, blocking[0])
    if not statements:
        return []
    held: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for node_id, trace, seq, ns in store.query(HELD_SQL, parameters={
            "nodes": sorted(statements), "min_ns": int(limits.blocking_ms * 1e6)}).rows:
        held[node_id].append((trace, int(seq), int(ns)))
    out = []
    for node_id, runs in held.items():
        statement, callee = statements[node_id]
        trace, seq, ns = runs[0]
        out.append(Insight("blocking-in-async", node_id, statement.file, statement.line, len(runs), trace, seq,
                           f"{callee}() held the event loop {ns / 1e6:.0f} ms in async def "
                           f"(> {limits.blocking_ms:g} ms)"))
    return out


# -- the same call repeated in a loop --------------------------------------------------------------

PER_TRACE_SQL = """
SELECT NodeId, TraceId, count() AS n, min(Seq) AS first_seq FROM execscope_events
WHERE EventName = 'execscope.line' AND NodeId IN {nodes:Array(String)}
GROUP BY NodeId, TraceId HAVING n > {repeat:UInt64}
ORDER BY NodeId, n DESC, TraceId
"""


def _repeated(store: Store, cpgs: dict[str, _Cpg], limits: Thresholds) -> list[Insight]:
    statements: dict[str, tuple[_Node, str]] = {}
    for cpg in cpgs.values():
        for call in cpg.nodes.values():
            if call.kind != "call" or not cpg.calls.get(call.node_id):
                continue
            if not any(a.kind in _LOOPS for a in cpg.ancestors(call.node_id)):
                continue
            statement = _statement(cpg, call)
            if statement is not None and statement.kind not in _LOOPS:
                statements.setdefault(statement.node_id, (statement, sorted(cpg.calls[call.node_id])[0]))
    if not statements:
        return []
    seen: set[str] = set()
    out = []
    for node_id, trace, n, seq in store.query(PER_TRACE_SQL, parameters={
            "nodes": sorted(statements), "repeat": limits.repeat}).rows:
        if node_id in seen:  # the trace with the most repetitions stands for the others
            continue
        seen.add(node_id)
        statement, callee = statements[node_id]
        out.append(Insight("repeated-call", node_id, statement.file, statement.line, int(n), trace, int(seq),
                           f"{callee.replace(':', '.')}() called {n} times in a loop in one trace "
                           f"(> {limits.repeat})"))
    return out


# -- mutable default arguments changed between calls ------------------------------------------------

SOURCES_SQL = """
SELECT code_version, source FROM cpg_sources FINAL WHERE code_version IN {versions:Array(String)}
"""

CALLS_OF_SQL = """
SELECT TraceId, SpanId, ParentSpanId, NodeId, CodeVersion, Seq, SpanAttributes FROM otel_traces
WHERE NodeId IN {nodes:Array(String)}
ORDER BY Timestamp, Seq
"""

# For each given call, the last statement its caller reported before the call started.
CALL_SITES_SQL = """
SELECT c.SpanId, argMax(e.NodeId, e.Seq) FROM execscope_events AS e
INNER JOIN (SELECT TraceId, SpanId, ParentSpanId, Seq FROM otel_traces WHERE SpanId IN {spans:Array(String)}) AS c
    ON e.TraceId = c.TraceId AND e.SpanId = c.ParentSpanId
WHERE e.EventName = 'execscope.line' AND e.Seq < c.Seq
GROUP BY c.SpanId
"""

_MUTABLE_CALLS = frozenset({"list", "dict", "set", "bytearray", "defaultdict", "OrderedDict", "deque",
                            "Counter", "collections.defaultdict", "collections.OrderedDict",
                            "collections.deque", "collections.Counter"})


def _mutable_params(source: str) -> dict[tuple[str, int], list[tuple[int, str, bool]]]:
    """(function name, def line) -> [(position, parameter, keyword-only)] of parameters whose
    default is a mutable display or constructor call."""
    found: dict[tuple[str, int], list[tuple[int, str, bool]]] = {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return found
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        positional = [*fn.args.posonlyargs, *fn.args.args]
        pairs: list[tuple[int, ast.arg, ast.expr | None, bool]] = []
        first = len(positional) - len(fn.args.defaults)
        pairs += [(first + i, positional[first + i], d, False) for i, d in enumerate(fn.args.defaults)]
        pairs += [(-1, a, d, True) for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults, strict=True)]
        params = [(pos, arg.arg, kwonly) for pos, arg, default, kwonly in pairs
                  if default is not None and _is_mutable(default)]
        if params:
            line = fn.decorator_list[0].lineno if fn.decorator_list else fn.lineno
            found[(fn.name, fn.lineno)] = params
            found[(fn.name, line)] = params
    return found


def _is_mutable(node: ast.expr) -> bool:
    if isinstance(node, (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)):
        return True
    return isinstance(node, ast.Call) and ast.unparse(node.func) in _MUTABLE_CALLS


def _passes(call_code: str, position: int, name: str, method: bool) -> bool | None:
    """Whether a call expression passes parameter ``name`` (at ``position``, -1 keyword-only; a
    ``method`` called as ``obj.name(...)`` gets its first parameter from the object); None when it
    cannot be told (``*args`` / ``**kwargs`` or unparsable text)."""
    try:
        call = ast.parse(call_code.strip(), mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(call, ast.Call):
        return None
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return None
    positional = len(call.args) + (1 if method and isinstance(call.func, ast.Attribute) else 0)
    return (0 <= position < positional) or any(k.arg == name for k in call.keywords)


def _mutable_defaults(store: Store, cpgs: dict[str, _Cpg], limits: Thresholds) -> list[Insight]:
    versions = sorted(cpgs)
    if not versions:
        return []
    params: dict[str, tuple[_Node, list[tuple[int, str, bool]]]] = {}
    for version, source in store.query(SOURCES_SQL, parameters={"versions": versions}).rows:
        cpg = cpgs[version]
        found = _mutable_params(source)
        for node in cpg.nodes.values():
            if node.kind == "function" and (node.name, node.line) in found:
                params[node.node_id] = (node, found[(node.name, node.line)])
    if not params:
        return []
    calls = store.query(CALLS_OF_SQL, parameters={"nodes": sorted(params)}).rows
    sites = dict(store.query(CALL_SITES_SQL, parameters={"spans": [c[1] for c in calls]}).rows) if calls else {}
    out = []
    for fn_id, (fn, fn_params) in params.items():
        for position, name, _kwonly in fn_params:
            values: list[tuple[str, int, str]] = []  # (trace, seq, value at entry) of defaulted calls
            for trace, span, _parent, node_id, version, seq, attrs in calls:
                key = f"execscope.arg.{name}"
                if node_id != fn_id or key not in attrs:
                    continue
                site = sites.get(span)
                if version not in cpgs or not site:
                    continue
                graph = cpgs[version]
                method = graph.nodes.get(fn.parent_id, fn).kind == "class"
                passed = {_passes(c.code, position, name, method) for c in _calls_in(graph, site, fn_id)}
                if passed == {False}:
                    values.append((trace, int(seq), attrs[key]))
            changed = next((v for v in values if v[2] != values[0][2]), None)
            if changed is None:
                continue
            out.append(Insight("mutable-default-changed", fn_id, fn.file, fn.line, len(values), changed[0],
                               changed[1], f"default of {name!r} was {values[0][2]} at its first defaulted call "
                               f"and {changed[2]} at a later one ({len({v[2] for v in values})} distinct values)"))
    return out


def _calls_in(cpg: _Cpg, statement: str, callee: str) -> list[_Node]:
    """Call nodes under ``statement`` that the CPG resolves to ``callee``."""
    return [d for d in cpg.descendants(statement) if d.kind == "call" and callee in cpg.calls.get(d.node_id, ())]


# -- deep recursion ---------------------------------------------------------------------------------

SPANS_OF_SQL = """
SELECT TraceId, SpanId, ParentSpanId, NodeId, Seq FROM otel_traces WHERE NodeId IN {nodes:Array(String)}
"""


def _recursion(store: Store, cpgs: dict[str, _Cpg], limits: Thresholds) -> list[Insight]:
    recursive: dict[str, _Node] = {}
    for cpg in cpgs.values():
        for call_id, callees in cpg.calls.items():
            scope = cpg.scope(call_id) if call_id in cpg.nodes else None
            if scope is not None and scope.node_id in callees:
                recursive[scope.node_id] = scope
    if not recursive:
        return []
    spans: dict[tuple[str, str], tuple[str, str, int]] = {}
    for trace, span, parent, node_id, seq in store.query(SPANS_OF_SQL, parameters={"nodes": sorted(recursive)}).rows:
        spans[(trace, span)] = (parent, node_id, int(seq))
    memo: dict[tuple[str, str], int] = {}

    def depth(key: tuple[str, str]) -> int:
        """How many calls of the same function nest this one, itself included."""
        path = []
        at = key
        while True:
            path.append(at)
            parent, node_id, _ = spans[at]
            up = (at[0], parent)
            if up not in spans or spans[up][1] != node_id:
                base = 0
                break
            if up in memo:
                base = memo[up]
                break
            at = up
        for k in reversed(path):
            base += 1
            memo[k] = base
        return memo[key]

    deepest: dict[str, tuple[int, str, int]] = {}
    for key, (_, node_id, seq) in spans.items():
        d = depth(key)
        if d > deepest.get(node_id, (0, "", 0))[0]:
            deepest[node_id] = (d, key[0], seq)
    out = []
    for node_id, (d, trace, seq) in sorted(deepest.items()):
        if d > limits.depth:
            fn = recursive[node_id]
            out.append(Insight("deep-recursion", node_id, fn.file, fn.line, d, trace, seq,
                               f"{d} nested calls of itself (> {limits.depth}); seq is the deepest call"))
    return out


# -- never executed ---------------------------------------------------------------------------------

RAN_SQL = """
SELECT DISTINCT NodeId FROM otel_traces WHERE NodeId != ''
"""

# Code versions whose runs reported branch events (recorded at --level branches or finer).
BRANCHED_SQL = """
SELECT DISTINCT s.CodeVersion FROM otel_traces AS s
INNER JOIN (SELECT DISTINCT TraceId, SpanId FROM execscope_events WHERE EventName = 'execscope.branch') AS e
    ON e.TraceId = s.TraceId AND e.SpanId = s.SpanId
"""

TAKEN_SQL = """
SELECT DISTINCT NodeId FROM execscope_events WHERE EventName = 'execscope.branch'
"""


def _never_executed(store: Store, cpgs: dict[str, _Cpg], limits: Thresholds) -> list[Insight]:
    """Node IDs are stable across versions: a node any recorded version executed is not reported,
    and one that none did is reported once (at its newest-sorting version's file and line)."""
    ran = {r[0] for r in store.query(RAN_SQL).rows}
    branched = {r[0] for r in store.query(BRANCHED_SQL).rows}
    taken = {r[0] for r in store.query(TAKEN_SQL).rows}
    found: dict[str, Insight] = {}
    for version, cpg in sorted(cpgs.items()):
        for node in sorted(cpg.nodes.values(), key=lambda n: (n.file, n.line, n.node_id)):
            if node.kind == "function" and node.node_id not in ran:
                found[node.node_id] = Insight("never-executed", node.node_id, node.file, node.line, 0, "", 0,
                                              f"function {node.name} never called in any recorded run")
            elif node.kind in ("arm", "except") and version in branched and node.node_id not in taken:
                scope = cpg.scope(node.node_id)
                if scope is not None and scope.node_id in ran:
                    what = f"arm {node.name!r} of" if node.kind == "arm" else "handler in"
                    found[node.node_id] = Insight("never-executed", node.node_id, node.file, node.line, 0, "", 0,
                                                  f"{what} {scope.name} never taken in any recorded run")
    return sorted(found.values(), key=lambda i: (i.file, i.line, i.node_id))


# -- complexity hot spots ---------------------------------------------------------------------------

HOT_SQL = """
SELECT t.NodeId, f.file, f.line, f.cyclomatic, t.self_ns, t.calls, t.trace_id, t.seq FROM (
    SELECT NodeId, CodeVersion, sum(greatest(toInt64(Duration) - toInt64(ChildNs), 0)) AS self_ns, count() AS calls,
           argMax(TraceId, Duration) AS trace_id, argMax(Seq, Duration) AS seq
    FROM otel_traces WHERE NodeId != '' GROUP BY NodeId, CodeVersion
) AS t
INNER JOIN (SELECT node_id, code_version, any(file) AS file, any(line) AS line, any(cyclomatic) AS cyclomatic
            FROM cpg_functions FINAL GROUP BY node_id, code_version) AS f
    ON f.node_id = t.NodeId AND f.code_version = t.CodeVersion
WHERE f.cyclomatic >= {complexity:UInt32} AND t.self_ns >= {min_ns:UInt64}
ORDER BY f.cyclomatic * t.self_ns DESC
"""


def _hot_spots(store: Store, cpgs: dict[str, _Cpg], limits: Thresholds) -> list[Insight]:
    rows = store.query(HOT_SQL, parameters={"complexity": limits.complexity,
                                            "min_ns": int(limits.hot_ms * 1e6)}).rows
    return [Insight("complexity-hot-spot", node_id, file, int(line), int(calls), trace, int(seq),
                    f"cyclomatic {cc} x self time {self_ns / 1e6:.1f} ms = {cc * self_ns / 1e6:.0f} "
                    f"(complexity >= {limits.complexity}, self time >= {limits.hot_ms:g} ms)")
            for node_id, file, line, cc, self_ns, calls, trace, seq in rows]
