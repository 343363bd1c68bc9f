"""Breakpoints and watchpoints over a recording, matched in both directions, and the threads of a trace.

Everything here answers "at which cinema positions does this breakpoint hit?" as a sorted list of
frame positions, computed once per breakpoint (one query), so that continuing forwards or backwards
is a bisection plus, for conditional breakpoints, the condition evaluated on recorded values
(:mod:`execscope.queries.safe_eval`; user code never runs).

Kinds (the DAP server, the terminal cinema and ``execscope query breakpoint-hits`` share them):

* **line** ``(file, line)``: every execution of a statement on that line.
* **function** ``NAME``: every call of a function whose qualified name is NAME or ends with ``.NAME``.
* **structural**, a CPG pattern (function breakpoint syntax):
  ``call NAME in KIND`` - calls of NAME made from a statement nested in a construct of KIND
  (``loop`` = for/while, ``for``, ``while``, ``if``, ``try``, ``except``, ``with``, ``match``);
  ``raise in KIND`` - ``raise`` statements executed inside such a construct (``raise in except``).
* **data-flow** ``flow FUNC.VAR [-> LINE]``: every statement of FUNC that uses VAR where the value
  it reads was written at a node joined to it by a ``REACHING_DEF`` edge (the write that actually
  reached, taken from the recording), optionally only uses on LINE; ``flow SRC_NODE -> DST_NODE``
  names both ends by node id.
* **watch** ``watch FUNC.VAR``: a semantic watchpoint following the values written to VAR in FUNC
  through later assignments (any variable), call arguments and return values across calls.
* **data** (DAP data breakpoints): the writes that changed variable VAR of one call.
* **exception** filters ``raised`` (an exception leaving a call, or a handler taking one) and
  ``uncaught`` (an exception that left its thread's first call).

Threading: like the Cinema it reads, not thread-safe.
"""

from __future__ import annotations

import ast
import bisect
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from execscope.queries.cinema import Cinema
from execscope.queries.safe_eval import EvalError, compile_expression, evaluate


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None

THREAD_SQL = """
SELECT SpanId, ParentSpanId, ResourceAttributes['process.pid'] FROM otel_traces
WHERE TraceId = {trace:String} AND NodeId != ''
"""
CONCURRENT_SQL = """
SELECT span FROM (
    SELECT span, k, sum(k = 0) OVER (PARTITION BY parent ORDER BY seq, k
                                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS before
    FROM (SELECT SpanId AS parent, '' AS span, Seq AS seq, 0 AS k FROM execscope_events
          WHERE TraceId = {trace:String}
          UNION ALL
          SELECT ParentSpanId, SpanId, Seq, 1 FROM otel_traces WHERE TraceId = {trace:String} AND NodeId != ''
          UNION ALL
          SELECT ParentSpanId, SpanId, SeqEnd, 2 FROM otel_traces WHERE TraceId = {trace:String} AND NodeId != ''))
WHERE k > 0
GROUP BY span
HAVING max(if(k = 2, before, 0)) > max(if(k = 1, before, 0))
"""
"""Calls during which their parent recorded an event (counted per parent in sequence order: the
parent's events before the call's end exceed those before its start): the parent kept running, so
the call runs on another thread."""

FILES_SQL = """
SELECT DISTINCT SpanAttributes['code.file.path'] FROM otel_traces WHERE TraceId = {trace:String} AND NodeId != ''
"""
LINE_HITS_SQL = """
SELECT Seq, Hlc, SpanId FROM execscope_events
WHERE TraceId = {trace:String} AND EventName = 'execscope.line' AND LineNumber = {line:UInt32}
  AND SpanId IN (SELECT SpanId FROM otel_traces WHERE TraceId = {trace:String}
                 AND SpanAttributes['code.file.path'] = {file:String})
"""
CALLS_SQL = """
SELECT SpanId, NodeId, CodeVersion FROM otel_traces
WHERE TraceId = {trace:String} AND NodeId != ''
  AND (NodeId = {name:String} OR endsWith(NodeId, concat(':', {name:String}))
       OR endsWith(NodeId, concat('.', {name:String})) OR SpanName = {name:String})
"""
CALL_SITE_SQL = """
SELECT c.SpanId, argMax(e.NodeId, e.Seq)
FROM execscope_events AS e
INNER JOIN (SELECT SpanId, ParentSpanId, Seq FROM otel_traces
            WHERE TraceId = {trace:String} AND SpanId IN {spans:Array(String)}) AS c ON e.SpanId = c.ParentSpanId
WHERE e.TraceId = {trace:String} AND e.EventName = 'execscope.line' AND e.Seq < c.Seq
GROUP BY c.SpanId
"""
NODES_SQL = """
SELECT node_id, any(kind), any(parent_id) FROM cpg_nodes WHERE code_version IN {versions:Array(String)}
GROUP BY node_id
"""
NODE_HITS_SQL = """
SELECT Seq, Hlc FROM execscope_events
WHERE TraceId = {trace:String} AND EventName = {event:String} AND NodeId IN {nodes:Array(String)}
"""
FLOW_SQL = """
SELECT u.Seq, u.ts, u.NodeId, d.NodeId
FROM (SELECT SpanId, Seq, Hlc AS ts, NodeId FROM execscope_events
      WHERE TraceId = {trace:String} AND EventName = 'execscope.line' AND NodeId IN {uses:Array(String)}) AS u
ASOF INNER JOIN (SELECT SpanId, Seq, NodeId FROM execscope_events
      WHERE TraceId = {trace:String} AND EventName = 'execscope.assign' AND VarName = {var:String}) AS d
ON d.SpanId = u.SpanId AND d.Seq < u.Seq
"""
REACHING_SQL = """
SELECT src, dst FROM cpg_edges
WHERE kind = 'REACHING_DEF' AND label = {var:String} AND (properties['scope'] = {scope:String} OR {scope:String} = '')
  AND (src IN {srcs:Array(String)} OR empty({srcs:Array(String)}))
  AND (dst IN {dsts:Array(String)} OR empty({dsts:Array(String)}))
GROUP BY src, dst
"""
WRITES_SQL = """
SELECT Seq, Hlc, VarValue FROM execscope_events
WHERE TraceId = {trace:String} AND EventName = 'execscope.assign' AND SpanId = {span:String} AND VarName = {var:String}
ORDER BY Seq
"""
WATCH_SOURCE_SQL = """
SELECT min((e.Hlc, e.Seq)), groupUniqArray(e.VarValue)
FROM execscope_events AS e
WHERE e.TraceId = {trace:String} AND e.EventName = 'execscope.assign' AND e.VarName = {var:String}
  AND e.SpanId IN (SELECT SpanId FROM otel_traces WHERE TraceId = {trace:String} AND NodeId = {func:String})
"""
WATCH_HITS_SQL = """
SELECT Seq, Hlc FROM execscope_events
WHERE TraceId = {trace:String} AND EventName = 'execscope.assign' AND VarValue IN {values:Array(String)}
UNION ALL
SELECT Seq, Hlc FROM otel_traces
WHERE TraceId = {trace:String} AND NodeId != ''
  AND hasAny(mapValues(mapFilter((k, v) -> startsWith(k, 'execscope.arg.'), SpanAttributes)), {values:Array(String)})
UNION ALL
SELECT SeqEnd, HlcEnd FROM otel_traces
WHERE TraceId = {trace:String} AND NodeId != '' AND StatusCode != 'STATUS_CODE_ERROR'
  AND SpanAttributes['execscope.return.value'] IN {values:Array(String)}
"""
VALUES_AT_SQL = """
SELECT l.idx, l.var, r.VarValue
FROM (SELECT tupleElement(c, 1) AS idx, tupleElement(c, 2) AS span, tupleElement(c, 3) AS seq,
             arrayJoin({vars:Array(String)}) AS var
      FROM (SELECT arrayJoin(arrayZip({idx:Array(UInt32)}, {spans:Array(String)}, {seqs:Array(UInt64)})) AS c)) AS l
ASOF INNER JOIN (SELECT SpanId, VarName, Seq, VarValue FROM execscope_events
                 WHERE TraceId = {trace:String} AND EventName = 'execscope.assign'
                   AND SpanId IN {spans:Array(String)} AND VarName IN {vars:Array(String)}) AS r
ON r.SpanId = l.span AND r.VarName = l.var AND r.Seq <= l.seq
"""
"""The last value each of ``vars`` had in each candidate's call at the candidate (a batch of a
conditional breakpoint's hits): conditions are decided without loading cinema windows."""
ARGS_AT_SQL = """
SELECT h.Seq, 0, a.var, a.value
FROM (SELECT Seq, SpanId FROM execscope_events
      WHERE TraceId = {trace:String} AND EventName = 'execscope.line' AND Seq IN {seqs:Array(UInt64)}) AS h
INNER JOIN (SELECT SpanId, arrayJoin({vars:Array(String)}) AS var,
                   SpanAttributes[concat('execscope.arg.', var)] AS value,
                   mapContains(SpanAttributes, concat('execscope.arg.', var)) AS present
            FROM otel_traces
            WHERE TraceId = {trace:String} AND NodeId != '' AND Seq BETWEEN {lo:UInt64} AND {hi:UInt64}) AS a
ON a.SpanId = h.SpanId
WHERE a.present
"""
WRITES_AT_SQL = """
SELECT l.Seq, 1, l.var, r.VarValue
FROM (SELECT Seq, SpanId, arrayJoin({wvars:Array(String)}) AS var FROM execscope_events
      WHERE TraceId = {trace:String} AND EventName = 'execscope.line' AND Seq IN {seqs:Array(UInt64)}) AS l
ASOF INNER JOIN (SELECT SpanId, VarName, Seq, VarValue FROM execscope_events
                 WHERE TraceId = {trace:String} AND EventName = 'execscope.assign'
                   AND Seq BETWEEN {lo:UInt64} AND {hi:UInt64} AND VarName IN {wvars:Array(String)}) AS r
ON r.SpanId = l.SpanId AND r.VarName = l.var AND r.Seq <= l.Seq
"""
WRITTEN_SQL = """
SELECT DISTINCT VarName FROM execscope_events
WHERE TraceId = {trace:String} AND EventName = 'execscope.assign' AND VarName IN {vars:Array(String)}
  AND SpanId IN (SELECT SpanId FROM otel_traces WHERE TraceId = {trace:String} AND NodeId IN (
      SELECT NodeId FROM otel_traces WHERE TraceId = {trace:String} AND SpanId IN (
          SELECT SpanId FROM execscope_events
          WHERE TraceId = {trace:String} AND EventName = 'execscope.line' AND LineNumber = {line:UInt32}
            AND SpanId IN (SELECT SpanId FROM otel_traces WHERE TraceId = {trace:String}
                           AND SpanAttributes['code.file.path'] = {file:String}))))
"""
"""Which of a line breakpoint's condition names any call of a function executing that line ever
writes: the others are decided from arguments alone."""
"""The same for line hits in one process (one sequence counter), by sequence numbers only: each hit's
call from its line event, the arguments named by the condition from the calls started in the batch's
range (order 0) and the last writes before each hit (order 1, applied after; only of the variables
WRITTEN_SQL found written in the line's functions at all): one query, no span id lists."""
CONDITION_BATCH = 512

EXCEPTION_SQL = """
SELECT Seq, Hlc, SpanId, EventName FROM execscope_events
WHERE TraceId = {trace:String} AND (EventName = 'exception'
      OR (EventName = 'execscope.branch' AND match(NodeId, ':except#[0-9]+$')))
"""

STRUCTURE_KINDS = {"loop": ("for", "while", "async_for"), "for": ("for", "async_for"), "while": ("while",),
                   "if": ("if",), "try": ("try",), "except": ("except",), "with": ("with", "async_with"),
                   "match": ("match",)}


class BreakpointError(ValueError):
    """A breakpoint that cannot be set: bad syntax, unknown function, malformed condition."""


# --- threads ------------------------------------------------------------------------------------
@dataclass(slots=True)
class Thread:
    id: int
    name: str
    root: str
    """Span id of the thread's first recorded call."""
    pid: str


class Threads:
    """The trace's threads (and processes): each starts at a call whose parent is in another process
    or keeps running while it is alive. Frames belong to the thread of their call."""

    def __init__(self, cinema: Cinema) -> None:
        self.cinema = cinema
        parent_of: dict[str, str] = {}
        roots: list[tuple[int, str, str, str]] = []
        pids: dict[str, str] = {}
        rows = cinema.store.query(THREAD_SQL, parameters={"trace": cinema.trace_id}).rows
        concurrent = {r[0] for r in cinema.store.query(CONCURRENT_SQL, parameters={"trace": cinema.trace_id}).rows}
        for span_id, parent, pid in rows:
            pids[span_id] = pid
            parent_of[span_id] = parent
        calls = cinema.calls()
        for span_id, parent, pid in rows:
            if parent not in pids or pids[parent] != pid or span_id in concurrent:
                span = calls.get(span_id)
                roots.append((span.call_key if span is not None else 0, span_id, pid, parent))
        roots.sort(key=lambda r: r[0])
        self.by_root: dict[str, Thread] = {}
        self.threads: list[Thread] = []
        first_pid = roots[0][2] if roots else ""
        for i, (_key, span_id, pid, parent) in enumerate(roots, start=1):
            span = calls.get(span_id)
            if span is not None:
                cinema.load_calls([span])
            function = span.function if span is not None else span_id
            kind = "process" if parent not in pids or pids[parent] != pid else "thread"
            name = "main" if i == 1 else f"{kind} {function}" + (f" (pid {pid})" if pid != first_pid else "")
            thread = Thread(i, name, span_id, pid)
            self.threads.append(thread)
            self.by_root[span_id] = thread
        self._parent = parent_of
        self._of: dict[str, Thread] = {}

    def of_span(self, span_id: str) -> Thread | None:
        """The thread a call ran on."""
        found = self._of.get(span_id)
        if found is not None:
            return found
        chain: list[str] = []
        current = span_id
        while current and current not in self.by_root and current not in self._of and len(chain) < 100_000:
            chain.append(current)
            current = self._parent.get(current, "")
        thread = self.by_root.get(current) or self._of.get(current) or (self.threads[0] if self.threads else None)
        if thread is not None:
            for s in chain:
                self._of[s] = thread
        return thread

    def get(self, thread_id: int) -> Thread | None:
        return self.threads[thread_id - 1] if 0 < thread_id <= len(self.threads) else None


# --- breakpoints --------------------------------------------------------------------------------
@dataclass(slots=True)
class Breakpoint:
    """One breakpoint: where it can hit (sorted positions) and what decides whether it stops there."""

    id: int
    kind: str
    """line | function | structural | flow | watch | data | exception"""
    positions: list[int]
    condition: str | None = None
    hit_condition: str | None = None
    log_message: str | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    spans: list[str] | None = None
    """Per position, the call it belongs to and its sequence number (when known, conditions are
    decided in batches from the store instead of from cinema frames)."""
    seqs: list[int] | None = None
    _compiled: Any = None
    _names: tuple[str, ...] = ()
    _verdicts: dict[int, bool] = field(default_factory=dict)
    _pending: dict[int, dict[str, str]] = field(default_factory=dict)
    """Values read for positions whose condition is not evaluated yet (evaluated when first asked)."""
    _written: list[str] | None = None
    """Names of the condition some call of the breakpoint's file writes (None: not known)."""

    def __post_init__(self) -> None:
        if self.condition:
            self._compiled = compile_expression(self.condition)  # raises EvalError early
            self._names = tuple(sorted({n.id for n in ast.walk(self._compiled) if isinstance(n, ast.Name)}
                                       | {d for n in ast.walk(self._compiled) if (d := _dotted(n)) is not None}))
        if self.hit_condition:
            _hit_predicate(self.hit_condition)

    def test(self, names: dict[str, str]) -> bool:
        """The condition on recorded values (no condition: true; an error: stop, so it is seen)."""
        if self._compiled is None:
            return True
        try:
            return bool(evaluate(self._compiled, names))
        except EvalError:
            return True


def _hit_predicate(text: str) -> Any:
    m = re.fullmatch(r"\s*(>=|<=|==|>|<|%)?\s*(\d+)\s*", text)
    if not m:
        raise BreakpointError(f"hit condition {text!r}: expected N, >= N, > N, == N, <= N, < N or % N")
    op, n = m.group(1) or ">=", int(m.group(2))
    return {">=": lambda c: c >= n, ">": lambda c: c > n, "==": lambda c: c == n, "<=": lambda c: c <= n,
            "<": lambda c: c < n, "%": lambda c: n > 0 and c % n == 0}[op]


class Breakpoints:
    """Builds breakpoints for one Cinema (each a sorted list of positions) and finds the next stop."""

    def __init__(self, cinema: Cinema, threads: Threads | None = None) -> None:
        self.cinema = cinema
        self.threads = threads
        self._next_id = 0
        self._files: list[str] | None = None

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _params(self, **extra: Any) -> dict[str, Any]:
        return {"trace": self.cinema.trace_id, **extra}

    def _positions(self, rows: Sequence[Sequence[Any]]) -> list[int]:
        return sorted({self.cinema.position_at(int(ts), int(seq)) for seq, ts, *_ in rows})

    # --- files --------------------------------------------------------------------------------------
    def recorded_files(self) -> list[str]:
        if self._files is None:
            self._files = [r[0] for r in self.cinema.store.query(FILES_SQL, parameters=self._params()).rows if r[0]]
        return self._files

    def resolve_file(self, path: str) -> str | None:
        """The recorded file a client path names: the same path, the same real path, or the recorded
        file sharing the longest tail of path components with it (a checkout elsewhere)."""
        files = self.recorded_files()
        if path in files:
            return path
        real = os.path.realpath(path)
        for f in files:
            if os.path.realpath(f) == real:
                return f
        parts = path.replace("\\", "/").split("/")
        best, score = None, 0
        for f in files:
            fparts = f.split("/")
            n = 0
            while n < min(len(parts), len(fparts)) and parts[-1 - n] == fparts[-1 - n]:
                n += 1
            if n > score:
                best, score = f, n
        return best

    # --- constructors -------------------------------------------------------------------------------
    def line(self, path: str, line: int, condition: str | None = None, hit_condition: str | None = None,
             log_message: str | None = None) -> Breakpoint:
        file = self.resolve_file(path)
        rows = [] if file is None else self.cinema.store.query(
            LINE_HITS_SQL, parameters=self._params(line=line, file=file)).rows
        hits = sorted((self.cinema.position_at(int(ts), int(seq)), span, int(seq)) for seq, ts, span in rows)
        bp = self._make("line", [h[0] for h in hits], condition, hit_condition, log_message,
                        f"{file or path}:{line}", file=file, line=line)
        bp.spans, bp.seqs = [h[1] for h in hits], [h[2] for h in hits]
        if bp._names and file is not None and hits and not self.cinema.multi:
            bp._written = sorted(r[0] for r in self.cinema.store.query(WRITTEN_SQL, parameters=self._params(
                vars=list(bp._names), file=file, line=line)).rows)
        return bp

    def _make(self, kind: str, positions: list[int], condition: str | None, hit_condition: str | None,
              log_message: str | None, description: str, **extra: Any) -> Breakpoint:
        try:
            return Breakpoint(self._id(), kind, positions, condition or None, hit_condition or None,
                              log_message or None, description, extra)
        except EvalError as exc:
            raise BreakpointError(f"condition: {exc}") from None

    def function(self, spec: str, condition: str | None = None, hit_condition: str | None = None) -> Breakpoint:
        """A DAP function breakpoint: a plain name, or a structural / data-flow / watch pattern."""
        text = " ".join(spec.split())
        m = re.fullmatch(r"call (\S+) in (\w+)", text)
        if m:
            return self._make("structural", self._calls_in(m.group(1), m.group(2)), condition, hit_condition,
                              None, text)
        m = re.fullmatch(r"raise in (\w+)", text)
        if m:
            return self._make("structural", self._raises_in(m.group(1)), condition, hit_condition, None, text)
        m = re.fullmatch(r"flow (\S+?)(?: ?-> ?(\S+))?", text)
        if m:
            return self._make("flow", self._flow(m.group(1), m.group(2)), condition, hit_condition, None, text)
        m = re.fullmatch(r"watch (\S+)\.(\w+)", text)
        if m:
            return self._make("watch", self._watch(m.group(1), m.group(2)), condition, hit_condition, None, text)
        if not re.fullmatch(r"[\w.:<>]+", text):
            raise BreakpointError(
                f"function breakpoint {spec!r}: expected NAME, 'call NAME in KIND', 'raise in KIND', "
                "'flow FUNC.VAR [-> LINE]', 'flow SRC_NODE -> DST_NODE' or 'watch FUNC.VAR'")
        spans = self._spans_named(text)
        calls = self.cinema.calls()
        hits = sorted((self.cinema.position_of(calls[s].call_key), s) for s, _, _ in spans if s in calls)
        bp = self._make("function", [h[0] for h in hits], condition, hit_condition, None, text)
        bp.spans = [h[1] for h in hits]
        return bp

    def _spans_named(self, name: str) -> list[tuple[str, str, str]]:
        return [tuple(r) for r in self.cinema.store.query(
            CALLS_SQL, parameters=self._params(name=name)).rows]

    def _structure(self, versions: list[str]) -> dict[str, tuple[str, str]]:
        rows = self.cinema.store.query(NODES_SQL, parameters={"versions": sorted(set(versions))}).rows
        return {node: (kind, parent) for node, kind, parent in rows}

    @staticmethod
    def _inside(nodes: dict[str, tuple[str, str]], node: str, kinds: tuple[str, ...]) -> bool:
        seen = 0
        current = nodes.get(node, ("", ""))[1]
        while current and seen < 1000:
            kind, parent = nodes.get(current, ("", ""))
            if kind in ("function", "lambda", "class", "module"):
                return False
            if kind in kinds:
                return True
            current, seen = parent, seen + 1
        return False

    def _kinds(self, word: str) -> tuple[str, ...]:
        if word not in STRUCTURE_KINDS:
            raise BreakpointError(f"unknown construct {word!r}; known: {', '.join(STRUCTURE_KINDS)}")
        return STRUCTURE_KINDS[word]

    def _calls_in(self, name: str, word: str) -> list[int]:
        kinds = self._kinds(word)
        spans = self._spans_named(name)
        if not spans:
            return []
        sites = dict(self.cinema.store.query(CALL_SITE_SQL, parameters=self._params(
            spans=[s for s, _, _ in spans])).rows)
        nodes = self._structure([v for _, _, v in spans] + self._versions())
        calls = self.cinema.calls()
        return sorted(self.cinema.position_of(calls[s].call_key) for s, _, _ in spans
                      if s in calls and s in sites and self._inside(nodes, sites[s], kinds))

    def _versions(self) -> list[str]:
        return [r[0] for r in self.cinema.store.query(
            "SELECT DISTINCT CodeVersion FROM otel_traces WHERE TraceId = {trace:String}",
            parameters=self._params()).rows]

    def _raises_in(self, word: str) -> list[int]:
        kinds = self._kinds(word)
        nodes = self._structure(self._versions())
        raises = [n for n, (kind, _) in nodes.items() if kind == "raise" and self._inside(nodes, n, kinds)]
        if not raises:
            return []
        return self._positions(self.cinema.store.query(NODE_HITS_SQL, parameters=self._params(
            event="execscope.line", nodes=raises)).rows)

    def _flow(self, source: str, target: str | None) -> list[int]:
        if ":" in source:  # SRC_NODE -> DST_NODE
            if target is None or ":" not in target:
                raise BreakpointError("flow SRC_NODE -> DST_NODE needs two node ids")
            edges = self.cinema.store.query(
                "SELECT src, dst, label FROM cpg_edges WHERE kind = 'REACHING_DEF' AND src = {s:String} "
                "AND dst = {d:String} GROUP BY src, dst, label", parameters={"s": source, "d": target}).rows
            if not edges:
                raise BreakpointError(f"no REACHING_DEF edge from {source} to {target}")
            var = edges[0][2]
            pairs = {(s, d) for s, d, _ in edges}
        else:
            func, _, var = source.rpartition(".")
            if not func or not var:
                raise BreakpointError(f"flow {source!r}: expected FUNC.VAR")
            spans = self._spans_named(func)
            if not spans:
                raise BreakpointError(f"flow: no recorded call of {func!r}")
            scope = spans[0][1]
            pairs = {(s, d) for s, d in self.cinema.store.query(REACHING_SQL, parameters={
                "var": var, "scope": scope, "srcs": [], "dsts": []}).rows}
            if target is not None:
                if not target.isdigit():
                    raise BreakpointError(f"flow {source} -> {target!r}: expected a line number")
                nodes = self.cinema.store.query(
                    "SELECT node_id FROM cpg_nodes WHERE node_id IN {d:Array(String)} AND line = {l:UInt32}",
                    parameters={"d": sorted({d for _, d in pairs}), "l": int(target)}).rows
                keep = {r[0] for r in nodes}
                pairs = {(s, d) for s, d in pairs if d in keep}
        if not pairs:
            return []
        rows = self.cinema.store.query(FLOW_SQL, parameters=self._params(
            uses=sorted({d for _, d in pairs}), var=var)).rows
        return self._positions([(seq, ts) for seq, ts, use, write in rows if (write, use) in pairs])

    def _watch(self, func: str, var: str) -> list[int]:
        spans = self._spans_named(func)
        if not spans:
            raise BreakpointError(f"watch: no recorded call of {func!r}")
        start, values = self.cinema.store.query(WATCH_SOURCE_SQL, parameters=self._params(
            var=var, func=spans[0][1])).rows[0]
        arg_values = {a for s, _, _ in spans for k, a in self._args(s).items() if k == var}
        values = sorted(set(values) | arg_values)
        if not values:
            return []
        first = self.cinema.position_at(*start) if start and start[1] else 0
        positions = self._positions(self.cinema.store.query(WATCH_HITS_SQL, parameters=self._params(
            values=values)).rows)
        return [p for p in positions if p >= first]

    def _args(self, span_id: str) -> dict[str, str]:
        span = self.cinema.calls().get(span_id)
        if span is None:
            return {}
        self.cinema.load_calls([span])
        return span.args

    def data(self, span_id: str, var: str, condition: str | None = None,
             hit_condition: str | None = None) -> Breakpoint:
        """Writes that changed ``var`` of call ``span_id`` (the first write counts as a change)."""
        rows = self.cinema.store.query(WRITES_SQL, parameters=self._params(span=span_id, var=var)).rows
        hits, previous = [], None
        for i, (seq, ts, value) in enumerate(rows):
            if i == 0 or value != previous:
                hits.append((seq, ts))
            previous = value
        span = self.cinema.calls().get(span_id)
        function = span.function if span is not None else span_id
        return self._make("data", self._positions(hits), condition, hit_condition, None,
                          f"{function}: {var} changes", span=span_id, var=var)

    def exceptions(self, filters: Sequence[str]) -> Breakpoint:
        rows = self.cinema.store.query(EXCEPTION_SQL, parameters=self._params()).rows
        calls = self.cinema.calls()
        hits = []
        for seq, ts, span_id, event in rows:
            if "raised" in filters:
                hits.append((seq, ts))
            elif "uncaught" in filters and event == "exception" and self._escaped(span_id, calls):
                hits.append((seq, ts))
        return self._make("exception", self._positions(hits), None, None, None, ",".join(filters),
                          filters=list(filters))

    def _escaped(self, span_id: str, calls: dict[str, Any]) -> bool:
        """The exception left every call up to its thread's first one."""
        current = calls.get(span_id)
        roots = self.threads.by_root if self.threads is not None else {}
        while current is not None:
            if not current.failed:
                return False
            if current.span_id in roots:
                return True
            current = calls.get(current.parent)
        return True

    # --- running ------------------------------------------------------------------------------------
    def hit_count(self, bp: Breakpoint, position: int) -> int:
        """How many times ``bp`` stopped (condition true) up to and including ``position``."""
        upto = bisect.bisect_right(bp.positions, position)
        if bp.condition is None:
            return upto
        return sum(1 for p in bp.positions[:upto] if self.condition_holds(bp, p, True))

    def condition_holds(self, bp: Breakpoint, position: int, forward: bool = True) -> bool:
        """``bp``'s condition at one of its positions; decided for a batch of its hits at once when the
        breakpoint knows their calls, else on the cinema frame."""
        if bp.condition is None:
            return True
        verdict = bp._verdicts.get(position)
        if verdict is not None:
            return verdict
        pending = bp._pending.pop(position, None)
        if pending is not None:
            verdict = bp._verdicts[position] = bp.test(pending)
            return verdict
        if bp.spans is None:
            return bp.test(self.cinema.frame(position)["locals"])
        i = bisect.bisect_left(bp.positions, position)
        lo, hi = (i, min(len(bp.positions), i + CONDITION_BATCH)) if forward else (
            max(0, i - CONDITION_BATCH + 1), i + 1)
        batch = [j for j in range(lo, hi)
                 if bp.positions[j] not in bp._verdicts and bp.positions[j] not in bp._pending]
        calls = self.cinema.calls()
        if bp.seqs is not None and not self.cinema.multi:
            self._line_values(bp, batch)
            read = bp._pending.pop(position, None)
            verdict = bp._verdicts[position] = bp.test(read) if read is not None else True
            return verdict
        spans = [calls[bp.spans[j]] for j in batch if bp.spans[j] in calls]
        self.cinema.load_calls(spans)
        names: dict[int, dict[str, str]] = {j: dict(calls[bp.spans[j]].args) if bp.spans[j] in calls else {}
                                            for j in batch}
        if bp.seqs is not None and bp._names:
            for j, var, value in self.cinema.store.query(VALUES_AT_SQL, parameters=self._params(
                    idx=batch, spans=[bp.spans[j] for j in batch], seqs=[bp.seqs[j] for j in batch],
                    vars=list(bp._names))).rows:
                names[j][var] = value
        for j in batch:
            bp._verdicts[bp.positions[j]] = bp.test(names[j])
        return bp._verdicts.get(position, True)

    def _line_values(self, bp: Breakpoint, batch: list[int]) -> None:
        """Read the values ``bp``'s condition names at the hits ``batch`` (indexes into its positions)
        in one query (none when the arguments are read and nothing named is ever written); each is
        evaluated when its position is first asked about."""
        assert bp.seqs is not None and bp.spans is not None
        names: dict[int, dict[str, str]] = {bp.seqs[j]: {} for j in batch}
        if bp._names and batch:
            calls = self.cinema.calls()
            spans = [calls[bp.spans[j]] for j in batch if bp.spans[j] in calls]
            seqs = [bp.seqs[j] for j in batch]
            written = list(bp._names) if bp._written is None else bp._written
            if self.cinema.details_in_memory():
                self.cinema.load_calls(spans)
            parts = [WRITES_AT_SQL] if written else []
            if len(spans) == len(batch) and all(s.loaded for s in spans):  # arguments already read
                for j, span in zip(batch, spans):
                    names[bp.seqs[j]].update((k, v) for k, v in span.args.items() if k in bp._names)
            else:
                parts.insert(0, ARGS_AT_SQL)
            if parts:
                rows = self.cinema.store.query("SELECT * FROM (" + "UNION ALL".join(parts) + ")",
                                               parameters=self._params(
                    seqs=seqs, vars=list(bp._names), wvars=written, lo=min([s.s0 for s in spans] + seqs),
                    hi=max(seqs))).rows
                for seq, _order, var, value in sorted(rows, key=lambda r: r[1]):
                    if seq in names:
                        names[seq][var] = value
        for j in batch:
            bp._pending[bp.positions[j]] = names[bp.seqs[j]]

    def prepare(self, bp: Breakpoint, position: int) -> None:
        """Decide ``bp``'s condition for the batches of its hits on either side of ``position`` now
        (when it is set), so the first continue in either direction from here needs no query."""
        if bp.condition is None or not bp.positions:
            return
        after = bisect.bisect_right(bp.positions, position)
        if after < len(bp.positions):
            self.condition_holds(bp, bp.positions[after], True)
        if after > 0:
            self.condition_holds(bp, bp.positions[after - 1], False)

    def stops(self, bp: Breakpoint, position: int, forward: bool = True) -> bool:
        """Whether ``bp`` stops at ``position`` (one of its positions): condition, then hit condition."""
        if not self.condition_holds(bp, position, forward):
            return False
        if bp.hit_condition:
            return bool(_hit_predicate(bp.hit_condition)(self.hit_count(bp, position)))
        return True

    def next_stop(self, breakpoints: Sequence[Breakpoint], position: int, forward: bool,
                  on_log: Any = None, limit: int = 100_000) -> tuple[int, list[Breakpoint]] | None:
        """The nearest position after (before) ``position`` where a breakpoint stops, with the ones
        that stop there. Log points never stop: ``on_log(bp, position)`` is called for each (forward)."""
        cursors = {bp.id: (bisect.bisect_right(bp.positions, position) if forward
                           else bisect.bisect_left(bp.positions, position) - 1) for bp in breakpoints}
        tried = 0
        while tried < limit:
            candidates = [(bp.positions[cursors[bp.id]], bp) for bp in breakpoints
                          if 0 <= cursors[bp.id] < len(bp.positions)]
            if not candidates:
                return None
            best = min(p for p, _ in candidates) if forward else max(p for p, _ in candidates)
            stopping = []
            for p, bp in candidates:
                if p != best:
                    continue
                cursors[bp.id] += 1 if forward else -1
                tried += 1
                if self.stops(bp, best, forward):
                    if bp.log_message is not None:
                        if on_log is not None and forward:
                            on_log(bp, best)
                    else:
                        stopping.append(bp)
            if stopping:
                return best, stopping
        return None


def parse_spec(matcher: Breakpoints, spec: str, condition: str | None = None) -> Breakpoint:
    """A breakpoint from one text: ``FILE:LINE`` (a line breakpoint) or the function breakpoint syntax
    (``NAME``, ``call NAME in KIND``, ``raise in KIND``, ``flow ...``, ``watch FUNC.VAR``)."""
    file, sep, line = spec.strip().rpartition(":")
    if sep and line.isdigit() and file and " " not in file:
        return matcher.line(file, int(line), condition)
    return matcher.function(spec, condition)


def breakpoint_hits(store: Any, trace: str, spec: str, condition: str = "", limit: int = 1000) -> Any:
    """``execscope query breakpoint-hits``: every position where a breakpoint stops, in order, with the
    frame's function, line and variables."""
    import json

    from execscope.queries.cinema import open_cinema
    from execscope.storage.store import QueryResult

    if not trace or not spec:
        raise ValueError("give -p trace=T and -p spec=SPEC")
    cinema = open_cinema(store, trace)
    matcher = Breakpoints(cinema, Threads(cinema))
    try:
        bp = parse_spec(matcher, spec, condition or None)
    except (BreakpointError, EvalError) as exc:
        raise ValueError(str(exc)) from None
    rows: list[tuple[Any, ...]] = []
    for position in bp.positions:
        if len(rows) >= limit:
            break
        if matcher.stops(bp, position):
            frame = cinema.frame(position)
            rows.append((position, frame["kind"], frame["function"], frame["line"], frame["source"].strip(),
                         json.dumps(frame["locals"], ensure_ascii=False)))
    return QueryResult(["position", "kind", "function", "line", "source", "locals"], rows)
