"""Root-cause chains: why a recorded value (or a failure) came to be, walked backwards through the
recording without a model.

From a starting point (the exception a trace failed with, or a frame of the cinema and optionally one
variable there) the walk follows the values backwards: a statement's inputs are the variables it read
(REACHING_DEF edges of the code property graph name them; the recording says which write actually
reached: the last one before the read, in that call), the values recorded calls returned into it, and
attribute or subscript writes made elsewhere (another function, another thread) to what it read. A
variable with no write in its call was an argument: the walk goes to the call site in the caller and
on through the argument's expression. An argument that arrives different from the value the caller
last wrote was changed in place in between: the walk looks for the subscript and attribute writes (and
mutating method calls) of the calls it was handed to. A run of updates of one variable (``total =
total - total * discount`` twice) is one step. A raise is explained through the conditions that led
to it.

The result is a :class:`Chain`: a tree of :class:`Step` printed depth first, one sentence each, with
file:line, the code and the values. Deterministic: the same recording gives the same chain. Bounded
by ``max_steps``; what was not followed is listed in :attr:`Chain.left_out`. ``execscope explain``
and the MCP tool ``why`` print the same chain; LLM providers get it as context.

Ordering across threads: within one process one sequence counter orders every call and event of
every thread exactly, so "the last write before the read" is exact across threads; writes are only
looked up in the process of the reading call.
"""

from __future__ import annotations

import ast
import bisect
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from execscope.storage.store import Store

DEFAULT_MAX_STEPS = 16
MAX_SPAN_EVENTS = 200_000
"""Events read per call; a call with more is searched over its latest ones (said in ``left_out``)."""
MAX_SPANS = 500_000
MAX_CALLS_SEARCHED = 1000
"""Calls a value was handed to that are searched for in-place changes, per call."""
CODE_CHARS = 90
VALUE_CHARS = 120
_STOP_EXCEPTIONS = ("SystemExit", "KeyboardInterrupt", "GeneratorExit", "StopIteration", "StopAsyncIteration")
_MUTATORS = frozenset({"append", "extend", "insert", "remove", "pop", "clear", "sort", "reverse", "update",
                       "setdefault", "popitem", "add", "discard", "difference_update", "intersection_update",
                       "symmetric_difference_update", "__setitem__", "__delitem__", "__setattr__"})
_STATEMENT_KINDS = frozenset({"assign", "ann_assign", "aug_assign", "expr", "return", "raise", "assert", "pass",
                              "break", "continue", "del", "global", "nonlocal", "import", "import_from", "if", "for",
                              "while", "try", "with", "match", "type_alias"})
"""``cpg_nodes.kind`` of statements (a target or an arm can share a statement's position)."""
_THREAD_STARTS = re.compile(r"\.(start|submit|map|run_in_executor|apply_async|map_async|call_soon\w*)\(")

SPANS_SQL = """
SELECT SpanId, ParentSpanId, NodeId, CodeVersion, SpanAttributes['code.function.name'],
       SpanAttributes['code.file.path'], mapFilter((k, v) -> startsWith(k, 'execscope.arg.'), SpanAttributes),
       SpanAttributes['execscope.return.value'], Seq, SeqEnd, StatusCode = 'STATUS_CODE_ERROR',
       concat(ResourceAttributes['service.instance.id'], '/', ResourceAttributes['process.pid']),
       Hlc, toUInt64OrZero(SpanAttributes['execscope.dropped_events'])
FROM otel_traces
WHERE TraceId = {trace:String} AND NodeId != '' AND length(SpanId) = 16
ORDER BY Seq
LIMIT {cap:UInt32}
"""
SPAN_EVENTS_SQL = """
SELECT Seq, EventName, NodeId, LineNumber, VarName, VarValue, Attributes['exception.type'],
       Attributes['exception.message'], Hlc,
       Attributes['exception.escaped'] = 'false'
FROM execscope_events
WHERE TraceId = {trace:String} AND SpanId = {span:String}
  AND EventName IN ('execscope.line', 'execscope.branch', 'execscope.assign', 'exception')
  AND Seq <= {upto:UInt64}
ORDER BY Seq DESC
LIMIT {cap:UInt32}
"""
# Writes of one of ``names`` (exact target text) or of attribute ``attr`` through any object, made in
# the trace before a point, by calls of one process: the latest first.
WRITES_ELSEWHERE_SQL = """
SELECT SpanId, Seq, VarName, VarValue, NodeId
FROM execscope_events
WHERE TraceId = {trace:String} AND EventName = 'execscope.assign' AND Seq < {before:UInt64}
  AND ({all:UInt8} OR SpanId IN {spans:Array(String)})
  AND (VarName IN {names:Array(String)} OR ({attr:String} != '' AND endsWith(VarName, {attr:String})))
ORDER BY Seq DESC
LIMIT 64
"""
# The failure of a trace: the last exception that left a call, else the last one caught where it was
# raised (``exception.escaped`` false).
LAST_EXCEPTION_SQL = """
SELECT SpanId, Seq FROM execscope_events
WHERE TraceId = {trace:String} AND EventName = 'exception'
  AND Attributes['exception.type'] NOT IN {stop:Array(String)}
  AND NOT endsWith(Attributes['exception.type'], '.SystemExit')
ORDER BY Attributes['exception.escaped'] = 'false', Seq DESC
LIMIT 1
"""


class ChainError(LookupError):
    """Nothing to explain: unknown trace, no failure, a frame or variable that is not there."""


@dataclass(frozen=True, slots=True)
class Step:
    """One sentence of a chain. ``depth``: how far back from the start (children explain their parent);
    ``kind``: exception, condition, argument, write, updates, return, mutation, origin."""

    depth: int
    kind: str
    text: str
    function: str = ""
    file: str = ""
    line: int = 0
    code: str = ""
    var: str = ""
    value: str = ""
    seq: int = -1
    """The recording's sequence number of the event (``execscope_events.Seq``), -1 when none."""
    span_id: str = ""
    scope: str = ""
    """Node id of the function the step happened in; ``code_version`` is its module's version."""
    code_version: str = ""
    frame: int | None = None
    """Cinema position of the event (``execscope cinema TRACE --at FRAME``), when known."""


@dataclass(slots=True)
class Chain:
    trace_id: str
    subject: str
    steps: list[Step] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    """What the walk did not follow (budget, limits), one line each."""
    notes: list[str] = field(default_factory=list)
    """What the reader should know about the recording the chain was read from."""

    def lines(self) -> list[str]:
        """The chain as numbered sentences, indented by depth (what ``execscope explain`` prints)."""
        out = [self.subject]
        width = len(str(len(self.steps)))
        for i, step in enumerate(self.steps, 1):
            out.append(f"{i:>{width}}. {'  ' * step.depth}{step.text}")
        if self.left_out:
            out.append(f"Not followed ({len(self.left_out)}):")
            out.extend(f"  - {item}" for item in self.left_out)
        out.extend(f"Note: {note}" for note in self.notes)
        return out

    def text(self) -> str:
        return "\n".join(self.lines()) + "\n"

    def as_dict(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "subject": self.subject, "steps": [asdict(s) for s in self.steps],
                "left_out": list(self.left_out), "notes": list(self.notes)}


# --- the recording, as the walk needs it ------------------------------------------------------------
@dataclass(slots=True)
class _Span:
    span_id: str
    parent: str
    node_id: str
    version: str
    function: str
    file: str
    args: dict[str, str]
    returned: str
    s0: int
    s1: int
    failed: bool
    process: str
    t0: int
    dropped: int
    """Events the recorder left out of this call (its per-call limit or an events budget)."""

    @property
    def short(self) -> str:
        """The function's own name (``price_order``; ``Cart.total`` for a method)."""
        qual = self.node_id.split(":", 1)[1] if ":" in self.node_id else self.function
        return qual

    @property
    def names(self) -> tuple[str, ...]:
        """Names a call of this function is written with: its own name; for ``__init__``, the class."""
        own = self.short.rsplit(".", 1)[-1]
        if own == "__init__" and "." in self.short:
            return own, self.short.rsplit(".", 2)[-2]
        return (own,)


@dataclass(frozen=True, slots=True)
class _Event:
    seq: int
    name: str
    node_id: str
    line: int
    var: str
    value: str
    exc_type: str
    exc_message: str
    ts: int
    caught: bool = False
    """An exception caught in the frame that raised it (``exception.escaped`` false)."""


class _Timeline:
    """One call's events, indexed: by sequence number, line events, writes per variable, and line and
    branch events per statement (lookups are bisections: a loop of a million iterations stays cheap)."""

    def __init__(self, events: list[_Event]) -> None:
        self.events = events
        self.seqs = [ev.seq for ev in events]
        self.lines: list[_Event] = [ev for ev in events if ev.name == "execscope.line"]
        self.line_seqs = [ev.seq for ev in self.lines]
        self.writes: dict[str, list[_Event]] = {}
        self.at_statement: dict[str, list[_Event]] = {}
        for ev in events:
            if ev.name == "execscope.assign":
                self.writes.setdefault(ev.var, []).append(ev)
            elif ev.name == "execscope.line":
                self.at_statement.setdefault(ev.node_id, []).append(ev)
            elif ev.name == "execscope.branch":
                self.at_statement.setdefault(ev.node_id.rsplit(".", 1)[0], []).append(ev)
        self.write_seqs = {var: [ev.seq for ev in evs] for var, evs in self.writes.items()}
        self.statement_seqs = {node: [ev.seq for ev in evs] for node, evs in self.at_statement.items()}

    def line_before(self, seq: int) -> _Event | None:
        i = bisect.bisect_left(self.line_seqs, seq)
        return self.lines[i - 1] if i else None

    def last_write(self, var: str, before: int) -> _Event | None:
        seqs = self.write_seqs.get(var)
        if not seqs:
            return None
        i = bisect.bisect_left(seqs, before)
        return self.writes[var][i - 1] if i else None

    def last_at(self, statement: str, before: int) -> _Event | None:
        seqs = self.statement_seqs.get(statement)
        if not seqs:
            return None
        i = bisect.bisect_left(seqs, before)
        return self.at_statement[statement][i - 1] if i else None

    def next_seq(self, seq: int) -> int | None:
        i = bisect.bisect_right(self.seqs, seq)
        return self.seqs[i] if i < len(self.seqs) else None

    def at(self, seq: int) -> _Event | None:
        i = bisect.bisect_left(self.seqs, seq)
        return self.events[i] if i < len(self.seqs) and self.seqs[i] == seq else None


@dataclass(slots=True)
class _Module:
    """One code version's CPG rows and parsed source."""

    nodes: dict[str, tuple[str, str, int, int, str, str]]
    """node_id -> (kind, name, line, col, parent_id, code)."""
    uses: dict[str, dict[str, list[tuple[str, str]]]]
    """REACHING_DEF: use node -> variable -> [(definition node, via)]."""
    statements: dict[tuple[int, int], ast.stmt]
    lines: list[str]
    source: str


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _normal(target: str) -> str:
    """Target text as ast.unparse writes it (quotes, spacing), so a read and a write compare equal."""
    try:
        return ast.unparse(ast.parse(target, mode="eval").body)
    except (SyntaxError, ValueError, RecursionError):
        return target.strip()


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _call_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


@dataclass(slots=True)
class _Reads:
    """What an expression reads: plain names (outside the calls the recording shows), attribute and
    subscript chains, and the calls made (to be matched with recorded child calls)."""

    names: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)
    calls: list[ast.Call] = field(default_factory=list)


def _header(stmt: ast.stmt) -> list[ast.AST]:
    """The parts of a statement that run when its own line event is recorded (not nested bodies)."""
    if isinstance(stmt, (ast.If, ast.While)):
        return [stmt.test]
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        return [stmt.iter]
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        return [item.context_expr for item in stmt.items]
    if isinstance(stmt, ast.Assign):  # the object written into (``obj.x = v``) is not an input of ``v``
        return [stmt.value]
    if isinstance(stmt, ast.AugAssign):  # ``x += d`` reads x
        read = ast.parse(ast.unparse(stmt.target), mode="eval").body  # the target as a load
        return [read, stmt.value]
    if isinstance(stmt, ast.AnnAssign):
        return [stmt.value] if stmt.value is not None else []
    if isinstance(stmt, (ast.Return, ast.Expr)):
        return [stmt.value] if stmt.value is not None else []
    if isinstance(stmt, ast.Raise):
        return [e for e in (stmt.exc, stmt.cause) if e is not None]
    if isinstance(stmt, ast.Assert):
        return [stmt.test]
    if isinstance(stmt, ast.Match):
        return [stmt.subject]
    if isinstance(stmt, ast.Delete):
        return list(stmt.targets)
    return []


def _reads(parts: list[ast.AST], recorded_calls: set[str] | frozenset[str]) -> _Reads:
    """Reads of ``parts``; the arguments of calls to functions in ``recorded_calls`` are left out (they
    are followed through the callee's parameters instead)."""
    out = _Reads()
    bound: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            if isinstance(node, ast.Lambda):
                return
            for gen in node.generators:
                for name in ast.walk(gen.target):
                    if isinstance(name, ast.Name):
                        bound.add(name.id)
        if isinstance(node, ast.Call):
            out.calls.append(node)
            recorded = _call_name(node) in recorded_calls
            func = node.func
            if isinstance(func, ast.Attribute):
                visit(func.value)  # the object a method is called on is read
            elif not isinstance(func, ast.Name):
                visit(func)
            if not recorded:
                for arg in (*node.args, *(k.value for k in node.keywords)):
                    visit(arg)
            return
        if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(getattr(node, "ctx", None), ast.Load):
            if _root_name(node) is not None:
                out.chains.append(ast.unparse(node))
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in bound:
            if node.id not in out.names:
                out.names.append(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child)

    for part in parts:
        visit(part)
    return out


def _is_literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


class _Walk:
    def __init__(self, store: Store, trace_id: str, max_steps: int) -> None:
        self.store = store
        self.trace = trace_id
        self.budget = max_steps
        self.chain = Chain(trace_id, "")
        self.spans: dict[str, _Span] = {}
        self.children: dict[str, list[_Span]] = {}
        self._timelines: dict[str, _Timeline] = {}
        self._modules: dict[str, _Module | None] = {}
        self._seen: set[tuple[Any, ...]] = set()
        self._film: Any = None
        self._noted_level = False
        self._trace_writes: bool | None = None
        self._reads_cache: dict[tuple[str, str, frozenset[str]], _Reads] = {}
        self._load_spans()

    # --- loading -----------------------------------------------------------------------------------
    def _load_spans(self) -> None:
        rows = self.store.query(SPANS_SQL, parameters={"trace": self.trace, "cap": MAX_SPANS}).rows
        if len(rows) >= MAX_SPANS:
            self.chain.left_out.append(f"the trace has more than {MAX_SPANS} calls: only the first were read")
        for (span_id, parent, node_id, version, function, file, args, returned, s0, s1, failed, process,
             t0, dropped) in rows:
            span = _Span(span_id, parent, node_id, version, function, file,
                         {k[len("execscope.arg."):]: v for k, v in args.items()}, returned, s0, s1, bool(failed),
                         process, t0, dropped)
            self.spans[span_id] = span
        for span in self.spans.values():
            self.children.setdefault(span.parent, []).append(span)

    def timeline(self, span: _Span) -> _Timeline:
        cached = self._timelines.get(span.span_id)
        if cached is None:
            rows = self.store.query(SPAN_EVENTS_SQL, parameters={
                "trace": self.trace, "span": span.span_id, "upto": span.s1 or 2**63, "cap": MAX_SPAN_EVENTS}).rows
            if len(rows) >= MAX_SPAN_EVENTS:
                self.chain.left_out.append(f"{span.short} recorded more than {MAX_SPAN_EVENTS} events: "
                                           "only its latest were searched")
            cached = _Timeline([_Event(*row) for row in reversed(rows)])
            self._timelines[span.span_id] = cached
            if span.dropped:
                self.chain.notes.append(f"{span.short} ran {span.dropped} more statements/writes than were recorded "
                                        "(the recorder's per-call limit or events budget): steps in it are the "
                                        "latest recorded ones, not necessarily the last it made")
        return cached

    def events(self, span: _Span) -> list[_Event]:
        return self.timeline(span).events

    def module(self, version: str) -> _Module | None:
        if version in self._modules:
            return self._modules[version]
        module: _Module | None = None
        rows = self.store.query("SELECT any(source) FROM cpg_sources WHERE code_version = {v:String}",
                                parameters={"v": version}).rows
        source = rows[0][0] if rows and rows[0][0] else ""
        if source:
            try:
                tree = ast.parse(source)
            except (SyntaxError, ValueError, RecursionError):
                tree = None
            if tree is not None:
                statements = {(n.lineno, n.col_offset): n for n in ast.walk(tree) if isinstance(n, ast.stmt)}
                nodes = {r[0]: tuple(r[1:]) for r in self.store.query(
                    "SELECT node_id, any(kind), any(name), any(line), any(col), any(parent_id), any(code) "
                    "FROM cpg_nodes WHERE code_version = {v:String} GROUP BY node_id",
                    parameters={"v": version}).rows}
                uses: dict[str, dict[str, list[tuple[str, str]]]] = {}
                for src, dst, label, via in self.store.query(
                        "SELECT DISTINCT src, dst, label, properties['via'] FROM cpg_edges "
                        "WHERE code_version = {v:String} AND kind = 'REACHING_DEF'", parameters={"v": version}).rows:
                    uses.setdefault(dst, {}).setdefault(label, []).append((src, via))
                module = _Module(nodes, uses, statements, source.splitlines(), source)
        self._modules[version] = module
        return module

    def film(self) -> Any:
        if self._film is None:
            from execscope.queries.cinema import open_cinema

            self._film = open_cinema(self.store, self.trace)
        return self._film

    def frame_of(self, span: _Span, seq: int, ts: int = 0) -> int | None:
        try:
            film = self.film()
        except LookupError:
            return None
        key = (ts, seq, 0) if film.multi else seq
        pos = film.position_of(key)
        return pos if pos < film.total else None

    # --- source helpers ----------------------------------------------------------------------------
    def statement(self, span: _Span, node_id: str) -> tuple[ast.stmt | None, int, str]:
        """(AST statement, line, first line of code) of a statement node of ``span``'s module."""
        module = self.module(span.version)
        if module is None:
            return None, 0, ""
        info = module.nodes.get(node_id)
        if info is None:
            return None, 0, ""
        _kind, _name, line, col, _parent, code = info
        stmt = module.statements.get((line, col))
        text = module.lines[line - 1].strip() if 0 < line <= len(module.lines) else code
        return stmt, line, text

    def segment(self, span: _Span, node: ast.AST) -> str:
        """The source text of an expression as written (``ast.unparse`` when it cannot be cut out)."""
        module = self.module(span.version)
        text = ast.get_source_segment(module.source, node) if module is not None else None
        return text if text is not None else ast.unparse(node)

    def write_statement(self, span: _Span, write: _Event) -> _Event | None:
        """The event that started the statement making ``write``: its line event, or for a loop target
        the loop's latest line or branch event (a loop's next iteration records no new line event)."""
        module = self.module(span.version)
        info = module.nodes.get(write.node_id) if module is not None else None
        stmt_node = info[4] if info is not None and info[0] == "target" else ""
        found = self.timeline(span).last_at(stmt_node, write.seq) if stmt_node else None
        if found is not None:
            if found.name != "execscope.line":  # a loop's branch: name the loop statement itself
                found = _Event(found.seq, "execscope.line", stmt_node, found.line, "", "", "", "", found.ts)
            return found
        return self.line_before(span, write.seq)

    def statement_at(self, span: _Span, line: int) -> str:
        """The node id of the (outermost) statement of ``span``'s function starting at ``line``."""
        module = self.module(span.version)
        if module is None or not line:
            return ""
        found = sorted((info[3], node_id) for node_id, info in module.nodes.items()
                       if info[2] == line and node_id.startswith(span.node_id + ":")
                       and (info[2], info[3]) in module.statements and info[0] in _STATEMENT_KINDS)
        return found[0][1] if found else ""

    def unrecorded(self, node_id: str, seq: int, ts: int = 0, note: bool = True) -> _Event:
        """A statement the recording has no line event for (recorded below ``--level statements``),
        placed at ``seq``: the walk reads its code and data flow instead of its events."""
        if note and not self._noted_level:
            self._noted_level = True
            self.chain.notes.append("parts of this trace were recorded without statements: values between calls "
                                    "are read from the code (`execscope run --level statements` records every write)")
        return _Event(seq, "execscope.line", node_id, 0, "", "", "", "", ts)

    def where(self, span: _Span, line: int) -> str:
        return f"{os.path.basename(span.file) or span.file}:{line}"

    # --- the walk ----------------------------------------------------------------------------------
    def add(self, depth: int, kind: str, text: str, span: _Span | None = None, **fields: Any) -> bool:
        """Append a step; False (and nothing added) once the budget is spent."""
        if self.budget <= 0:
            self.chain.left_out.append(f"(depth {depth}) {_short(text, 140)}")
            return False
        self.budget -= 1
        if span is not None:
            fields.setdefault("function", span.function)
            fields.setdefault("file", span.file)
            fields.setdefault("span_id", span.span_id)
            fields.setdefault("scope", span.node_id)
            fields.setdefault("code_version", span.version)
            if fields.get("seq", -1) >= 0 and "frame" not in fields:
                fields["frame"] = self.frame_of(span, fields["seq"], fields.pop("ts", 0))
        fields.pop("ts", None)
        self.chain.steps.append(Step(depth, kind, text, **fields))
        return True

    def line_before(self, span: _Span, seq: int) -> _Event | None:
        return self.timeline(span).line_before(seq)

    def next_event_seq(self, span: _Span, seq: int) -> int:
        found = self.timeline(span).next_seq(seq)
        return found if found is not None else (span.s1 or 2**63)

    def calls_between(self, span: _Span, lo: int, hi: int) -> list[_Span]:
        return sorted((c for c in self.children.get(span.span_id, ()) if lo < c.s0 < hi), key=lambda c: c.s0)

    def explain_exception(self, span: _Span, ev: _Event) -> None:
        # follow the exception down to the call that raised it first
        while True:
            inner = [c for c in self.calls_between(span, 0, ev.seq + 1) if c.failed]
            origin = None
            for child in reversed(inner):
                for cev in reversed(self.events(child)):
                    if cev.name == "exception" and cev.exc_type == ev.exc_type and cev.exc_message == ev.exc_message:
                        origin = (child, cev)
                        break
                if origin:
                    break
            if origin is None:
                break
            span, ev = origin
        stmt_ev = self.line_before(span, ev.seq)
        if ev.caught and stmt_ev is not None and stmt_ev.node_id != ev.node_id:  # the statement that raised
            stmt_ev = self.timeline(span).last_at(ev.node_id, ev.seq) or stmt_ev
        if stmt_ev is None:  # recorded without statements: the statement at the exception's line
            node_id = self.statement_at(span, ev.line)
            stmt_ev = self.unrecorded(node_id, span.s0) if node_id else None
        stmt, line, code = self.statement(span, stmt_ev.node_id) if stmt_ev else (None, ev.line, "")
        line = line or ev.line
        kind = ev.exc_type.rsplit(".", 1)[-1]
        message = f": {_short(ev.exc_message, VALUE_CHARS)}" if ev.exc_message else ""
        self.chain.subject = (f"Why trace {self.trace} raised {kind} (caught in {span.short}){message}" if ev.caught
                              else f"Why trace {self.trace} failed: {kind}{message}")
        self.add(0, "exception", f"{kind} raised at {self.where(span, line)} in {span.short}"
                 f"{' (and caught there)' if ev.caught else ''}: `{_short(code, CODE_CHARS)}`", span, line=line,
                 code=code,
                 value=ev.exc_message, seq=ev.seq, ts=ev.ts)
        if stmt_ev is None:
            return
        if isinstance(stmt, ast.Raise):
            if self.explain_conditions(span, stmt_ev, 1, until=ev.seq):
                return
        self.explain_statement(span, stmt_ev, ev.seq, 1)

    def explain_conditions(self, span: _Span, stmt_ev: _Event, depth: int, until: int | None = None) -> bool:
        """The enclosing ``if``/``while`` tests that led to a statement (that ran before ``until``, by
        default the statement's own event), with the arm taken."""
        until = stmt_ev.seq if until is None else until
        module = self.module(span.version)
        if module is None:
            return False
        found = False
        node = module.nodes.get(stmt_ev.node_id)
        parent = node[4] if node else ""
        hops = 0
        while parent and hops < 2 and parent != span.node_id:
            info = module.nodes.get(parent)
            if info is None:
                break
            if info[0] in ("if", "while"):
                timeline = self.timeline(span)
                seen = timeline.at_statement.get(parent, [])
                last = bisect.bisect_left(timeline.statement_seqs.get(parent, []), until)
                arm, cond_ev, arm_ev = "", None, None
                for ev in reversed(seen[max(0, last - 64):last]):  # the latest line and arm of the test
                    if ev.name == "execscope.branch" and arm_ev is None:
                        arm_ev, arm = ev, ev.node_id[len(parent) + 1:]
                    elif ev.name == "execscope.line" and cond_ev is None:
                        cond_ev = ev
                    if arm_ev is not None and cond_ev is not None:
                        break
                if cond_ev is None and arm_ev is not None:  # recorded at --level branches: the arm, no line
                    cond_ev = self.unrecorded(parent, arm_ev.seq, arm_ev.ts)
                if cond_ev is not None:
                    _stmt, line, code = self.statement(span, parent)
                    outcome = {"true": "true", "false": "false", "body": "true"}.get(arm, arm or "taken")
                    if not self.add(depth, "condition", f"reached because `{_short(code, CODE_CHARS)}` at "
                                    f"{self.where(span, line)} was {outcome}", span, line=line, code=code,
                                    seq=cond_ev.seq, ts=cond_ev.ts):
                        return True
                    found = True
                    self.explain_statement(span, cond_ev, self.next_event_seq(span, cond_ev.seq), depth + 1)
                    hops += 1
            parent = info[4]
        return found

    def explain_statement(self, span: _Span, stmt_ev: _Event, end: int, depth: int,
                          skip: tuple[str, ...] = ()) -> None:
        """The inputs of one execution of a statement (its line event ``stmt_ev``, up to seq ``end``)."""
        stmt, _line, _code = self.statement(span, stmt_ev.node_id)
        calls = self.calls_between(span, stmt_ev.seq, end)
        called = {name for c in calls for name in c.names}
        reads = _reads(_header(stmt), called) if stmt is not None else _Reads()
        matched = self.match_calls(calls, reads.calls)
        # writes made elsewhere (another call or thread) to what the statement reads
        covered: set[str] = set()
        for chain_text in reads.chains:
            root = chain_text.split(".", 1)[0].split("[", 1)[0]
            if root in skip:
                continue
            if self.explain_chain_read(span, chain_text, stmt_ev.seq, depth):
                covered.add(root)
        for child in matched:
            if not child.short.endswith(".__init__"):  # a constructor's value is the object, not None
                self.explain_return(child, depth)
        module = self.module(span.version)
        edges = module.uses.get(stmt_ev.node_id, {}) if module is not None else {}
        ranked: list[tuple[int, int, str, str]] = []
        for i, name in enumerate(reads.names):
            if name in skip or name in covered:
                continue
            defs = edges.get(name)
            if defs is not None and all(self.is_code(span, src) for src, _via in defs):
                continue  # a function, class or module the statement calls or names: code, not data
            if defs is None and edges and name not in span.args and not self.has_write(span, name, stmt_ev.seq):
                continue  # not a variable the data flow knows here (a builtin)
            via = defs[0][1] if defs else ""
            # values computed in this call first, then what it was handed, then globals
            rank = 0 if via != "global" and self.has_write(span, name, stmt_ev.seq) else (
                1 if via != "global" and name in span.args else 2)
            ranked.append((rank, i, name, via))
        for _rank, _i, name, via in sorted(ranked):
            self.explain_name(span, name, stmt_ev.seq, depth, via=via, use_node=stmt_ev.node_id)

    def is_code(self, span: _Span, node_id: str) -> bool:
        module = self.module(span.version)
        info = module.nodes.get(node_id) if module is not None else None
        if info is None:
            return node_id.endswith(":<module>")
        if info[0] in ("class", "import", "import_from", "lambda"):
            return True
        return info[0] == "function" and node_id != span.node_id

    def has_write(self, span: _Span, name: str, before: int) -> bool:
        return self.timeline(span).last_write(name, before) is not None

    def match_calls(self, calls: list[_Span], syntax: list[ast.Call]) -> list[_Span]:
        """Recorded calls that the statement makes itself (by name), in order."""
        names = [_call_name(c) for c in syntax]
        return [child for child in calls if any(name in names for name in child.names)]

    def last_write(self, span: _Span, name: str, before: int) -> _Event | None:
        return self.timeline(span).last_write(name, before)

    def explain_name(self, span: _Span, name: str, before: int, depth: int, via: str = "",
                     observed: str | None = None, observed_where: str = "", use_node: str = "") -> None:
        write = None if via == "global" else self.last_write(span, name, before)
        if write is None and via != "global" and use_node and not self.recorded_writes(span):
            definition = self.static_definition(span, name, use_node)
            if definition:
                self.explain_unrecorded_write(span, name, definition, before, depth)
                return
        if write is None and via != "global" and name in span.args:
            self.check_mutation(span, name, span.s0, span.args[name], before, observed, observed_where, depth)
            self.explain_argument(span, name, depth)
            return
        if write is None:
            found = self.write_elsewhere(span, [name], "", before)
            if found is None:
                key = ("unknown", span.span_id, name)
                if key not in self._seen:
                    self._seen.add(key)
                    why_not = ("set before recording started, or by code that was not recorded" if self.trace_writes()
                               else "writes were not recorded: `execscope run --level statements` records them")
                    self.add(depth, "origin", f"`{name}` was not written in the recording before this point "
                             f"({why_not})", span, var=name)
                return
            wspan, write = found
            self.explain_write(wspan, write, depth, elsewhere_from=span)
            return
        self.check_mutation(span, name, write.seq, write.value, before, observed, observed_where, depth)
        self.explain_write(span, write, depth)

    def trace_writes(self) -> bool:
        """Whether the trace recorded any write (it was recorded at ``--level statements``)."""
        if self._trace_writes is None:
            self._trace_writes = bool(self.store.query(
                "SELECT count() FROM (SELECT 1 FROM execscope_events WHERE TraceId = {trace:String} "
                "AND EventName = 'execscope.assign' LIMIT 1)", parameters={"trace": self.trace}).rows[0][0])
        return self._trace_writes

    def recorded_writes(self, span: _Span) -> bool:
        return bool(self.timeline(span).writes)

    def static_definition(self, span: _Span, name: str, use_node: str) -> str:
        """The statement that defines ``name`` for ``use_node`` when the data flow names exactly one
        (a local assignment, not a parameter): '' otherwise."""
        module = self.module(span.version)
        if module is None:
            return ""
        defs = {src for src, via in module.uses.get(use_node, {}).get(name, ()) if via == "local"}
        if len(defs) != 1:
            return ""
        info = module.nodes.get(next(iter(defs)))
        if info is None or info[0] != "target":
            return ""
        return info[4]

    def explain_unrecorded_write(self, span: _Span, name: str, stmt_node: str, before: int, depth: int) -> None:
        key = ("static", span.span_id, stmt_node, name)
        if key in self._seen:
            return
        self._seen.add(key)
        stmt, line, code = self.statement(span, stmt_node)
        calls = [c for c in self.children.get(span.span_id, ()) if c.s0 < before]
        reads = _reads(_header(stmt), {n for c in calls for n in c.names}) if stmt is not None else _Reads()
        latest: dict[str, _Span] = {}
        for child in sorted(self.match_calls(calls, reads.calls), key=lambda c: c.s0):
            latest[child.short] = child
        matched = list(latest.values())
        value_node = getattr(stmt, "value", None)
        if len(matched) == 1 and isinstance(value_node, ast.Call) and _call_name(value_node) in matched[0].names:
            shown = _short(self.segment(span, value_node), CODE_CHARS)
            returned = _short(matched[0].returned, VALUE_CHARS) or "None"
            text = (f"`{name}` was set at {self.where(span, line)} from `{shown}` "
                    f"({matched[0].short} returned {returned})")
        else:
            text = f"`{name}` was set at {self.where(span, line)}: `{_short(code, CODE_CHARS)}` (value not recorded)"
        if not self.add(depth, "write", text, span, line=line, code=code, var=name):
            return
        start = max((c.s0 for c in matched), default=span.s0) - 1
        self.explain_statement(span, self.unrecorded(stmt_node, start), before, depth + 1)

    def write_elsewhere(self, span: _Span, names: list[str], attr: str, before: int
                        ) -> tuple[_Span, _Event] | None:
        single = len({s.process for s in self.spans.values()}) == 1  # one process: no list of its calls needed
        same = [] if single else [s.span_id for s in self.spans.values() if s.process == span.process]
        rows = self.store.query(WRITES_ELSEWHERE_SQL, parameters={
            "trace": self.trace, "before": before, "all": int(single), "spans": same, "names": names,
            "attr": attr}).rows
        wanted = {_normal(n) for n in names}
        for span_id, seq, var, _value, _node in rows:  # exact target text first, then the attribute
            if _normal(var) in wanted:
                return self._write_event(span_id, seq)
        for span_id, seq, var, _value, _node in rows:
            if attr and var.endswith(attr) and (var.startswith("self.") or var.startswith("cls.")
                                                or var.count(".") == attr.count(".")):
                return self._write_event(span_id, seq)
        return None

    def _write_event(self, span_id: str, seq: int) -> tuple[_Span, _Event] | None:
        wspan = self.spans.get(span_id)
        if wspan is None:
            return None
        ev = self.timeline(wspan).at(seq)
        return (wspan, ev) if ev is not None else None

    def explain_chain_read(self, span: _Span, chain_text: str, before: int, depth: int) -> bool:
        """An attribute/subscript read (``settings.batch_size``) that another call wrote: True when found."""
        attr = "." + chain_text.rsplit(".", 1)[1] if "." in chain_text and not chain_text.endswith("]") else ""
        if attr and "[" in attr:
            attr = ""
        found = self.write_elsewhere(span, [chain_text, _normal(chain_text)], attr, before)
        if found is None:
            return False
        wspan, write = found
        root = chain_text.split(".", 1)[0].split("[", 1)[0]
        if wspan.span_id == span.span_id:
            root_write = self.last_write(span, root, before)
            if root_write is not None and root_write.seq > write.seq:
                return False  # the object was replaced after that write
        self.explain_write(wspan, write, depth, elsewhere_from=span)
        return True

    def relation(self, wspan: _Span, reader: _Span) -> str:
        """How a call that wrote a value relates to the call that read it ('' when it is the same)."""
        if wspan.span_id == reader.span_id:
            return ""
        ancestors: list[_Span] = []
        node: _Span | None = reader
        while node is not None:
            ancestors.append(node)
            node = self.spans.get(node.parent)
        ids = {a.span_id for a in ancestors}
        # the writer's chain up to the first call that is also on the reader's stack
        node, below = wspan, None
        while node is not None and node.span_id not in ids:
            below, node = node, self.spans.get(node.parent)
        if wspan.node_id.endswith(":<module>") or (below is not None and below.node_id.endswith(":<module>")):
            module = wspan.node_id.split(":", 1)[0]
            return f", when module {module} was imported" if wspan.node_id.endswith(":<module>") else (
                f", in {wspan.short} while module {below.node_id.split(':', 1)[0]} was imported"
                if below is not None else "")
        if below is not None and node is not None:
            site = self.line_before(node, below.s0)
            if site is not None:
                stmt, line, code = self.statement(node, site.node_id)
                if stmt is not None and not self.match_calls([below], _reads(_header(stmt), set()).calls):
                    how = "another thread" if _THREAD_STARTS.search(code) else "a call made indirectly"
                    return (f", in {how} started by {node.short} at {self.where(node, line)} "
                            f"(`{_short(code, 60)}`)")
        return f", in {wspan.short}"

    def explain_write(self, span: _Span, write: _Event, depth: int, elsewhere_from: _Span | None = None) -> None:
        key = ("write", span.span_id, write.seq)
        if key in self._seen:
            return
        self._seen.add(key)
        stmt_ev = self.write_statement(span, write)
        stmt, line, code = self.statement(span, stmt_ev.node_id) if stmt_ev else (None, 0, "")
        var, value = write.var, _short(write.value, VALUE_CHARS)
        where = self.where(span, line) if line else span.short
        extra = self.relation(span, elsewhere_from) if elsewhere_from is not None else ""
        calls = self.calls_between(span, stmt_ev.seq, write.seq) if stmt_ev else []
        reads = _reads(_header(stmt), {n for c in calls for n in c.names}) if stmt is not None else _Reads()
        matched = self.match_calls(calls, reads.calls) if stmt is not None else []
        if stmt_ev is not None and self.updates_itself(stmt, var, reads):
            run = self.update_run(span, write)
            if len(run) >= 2:
                self.explain_updates(span, run, depth, extra)
                return
        value_node = getattr(stmt, "value", None)
        if isinstance(stmt, ast.AugAssign):
            before = self.value_before(span, var, write.seq)
            was = f" (it was {before})" if before is not None else ""
            text = f"`{var}` became {value} at {where}{extra} by `{_short(code, CODE_CHARS)}`{was}"
        elif len(matched) == 1 and isinstance(value_node, ast.Call) and _call_name(value_node) in matched[0].names:
            shown = _short(self.segment(span, value_node), CODE_CHARS)
            text = f"`{var}` became {value} at {where}{extra} from `{shown}`"
        else:
            text = f"`{var}` became {value} at {where}{extra}: `{_short(code, CODE_CHARS)}`"
        leaf = stmt is not None and not matched and not reads.names and not reads.chains and (
            value_node is None or _is_literal(value_node))
        if leaf:
            text += " (a constant in the code)"
        if not self.add(depth, "write", text, span, line=line, code=code, var=var, value=write.value, seq=write.seq,
                        ts=write.ts):
            return
        if stmt_ev is not None and not leaf:
            self.explain_statement(span, stmt_ev, write.seq, depth + 1)

    def reads_of(self, span: _Span, node_id: str, calls: list[_Span]) -> _Reads:
        """What statement ``node_id`` reads, leaving out the arguments of the recorded ``calls`` (cached)."""
        called = frozenset(n for c in calls for n in c.names)
        key = (span.version, node_id, called)
        found = self._reads_cache.get(key)
        if found is None:
            stmt, _line, _code = self.statement(span, node_id)
            found = self._reads_cache[key] = _reads(_header(stmt), called) if stmt is not None else _Reads()
        return found

    @staticmethod
    def updates_itself(stmt: ast.stmt | None, var: str, reads: _Reads) -> bool:
        """The statement computes ``var`` from its own value (``x += 1``, ``x = x - x * d``), not only by
        handing it to a recorded call (``x = f(x)``: that value is the call's)."""
        if stmt is None or "[" in var or "." in var:
            return False
        return isinstance(stmt, ast.AugAssign) or var in reads.names

    def value_before(self, span: _Span, var: str, seq: int) -> str | None:
        prev = self.last_write(span, var, seq)
        if prev is not None:
            return _short(prev.value, VALUE_CHARS)
        return _short(span.args[var], VALUE_CHARS) if var in span.args else None

    def update_run(self, span: _Span, write: _Event) -> list[tuple[_Event, _Event]]:
        """Consecutive self-updates of ``write.var`` ending at ``write``: [(line event, write)], oldest first."""
        run: list[tuple[_Event, _Event]] = []
        current: _Event | None = write
        while current is not None and len(run) < 100_000:
            stmt_ev = self.write_statement(span, current)
            if stmt_ev is None:
                break
            stmt, _l, _c = self.statement(span, stmt_ev.node_id)
            calls = self.calls_between(span, stmt_ev.seq, current.seq)
            if stmt is None or not self.updates_itself(stmt, current.var, self.reads_of(span, stmt_ev.node_id, calls)):
                break
            run.append((stmt_ev, current))
            current = self.last_write(span, write.var, current.seq)
        run.reverse()
        return run

    def explain_updates(self, span: _Span, run: list[tuple[_Event, _Event]], depth: int, extra: str) -> None:
        var = run[-1][1].var
        first_stmt = run[0][0]
        before = self.value_before(span, var, run[0][1].seq)
        values = [before] + [_short(w.value, VALUE_CHARS) for _s, w in run]
        numbers = []
        for v in values:
            try:
                numbers.append(float(v)) if v is not None else None
            except ValueError:
                numbers = []
                break
        verb = "updated"
        if len(numbers) == len(values) and len(numbers) > 1:
            if all(b < a for a, b in zip(numbers, numbers[1:])):
                verb = "cut"
            elif all(b > a for a, b in zip(numbers, numbers[1:])):
                verb = "increased"
        times = {1: "once", 2: "twice"}.get(len(run), f"{len(run)} times")
        codes = []
        parts = []
        shown = run if len(run) <= 4 else run[:2] + run[-2:]
        for i, (stmt_ev, write) in enumerate(shown):
            _stmt, line, code = self.statement(span, stmt_ev.node_id)
            codes.append(code)
            if len(run) > 4 and i == 2:
                parts.append(f"… {len(run) - 4} more …")
            parts.append(f"→ {_short(write.value, VALUE_CHARS)} at {self.where(span, line)}")
        start = f"{before} " if before is not None else ""
        same = len(set(codes)) == 1
        text = (f"`{var}` was {verb} {times} in {span.short}{extra}: {start}{', '.join(parts)}"
                + (f", each by `{_short(codes[0], CODE_CHARS)}`" if same else ""))
        _stmt, line, code = self.statement(span, run[-1][0].node_id)
        for _s, w in run:
            self._seen.add(("write", span.span_id, w.seq))
        last = run[-1][1]
        if not self.add(depth, "updates", text, span, line=line, code=code, var=var, value=last.value, seq=last.seq,
                        ts=last.ts):
            return
        # what changed it: the other inputs of the latest update (of the latest three when they differ)
        latest = run[-1:] if len({s.node_id for s, _w in run[-3:]}) == 1 else run[-3:]
        for stmt_ev, write in latest:
            self.explain_statement(span, stmt_ev, write.seq, depth + 1, skip=(var,))
        # and where the value it started from came from
        self.explain_name(span, var, first_stmt.seq, depth + 1)

    def explain_return(self, span: _Span, depth: int) -> None:
        key = ("return", span.span_id)
        if key in self._seen:
            return
        self._seen.add(key)
        lines = self.timeline(span).lines
        stmt_ev = lines[-1] if lines and not span.dropped else None
        if stmt_ev is None:  # its last statements not recorded: the function's only return statement, if one
            node_id = self.only_return(span)
            # after the latest recorded event when the recorder left some out, else from the call's start
            after = lines[-1].seq if lines and span.dropped else span.s0
            stmt_ev = self.unrecorded(node_id, after, note=not span.dropped) if node_id else None
        returned = _short(span.returned, VALUE_CHARS) or "None"
        if stmt_ev is None:
            self.add(depth, "return", f"{span.short} returned {returned}", span, value=span.returned)
            return
        _stmt, line, code = self.statement(span, stmt_ev.node_id)
        if not self.add(depth, "return", f"{span.short} returned {returned} at {self.where(span, line)}: "
                        f"`{_short(code, CODE_CHARS)}`", span, line=line, code=code, value=span.returned,
                        seq=stmt_ev.seq, ts=stmt_ev.ts):
            return
        self.explain_statement(span, stmt_ev, span.s1 or 2**63, depth + 1)

    def only_return(self, span: _Span) -> str:
        module = self.module(span.version)
        info = module.nodes.get(span.node_id) if module is not None else None
        if module is None or info is None:
            return ""
        func = module.statements.get((info[2], info[3]))
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return ""
        returns: list[ast.Return] = []
        todo: list[ast.AST] = list(func.body)
        while todo:
            node = todo.pop()
            if isinstance(node, ast.Return):
                returns.append(node)
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                todo.extend(ast.iter_child_nodes(node))
        if len(returns) != 1:
            return ""
        return self.statement_at(span, returns[0].lineno)

    def call_site(self, span: _Span) -> tuple[_Span, _Event, ast.stmt | None, ast.Call | None] | None:
        parent = self.spans.get(span.parent)
        if parent is None:
            return None
        site = self.line_before(parent, span.s0)
        if site is None:  # recorded without statements: the one statement of the caller naming the callee
            module = self.module(parent.version)
            if module is None:
                return None
            def names_callee(stmt: ast.stmt) -> bool:
                return any(isinstance(c, ast.Call) and _call_name(c) in span.names
                           for part in _header(stmt) for c in ast.walk(part))

            sites = sorted({node_id for node_id, info in module.nodes.items()
                            if node_id.startswith(parent.node_id + ":") and info[0] in _STATEMENT_KINDS
                            and (info[2], info[3]) in module.statements
                            and names_callee(module.statements[(info[2], info[3])])})
            if len(sites) != 1:
                return None
            site = self.unrecorded(sites[0], parent.s0)
        stmt, _line, _code = self.statement(parent, site.node_id)
        if stmt is None:
            return parent, site, None, None
        siblings = [c for c in self.calls_between(parent, site.seq, span.s0 + 1) if c.short == span.short]
        calls = [c for c in ast.walk(stmt) if isinstance(c, ast.Call) and _call_name(c) in span.names]
        calls.sort(key=lambda c: (c.lineno, c.col_offset))
        nth = len(siblings) - 1
        call = calls[nth] if 0 <= nth < len(calls) else (calls[-1] if calls else None)
        return parent, site, stmt, call

    def parameters(self, span: _Span) -> list[str]:
        module = self.module(span.version)
        info = module.nodes.get(span.node_id) if module is not None else None
        if module is None or info is None:
            return list(span.args)
        stmt = module.statements.get((info[2], info[3]))
        if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return list(span.args)
        a = stmt.args
        return [p.arg for p in (*a.posonlyargs, *a.args)]

    def explain_argument(self, span: _Span, param: str, depth: int) -> None:
        key = ("arg", span.span_id, param)
        if key in self._seen:
            return
        self._seen.add(key)
        value = _short(span.args.get(param, ""), VALUE_CHARS)
        site = self.call_site(span)
        if site is None:
            self.add(depth, "argument", f"`{param}` = {value} was passed to {span.short} by code that was not "
                     "recorded", span, var=param, value=span.args.get(param, ""))
            return
        parent, site_ev, stmt, call = site
        _s, line, code = self.statement(parent, site_ev.node_id)
        where = self.where(parent, line)
        expr = self.argument_expression(span, param, call)
        if call is None or expr is None:
            how = "another thread" if _THREAD_STARTS.search(code) else "code that calls it indirectly"
            self.add(depth, "argument", f"`{param}` = {value} was passed to {span.short} when {parent.short} started "
                     f"it at {where} (`{_short(code, CODE_CHARS)}`, {how})", span, line=line, code=code, var=param,
                     value=span.args.get(param, ""), seq=site_ev.seq, ts=site_ev.ts)
            return
        shown = self.segment(parent, expr)
        literal = _is_literal(expr)
        tail = f" as the constant `{_short(shown, 60)}`" if literal else (
            "" if isinstance(expr, ast.Name) and expr.id == param else f" as `{_short(shown, 60)}`")
        if not self.add(depth, "argument", f"`{param}` = {value} was passed to {span.short} by {parent.short} at "
                        f"{where}{tail}: `{_short(code, CODE_CHARS)}`", parent, line=line, code=code, var=param,
                        value=span.args.get(param, ""), seq=site_ev.seq, ts=site_ev.ts):
            return
        if literal:
            return
        inner = self.calls_between(parent, site_ev.seq, span.s0)
        called = {name for c in inner for name in c.names}
        reads = _reads([expr], called)
        for chain_text in reads.chains:
            self.explain_chain_read(parent, chain_text, span.s0, depth + 1)
        for child in self.match_calls(inner, reads.calls):
            if not child.short.endswith(".__init__"):
                self.explain_return(child, depth + 1)
        for name in reads.names:
            if self.is_code_name(parent, name, site_ev):
                continue
            observed = span.args.get(param) if isinstance(expr, ast.Name) else None
            self.explain_name(parent, name, span.s0, depth + 1, observed=observed,
                              observed_where=f"passed to {span.short} at {where}", use_node=site_ev.node_id)

    def is_code_name(self, span: _Span, name: str, site_ev: _Event) -> bool:
        module = self.module(span.version)
        defs = module.uses.get(site_ev.node_id, {}).get(name) if module is not None else None
        if defs:
            return all(self.is_code(span, src) for src, _via in defs)
        return name not in span.args and not self.has_write(span, name, site_ev.seq) and bool(
            module is not None and module.uses.get(site_ev.node_id))

    def argument_expression(self, span: _Span, param: str, call: ast.Call | None) -> ast.expr | None:
        if call is None:
            return None
        for kw in call.keywords:
            if kw.arg == param:
                return kw.value
        params = self.parameters(span)
        if param not in params:
            return None
        index = params.index(param)
        if isinstance(call.func, ast.Attribute) and params and params[0] in ("self", "cls"):
            if index == 0:
                return call.func.value
            index -= 1
        elif params and params[0] in ("self", "cls") and span.short.endswith(".__init__"):
            index -= 1
        positional = [a for a in call.args if not isinstance(a, ast.Starred)]
        if len(positional) != len(call.args):
            return None
        return positional[index] if 0 <= index < len(positional) else None

    # --- in-place changes --------------------------------------------------------------------------
    def check_mutation(self, span: _Span, name: str, since: int, value: str, before: int, observed: str | None,
                       observed_where: str, depth: int) -> None:
        """``name`` was ``value`` at ``since``; if it was seen as something else at ``before`` (or written
        through a subscript/attribute meanwhile), say where it changed in place."""
        found = self.mutations(span, name, since, before, 0)
        if observed is None or observed == value:
            if not found:
                return
        key = ("mutation", span.span_id, name, since)
        if key in self._seen:
            return
        self._seen.add(key)
        seen_as = f" but {_short(observed, VALUE_CHARS)} when {observed_where}" if observed not in (None, value) else ""
        head = f"`{name}` was {_short(value, VALUE_CHARS)} at {self.where(span, self.line_of(span, since))}{seen_as}"
        if not found:
            self.add(depth, "mutation", f"{head}: changed in place by code that was not recorded", span, var=name,
                     value=observed or "")
            return
        wspan, write, via = found[-1]
        stmt_ev = self.write_statement(wspan, write)
        _stmt, line, code = self.statement(wspan, stmt_ev.node_id) if stmt_ev else (None, 0, "")
        count = sum(1 for f in found if f[0].span_id == wspan.span_id and f[1].var == write.var)
        times = "" if count == 1 else f" ({count} writes, the last {_short(write.value, 40)})"
        self.add(depth, "mutation", f"{head}: changed in place by {wspan.short}{via} with `{_short(code, CODE_CHARS)}` "
                 f"at {self.where(wspan, line)}{times}", wspan, line=line, code=code, var=write.var,
                 value=write.value, seq=write.seq, ts=write.ts)

    def line_of(self, span: _Span, seq: int) -> int:
        if seq == span.s0:
            module = self.module(span.version)
            info = module.nodes.get(span.node_id) if module is not None else None
            return info[2] if info else 0
        ev = self.line_before(span, seq)
        if ev is None:
            return 0
        return self.statement(span, ev.node_id)[1] or ev.line

    def mutations(self, span: _Span, name: str, since: int, before: int, level: int
                  ) -> list[tuple[_Span, _Event, str]]:
        """Writes through ``name`` (``name[i] = ...``, ``name.x = ...``) in ``span`` between two points,
        and in the calls ``name`` was handed to (up to 4 calls deep): (call, write event, how it got there)."""
        out: list[tuple[_Span, _Event, str]] = []
        timeline = self.timeline(span)
        found: list[_Event] = []
        for var, writes in timeline.writes.items():  # name[i] = ..., name.x = ...
            if var.startswith(name + "[") or var.startswith(name + "."):
                seqs = timeline.write_seqs[var]
                found += writes[bisect.bisect_right(seqs, since):bisect.bisect_left(seqs, before)]
        for node_id, events in timeline.at_statement.items():  # name.append(...), name.sort(), ...
            stmt, _l, _c = self.statement(span, node_id)
            if stmt is None or not any(isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                                       and c.func.attr in _MUTATORS and _root_name(c.func.value) == name
                                       for part in _header(stmt) for c in ast.walk(part)):
                continue
            seqs = timeline.statement_seqs[node_id]
            found += [_Event(ev.seq, "execscope.assign", ev.node_id, ev.line, name, "", "", "", ev.ts)
                      for ev in events[bisect.bisect_right(seqs, since):bisect.bisect_left(seqs, before)]
                      if ev.name == "execscope.line"]
        out += [(span, ev, "") for ev in sorted(found, key=lambda e: e.seq)]
        if level >= 4:
            return out
        for child in self.calls_between(span, since, before)[:MAX_CALLS_SEARCHED]:
            site = self.line_before(span, child.s0)
            if site is None:
                continue
            stmt, line, _code = self.statement(span, site.node_id)
            if stmt is None:
                continue
            for call in ast.walk(stmt):
                if not (isinstance(call, ast.Call) and self.match_calls([child], [call])):
                    continue
                for param in self.parameters(child):
                    expr = self.argument_expression(child, param, call)
                    if isinstance(expr, ast.Name) and expr.id == name:
                        for wspan, ev, via in self.mutations(child, param, child.s0 - 1, child.s1 + 1, level + 1):
                            out.append((wspan, ev, via or f" (handed `{name}` by {span.short} at "
                                        f"{self.where(span, line)})"))
                break
        return out


def _exception_start(walk: _Walk) -> tuple[_Span, _Event]:
    rows = walk.store.query(LAST_EXCEPTION_SQL, parameters={"trace": walk.trace, "stop": list(_STOP_EXCEPTIONS)}).rows
    if not rows:
        raise ChainError(f"trace {walk.trace} recorded no exception; choose a value with --at FRAME [--var NAME]")
    span = walk.spans.get(rows[0][0])
    if span is None:
        raise ChainError(f"the exception of trace {walk.trace} is outside the calls read")
    ev = next((e for e in walk.events(span) if e.seq == rows[0][1]), None)
    if ev is None:
        raise ChainError(f"the exception of trace {walk.trace} is not among the events read")
    return span, ev


def why(store: Store, trace_id: str, *, at: int | None = None, var: str | None = None,
        max_steps: int = DEFAULT_MAX_STEPS) -> Chain:
    """The root-cause chain of a trace: of its failure (``at`` None: the last exception the program
    raised, followed down to where it was first raised), or of frame ``at`` of the cinema (a write,
    a return, an exception, a statement's inputs, a call's arguments), or of variable ``var`` as
    seen at frame ``at``. Raises :class:`ChainError` when there is nothing to explain."""
    trace_id = trace_id.strip().lower()
    if max_steps < 1:
        raise ValueError("max_steps must be >= 1")
    walk = _Walk(store, trace_id, max_steps)
    if not walk.spans:
        raise ChainError(f"no recorded calls for trace {trace_id!r} (see `execscope traces`)")
    if at is None:
        if var is not None:
            raise ChainError("--var needs --at FRAME (the point where the variable is seen)")
        failing, raised = _exception_start(walk)
        walk.explain_exception(failing, raised)
        return walk.chain
    try:
        film = walk.film()
    except LookupError as exc:
        raise ChainError(str(exc)) from None
    if not 0 <= at < film.total:
        raise ChainError(f"frame {at} is outside the trace (0..{film.total - 1})")
    frame = film.frame(at)
    found = walk.spans.get(frame["span_id"])
    if found is None:
        raise ChainError(f"frame {at} belongs to no recorded call")
    span = found
    key = frame["_key"]
    seq = key[1] if isinstance(key, tuple) else key
    where = f"{walk.where(span, frame['line'])}" if frame["line"] else span.short
    if var is not None:
        walk.chain.subject = f"Why `{var}` was {frame['locals'].get(var, '?')} at frame {at} ({where} in {span.short})"
        if var not in frame["locals"] and var not in span.args and not walk.has_write(span, var, seq + 1):
            raise ChainError(f"no variable {var!r} in {span.short} at frame {at}; it has: "
                             f"{', '.join(sorted(frame['locals'])) or 'none'}")
        walk.explain_name(span, var, seq + 1, 0)
        return walk.chain
    kind = frame["kind"]
    if kind == "exception":
        event = next((e for e in walk.events(span) if e.seq == seq), None)
        if event is None:
            raise ChainError(f"frame {at}: exception event not found")
        walk.explain_exception(span, event)
    elif kind == "assign":
        walk.chain.subject = f"Why `{frame['var']}` became {frame['value']} at frame {at} ({where})"
        ev = next(e for e in walk.events(span) if e.seq == seq)
        walk.explain_write(span, ev, 0)
    elif kind == "return":
        walk.chain.subject = f"Why {span.short} returned {frame.get('value', '')} at frame {at}"
        walk.explain_return(span, 0)
    elif kind == "call":
        walk.chain.subject = f"Where the arguments of {span.short} at frame {at} came from"
        for param in span.args:
            walk.explain_argument(span, param, 0)
    else:
        stmt_ev = walk.line_before(span, seq + 1)
        if stmt_ev is None:
            raise ChainError(f"frame {at}: no statement of {span.short} recorded at or before it")
        _stmt, line, code = walk.statement(span, stmt_ev.node_id)
        walk.chain.subject = f"What `{_short(code, CODE_CHARS)}` at {walk.where(span, line)} used (frame {at})"
        walk.explain_statement(span, stmt_ev, walk.next_event_seq(span, stmt_ev.seq), 0)
    if not walk.chain.steps:
        walk.chain.left_out.append("nothing recorded feeds this point (constants only, or code not recorded)")
    return walk.chain

