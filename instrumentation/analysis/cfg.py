"""Control flow graphs over node IDs: one per function, module body, lambda and comprehension.

Granularity is what the runtime can observe: a CFG node is a statement (its ``line`` event at
``--level statements``) or a branch arm (its ``branch`` event from ``--level branches`` on: if/loop
arms, except handlers, try ``else``/``finally``, match cases, ``and``/``or`` operands and
conditional-expression arms), plus ``<scope>.entry`` / ``<scope>.exit``. Arms of expressions sit
where the runtime reports them: *after* their operand is evaluated, in evaluation order.

Soundness is the contract: every transition the program can make between two nodes of one call is an
edge (checked against recordings by ``execscope query cfg-violations``). In particular:

* every statement that can raise (anything but ``pass``/``break``/``continue``/``global``/
  ``nonlocal``) and every expression arm has ``exception`` edges to each handler that may catch it,
  to the ``finally`` arm of each enclosing ``try``, to the statement after a ``with`` (``__exit__`` may
  suppress), and to the exit when nothing is sure to catch it (only a bare ``except`` or
  ``except BaseException`` is);
* the implicit work at a loop's head (``next()``, the ``while`` test) and at a ``with`` block's end
  (``__exit__``) can raise too, so the nodes that flow there get exception edges;
* ``return``/``break``/``continue`` and exceptions are routed through every enclosing ``finally``
  block; a ``finally`` block is one set of nodes, so its end continues to every place any of the
  reasons that entered it (normal, exception, return, break, continue) would go (labelled so);
* class bodies run inline in the scope that defines them (their statements report to that frame), so
  they are part of that scope's CFG; function bodies, lambdas and comprehensions are their own CFGs,
  but what they evaluate in the defining scope (decorators, defaults, a comprehension's first
  iterable) is part of the defining scope's flow, and the rewriter probes it there;
* parts of an expression that run conditionally are branches even without an arm of their own: a
  comparison chain stops at its first false comparison, an ``assert``'s message runs only when the
  test failed (and ``python -O`` runs neither), an ``except`` clause's type is evaluated only when an
  exception reaches it (before the handler is chosen), a ``for`` target is stored at each iteration;
* annotations and ``type`` aliases are not part of the flow (not evaluated in a function body,
  strings under ``from __future__ import annotations``, deferred on 3.14): nothing is probed there.

Edge labels: ``''`` (sequential), ``true``/``false`` (conditions, loop iterate/exhausted,
short-circuit), ``case N``, ``exception``, ``return``, ``break``, ``continue``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field

from execscope.instrumentation.nodes.node_ids import IdResolver, ModuleNodes

Pred = tuple[str, str]
"""A pending edge source: (node ID, label of the edge that will leave it)."""

_RAISING = "<raising>"
"""Placeholder source while building an ``except`` type expression (replaced by each raising node)."""
_NO_RAISE = (ast.Pass, ast.Break, ast.Continue, ast.Global, ast.Nonlocal)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


@dataclass(slots=True)
class Cfg:
    """The CFG of one scope. ``nodes`` in first-seen order (entry first, exit last)."""

    scope: str
    """Node ID of the function, module, lambda or comprehension."""
    kind: str
    entry: str
    exit: str
    nodes: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)
    """Node ID -> ``entry`` | ``exit`` | ``statement`` | ``arm`` (arms report a ``branch`` event)."""
    edges: dict[tuple[str, str, str], None] = field(default_factory=dict)
    """(src, dst, label) in insertion order, without duplicates."""
    parent: str = ""
    """The scope this one is nested in ('' for a module)."""
    source_ast: ast.AST | None = None
    """The function, module, lambda or comprehension the CFG was built from."""
    ast_of: dict[str, ast.AST] = field(default_factory=dict)
    """Node ID -> the syntax it stands for (statement, loop of a body arm, handler, match case)."""
    namespace: dict[str, str] = field(default_factory=dict)
    """Node ID -> class ID, for statements of class bodies running inline in this scope."""
    handler_regions: list[tuple[frozenset[str], tuple[str, str]]] = field(default_factory=list)
    """(nodes of an ``except ... as name`` handler, (namespace, name)): leaving it unbinds the name."""

    def successors(self) -> dict[str, list[tuple[str, str]]]:
        out: dict[str, list[tuple[str, str]]] = {n: [] for n in self.nodes}
        for src, dst, label in self.edges:
            out.setdefault(src, []).append((dst, label))
        return out

    def predecessors(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {n: [] for n in self.nodes}
        for src, dst, _ in self.edges:
            out.setdefault(dst, []).append(src)
        return out


# --- the context stack: what encloses the node being built -------------------------------------
@dataclass(slots=True)
class _Handler:
    """An ``except`` clause as an exception meets it: its type expression is evaluated first."""

    arm: str
    catches_all: bool
    test: list[tuple[str, str]] | None = None
    """Where an exception arriving here goes first when the type expression has arms: (arm, label).
    From the type's last arms the flow goes on by itself (to this handler, or past it)."""
    test_may_pass: bool = False
    """The type expression also has a path without arms (the exception goes straight on)."""


@dataclass(slots=True)
class _Try:
    """Inside a try body: exceptions go to the handlers first, in order."""

    handlers: list[_Handler]


@dataclass(slots=True)
class _Final:
    """Inside a region whose every exit passes through a ``finally`` arm."""

    arm: str
    reasons: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Loop:
    breaks: list[Pred] = field(default_factory=list)
    continues: list[Pred] = field(default_factory=list)


@dataclass(slots=True)
class _With:
    """Inside a with body: ``__exit__`` may swallow an exception and go on after the statement."""

    after: list[Pred] = field(default_factory=list)


_Frame = _Try | _Final | _Loop | _With


class _Builder:
    """Builds one scope's CFG. Nested scopes are queued on ``pending`` for the caller."""

    def __init__(self, cfg: Cfg, resolve: IdResolver, pending: list[tuple[str, str, ast.AST, str]]) -> None:
        self.cfg = cfg
        self.ns = cfg.scope
        self.resolve = resolve
        self.pending = pending
        self.stack: list[_Frame] = []
        self._seen: set[str] = set()
        self.queued: set[str] = set()

    # --- primitives ------------------------------------------------------------------------------
    def node(self, node_id: str, kind: str = "arm") -> None:
        if node_id not in self._seen:
            self._seen.add(node_id)
            self.cfg.nodes.append(node_id)
            self.cfg.kinds[node_id] = kind
            if self.ns != self.cfg.scope:
                self.cfg.namespace[node_id] = self.ns

    def edge(self, src: str, dst: str, label: str = "") -> None:
        self.cfg.edges[(src, dst, label)] = None

    def connect(self, preds: list[Pred], dst: str) -> None:
        for src, label in preds:
            self.edge(src, dst, label)

    def enter(self, preds: list[Pred], node_id: str, *, raises: bool, kind: str = "statement") -> list[Pred]:
        """Add ``node_id`` after ``preds``; returns the preds of what follows it."""
        self.node(node_id, kind)
        self.connect(preds, node_id)
        if raises:
            self.raise_from(node_id)
        return [(node_id, "")]

    def raise_from(self, src: str, label: str = "exception") -> None:
        for frame in reversed(self.stack):
            if isinstance(frame, _Try):
                if self._to_handlers(src, frame.handlers, label):
                    return
            elif isinstance(frame, _With):
                frame.after.append((src, label))
            elif isinstance(frame, _Final):
                self.edge(src, frame.arm, label)
                frame.reasons.add("exception")
                return
        self.edge(src, self.cfg.exit, label)

    def _to_handlers(self, src: str, handlers: list[_Handler], label: str) -> bool:
        """Edges from ``src`` (raising) into ``handlers`` tried in order; True when no exception gets
        past them from here (a catch-all)."""
        for h in handlers:
            if h.test is not None:
                for dst, _ in h.test:
                    self.edge(src, dst, label)
                if not h.test_may_pass:
                    # from the type's arms the flow goes on by itself; evaluating the type may also
                    # raise before its first arm, and that exception leaves this ``try``
                    return False
            self.edge(src, h.arm, label)
            if h.catches_all:
                return True
        return False

    def jump(self, preds: list[Pred], kind: str, start: int | None = None) -> None:
        """Route ``return``/``break``/``continue`` from ``preds`` outwards through ``finally`` arms.
        ``start`` is the stack depth to search below (the whole stack by default)."""
        depth = len(self.stack) if start is None else start
        for i in range(depth - 1, -1, -1):
            frame = self.stack[i]
            if isinstance(frame, _Final):
                for src, _ in preds:
                    self.edge(src, frame.arm, kind)
                frame.reasons.add(kind)
                return
            if isinstance(frame, _Loop) and kind != "return":
                (frame.breaks if kind == "break" else frame.continues).extend((s, kind) for s, _ in preds)
                return
        if kind == "return":
            for src, _ in preds:
                self.edge(src, self.cfg.exit, kind)

    def may_raise_after(self, preds: list[Pred]) -> None:
        """Implicit work follows these preds (a loop's next()/test, a with's __exit__): it may raise."""
        for src, _ in preds:
            self.raise_from(src)

    # --- expressions: arms in evaluation order ---------------------------------------------------
    def expr(self, e: ast.AST | None, preds: list[Pred]) -> list[Pred]:
        if e is None:
            return preds
        if isinstance(e, ast.BoolOp):
            return self._bool_op(e, preds)
        if isinstance(e, ast.IfExp):
            return self._if_exp(e, preds)
        if isinstance(e, ast.Lambda):
            self._queue(e, "lambda")
            for d in (*e.args.defaults, *(k for k in e.args.kw_defaults if k is not None)):
                preds = self.expr(d, preds)
            return preds
        if isinstance(e, _COMPREHENSIONS):
            self._queue(e, "comprehension")
            return self.expr(e.generators[0].iter, preds)  # the only part evaluated out here
        if isinstance(e, ast.Compare):
            return self._compare(e, preds)
        for child in _evaluation_order(e):
            preds = self.expr(child, preds)
        return preds

    def _bool_op(self, e: ast.BoolOp, preds: list[Pred]) -> list[Pred]:
        owner = self.resolve(e)
        if owner is None:
            for v in e.values:
                preds = self.expr(v, preds)
            return preds
        go_on, stop = ("true", "false") if isinstance(e.op, ast.And) else ("false", "true")
        out: list[Pred] = []
        last = len(e.values) - 1
        for i, v in enumerate(e.values):
            preds = self.expr(v, preds)
            arm = f"{owner}.op{i}"
            self.node(arm)
            self.connect(preds, arm)
            self.raise_from(arm)
            if i == last:
                out.append((arm, ""))
            else:
                out.append((arm, stop))
                preds = [(arm, go_on)]
        return out

    def _compare(self, e: ast.Compare, preds: list[Pred]) -> list[Pred]:
        """``a < b < c`` stops at the first false comparison: ``c`` is evaluated only if ``a < b``."""
        preds = self.expr(e.left, preds)
        skipped: list[Pred] = []
        for i, comparator in enumerate(e.comparators):
            if i:
                skipped += preds
            preds = self.expr(comparator, preds)
        return list(dict.fromkeys(preds + skipped))

    def _if_exp(self, e: ast.IfExp, preds: list[Pred]) -> list[Pred]:
        owner = self.resolve(e)
        preds = self.expr(e.test, preds)
        if owner is None:
            return self.expr(e.body, preds) + self.expr(e.orelse, preds)
        out: list[Pred] = []
        for label, branch in (("true", e.body), ("false", e.orelse)):
            inner = self.expr(branch, [(s, lab or label) for s, lab in preds])
            arm = f"{owner}.{label}"
            self.node(arm)
            self.connect(inner, arm)
            self.raise_from(arm)
            out.append((arm, ""))
        return out

    def _queue(self, node: ast.AST, kind: str) -> None:
        node_id = self.resolve(node)
        if node_id is not None and node_id not in self.queued:
            self.queued.add(node_id)
            self.pending.append((node_id, kind, node, self.cfg.scope))

    # --- statements ------------------------------------------------------------------------------
    def block(self, stmts: list[ast.stmt], preds: list[Pred], *, docstring: bool = False) -> list[Pred]:
        for i, stmt in enumerate(stmts):
            if (docstring and i == 0 and _is_docstring(stmt)) or _is_future(stmt):
                continue  # never reported: not a node of the flow
            preds = self.statement(stmt, preds)
        return preds

    def statement(self, s: ast.stmt, preds: list[Pred]) -> list[Pred]:
        method = getattr(self, f"_s_{type(s).__name__}", None)
        if method is not None:
            return method(s, preds)
        node_id = self.resolve(s)
        if node_id is not None:
            self.cfg.ast_of[node_id] = s
            preds = self.enter(preds, node_id, raises=not isinstance(s, _NO_RAISE))
        return self.expr_children(s, preds)

    def expr_children(self, s: ast.stmt, preds: list[Pred]) -> list[Pred]:
        for child in _statement_expressions(s):
            preds = self.expr(child, preds)
        return preds

    def _head(self, s: ast.stmt, preds: list[Pred], raises: bool = True) -> list[Pred]:
        node_id = self.resolve(s)
        if node_id is None:
            return preds
        self.cfg.ast_of[node_id] = s
        return self.enter(preds, node_id, raises=raises)

    def _s_Return(self, s: ast.Return, preds: list[Pred]) -> list[Pred]:
        preds = self.expr(s.value, self._head(s, preds))
        self.jump(preds, "return")
        return []

    def _s_Raise(self, s: ast.Raise, preds: list[Pred]) -> list[Pred]:
        preds = self.expr(s.cause, self.expr(s.exc, self._head(s, preds)))
        for src, _ in preds:
            self.raise_from(src)
        return []

    def _s_Assert(self, s: ast.Assert, preds: list[Pred]) -> list[Pred]:
        head = self._head(s, preds)
        tested = self.expr(s.test, head)
        self.expr(s.msg, tested)  # only when the test failed; then AssertionError (its arms raise)
        # python -O drops the assertion: its test may not run at all
        return list(dict.fromkeys(head + tested))

    def _s_Break(self, s: ast.Break | ast.Continue, preds: list[Pred]) -> list[Pred]:
        self.jump(self._head(s, preds, raises=False), "break" if isinstance(s, ast.Break) else "continue")
        return []

    _s_Continue = _s_Break

    def _s_If(self, s: ast.If, preds: list[Pred]) -> list[Pred]:
        owner = self.resolve(s)
        preds = self.expr(s.test, self._head(s, preds))
        if owner is None:
            return self.block(s.body, preds) + self.block(s.orelse, preds)
        true_arm, false_arm = f"{owner}.true", f"{owner}.false"
        self.node(true_arm)
        self.connect([(p, lab or "true") for p, lab in preds], true_arm)
        out = self.block(s.body, [(true_arm, "")])
        self.node(false_arm)
        self.connect([(p, lab or "false") for p, lab in preds], false_arm)
        return out + self.block(s.orelse, [(false_arm, "")])

    def _loop(self, s: ast.For | ast.AsyncFor | ast.While, preds: list[Pred]) -> list[Pred]:
        owner = self.resolve(s)
        preds = self._head(s, preds)
        # a while's test runs before every iteration; a for's iterable once (next() is not a node)
        heads = self.expr(s.test if isinstance(s, ast.While) else s.iter, preds)
        loop = _Loop()
        body_arm = f"{owner}.body" if owner is not None else None

        def iterate(preds: list[Pred]) -> list[Pred]:
            """From the loop's head into the body: a ``for`` stores its target first (``x[i or j]``)."""
            if isinstance(s, ast.While):
                return preds
            return self.expr(s.target, preds)

        self.stack.append(loop)
        into = iterate([(p, lab or "true") for p, lab in heads])
        if body_arm is not None:
            self.node(body_arm)
            self.cfg.ast_of[body_arm] = s
            self.connect(into, body_arm)
            body_preds: list[Pred] = [(body_arm, "")]
        else:
            body_preds = into
        end = self.block(s.body, body_preds)
        self.stack.pop()
        back = end + loop.continues
        self.may_raise_after(back)
        # building the test again from the back edges adds only those edges: nodes and edges are sets
        back_heads = self.expr(s.test, back) if isinstance(s, ast.While) else back
        if body_arm is not None:
            again = iterate([(p, lab if lab in ("true", "false") else "true") for p, lab in back_heads])
            self.connect(again, body_arm)
        exhausted = [(p, "false") for p, _ in heads + back_heads]
        if s.orelse:
            if owner is not None:
                else_arm = f"{owner}.else"
                self.node(else_arm)
                self.connect(exhausted, else_arm)
                exhausted = [(else_arm, "")]
            exhausted = self.block(s.orelse, exhausted)
        return exhausted + loop.breaks

    _s_For = _s_AsyncFor = _s_While = _loop

    def _with(self, s: ast.With | ast.AsyncWith, preds: list[Pred]) -> list[Pred]:
        preds = self._head(s, preds)
        for item in s.items:
            preds = self.expr(item.context_expr, preds)
            preds = self.expr(item.optional_vars, preds)
        frame = _With()
        self.stack.append(frame)
        end = self.block(s.body, preds)
        self.stack.pop()
        self.may_raise_after(end)  # __exit__
        return end + frame.after

    _s_With = _s_AsyncWith = _with

    def _try(self, s: ast.Try, preds: list[Pred]) -> list[Pred]:
        owner = self.resolve(s)
        preds = self._head(s, preds, raises=False)
        handler_ids = [self.resolve(h) for h in s.handlers]
        final = _Final(f"{owner}.finally") if s.finalbody and owner is not None else None
        if final is not None:
            self.stack.append(final)
        handlers: list[_Handler] = []
        tests: list[tuple[int, list[Pred]]] = []  # (index in handlers, last preds of its type expression)
        for h, hid in zip(s.handlers, handler_ids):
            if hid is None:
                continue
            handler = _Handler(hid, _catches_everything(h))
            if h.type is not None:  # evaluated only when an exception gets here, before matching
                exits = self.expr(h.type, [(_RAISING, "exception")])
                entry = [(dst, lab) for (src, dst, lab) in self.cfg.edges if src == _RAISING]
                if entry:
                    for src, dst, lab in [e for e in self.cfg.edges if e[0] == _RAISING]:
                        del self.cfg.edges[(src, dst, lab)]
                    handler.test = entry
                    handler.test_may_pass = any(p == _RAISING for p, _ in exits)
                    tests.append((len(handlers), [(p, lab) for p, lab in exits if p != _RAISING]))
            handlers.append(handler)
        for i, exits in tests:  # from the type's arms: this handler, or the next ones, or further out
            for src, _ in exits:
                self.edge(src, handlers[i].arm, "exception")
                if not self._to_handlers(src, handlers[i + 1:], "exception"):
                    self.raise_from(src)
        self.stack.append(_Try(handlers))
        end = self.block(s.body, preds)
        self.stack.pop()
        if s.orelse:
            if owner is not None:
                end = self.enter(end, f"{owner}.else", raises=False, kind="arm")
            end = self.block(s.orelse, end)
        star = type(s).__name__ == "TryStar"
        for i, (clause, hid) in enumerate(zip(s.handlers, handler_ids)):
            if hid is None:
                continue
            self.node(hid)
            self.cfg.ast_of[hid] = clause
            first = len(self.cfg.nodes)
            h_end = self.block(clause.body, [(hid, "")])
            if clause.name:
                inside = frozenset((hid, *self.cfg.nodes[first:]))
                self.cfg.handler_regions.append((inside, (self.ns, clause.name)))
            end = end + h_end
            if star:  # except*: later handlers run for the rest of the group, which may stay unhandled
                for later in handler_ids[i + 1:]:
                    if later is not None:
                        self.connect(h_end, later)
                for src, _ in h_end:
                    self.raise_from(src)
        if final is None:
            if s.finalbody:  # owner unresolved: keep the flow, without the arm
                end = self.block(s.finalbody, end)
            return end
        self.stack.pop()
        arm = final.arm
        self.node(arm)
        self.connect(end, arm)
        depth = len(self.stack)
        f_end = self.block(s.finalbody, [(arm, "")])
        for reason in sorted(final.reasons):
            if reason == "exception":
                for src, _ in f_end:
                    self.raise_from(src)
            else:
                self.jump([(src, reason) for src, _ in f_end], reason, depth)
        return f_end if end else []

    _s_Try = _try
    if hasattr(ast, "TryStar"):
        _s_TryStar = _try

    def _s_Match(self, s: ast.Match, preds: list[Pred]) -> list[Pred]:
        owner = self.resolve(s)
        preds = self.expr(s.subject, self._head(s, preds))
        out: list[Pred] = []
        for i, case in enumerate(s.cases):
            guarded = self.expr(case.guard, preds)
            label = f"case {i}"
            if owner is not None:
                arm = f"{owner}.case{i}"
                self.node(arm)
                self.cfg.ast_of[arm] = case
                self.connect([(p, label) for p, _ in guarded], arm)
                out += self.block(case.body, [(arm, "")])
            else:
                out += self.block(case.body, [(p, label) for p, _ in guarded])
            if _irrefutable(case):
                return out
            # the next case is tried when this pattern failed (guard not run) or its guard was false
            preds = list(dict.fromkeys(preds + guarded))
        return out + [(p, "false") for p, _ in preds]

    def _s_FunctionDef(self, s: ast.FunctionDef | ast.AsyncFunctionDef, preds: list[Pred]) -> list[Pred]:
        node_id = self.resolve(s)
        if node_id is not None:
            self.cfg.ast_of[node_id] = s
            preds = self.enter(preds, node_id, raises=True)
            self.pending.append((node_id, "function", s, self.cfg.scope))
        for d in s.decorator_list:
            preds = self.expr(d, preds)
        return self._arguments(s.args, preds)

    _s_AsyncFunctionDef = _s_FunctionDef

    def _arguments(self, args: ast.arguments, preds: list[Pred]) -> list[Pred]:
        for d in (*args.defaults, *(k for k in args.kw_defaults if k is not None)):
            preds = self.expr(d, preds)
        return preds

    def _s_ClassDef(self, s: ast.ClassDef, preds: list[Pred]) -> list[Pred]:
        node_id = self.resolve(s)
        if node_id is not None:
            self.cfg.ast_of[node_id] = s
            preds = self.enter(preds, node_id, raises=True)
        for e in (*s.decorator_list, *s.bases, *(k.value for k in s.keywords)):
            preds = self.expr(e, preds)
        outer, self.ns = self.ns, node_id or self.ns
        try:
            return self.block(s.body, preds, docstring=True)  # runs inline, reporting to this frame
        finally:
            self.ns = outer


def _is_docstring(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


def _is_future(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"


def _catches_everything(handler: ast.ExceptHandler) -> bool:
    t = handler.type
    return t is None or (isinstance(t, ast.Name) and t.id == "BaseException")


def _irrefutable(case: ast.match_case) -> bool:
    if case.guard is not None:
        return False
    p = case.pattern
    while isinstance(p, ast.MatchAs) and p.pattern is not None:
        p = p.pattern
    if isinstance(p, ast.MatchOr):
        return any(isinstance(q, ast.MatchAs) and q.pattern is None for q in p.patterns)
    return isinstance(p, ast.MatchAs) and p.pattern is None


def _statement_expressions(s: ast.stmt) -> Iterator[ast.AST]:
    """The expressions a simple statement evaluates, in evaluation order."""
    if isinstance(s, ast.Assign):
        yield s.value
        yield from s.targets
    elif isinstance(s, ast.AnnAssign):
        if s.value is not None:
            yield s.value
        yield s.target
    elif isinstance(s, ast.AugAssign):
        yield s.target
        yield s.value
    elif type(s).__name__ == "TypeAlias":
        return  # ``type X = ...`` (3.12+): the value is evaluated lazily, in a scope of its own
    else:
        for child in ast.iter_child_nodes(s):
            if not isinstance(child, (ast.stmt, ast.expr_context)):
                yield child


def _evaluation_order(e: ast.AST) -> Iterator[ast.AST]:
    if isinstance(e, ast.Dict):
        for k, v in zip(e.keys, e.values):
            if k is not None:
                yield k
            yield v
    else:
        for child in ast.iter_child_nodes(e):
            if not isinstance(child, ast.expr_context):
                yield child


def _build_scope(scope_id: str, kind: str, node: ast.AST, resolve: IdResolver,
                 pending: list[tuple[str, str, ast.AST, str]], parent: str = "") -> Cfg:
    cfg = Cfg(scope_id, kind, f"{scope_id}.entry", f"{scope_id}.exit", parent=parent, source_ast=node)
    b = _Builder(cfg, resolve, pending)
    b.node(cfg.entry, "entry")
    start: list[Pred] = [(cfg.entry, "")]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        end = b.block(node.body, start, docstring=True)
    elif isinstance(node, ast.Module):
        end = b.block(node.body, start, docstring=True)
    elif isinstance(node, ast.Lambda):
        end = b.expr(node.body, start)
    else:  # comprehension: per element, the conditions then the element; loops over every generator
        assert isinstance(node, _COMPREHENSIONS)
        tested = _conditions(b, node, start)
        if isinstance(node, ast.DictComp):
            element = b.expr(node.value, b.expr(node.key, tested))
        else:
            element = b.expr(node.elt, tested)
        again = _conditions(b, node, element + tested)  # next element (or a failed condition)
        end = list(dict.fromkeys(start + tested + element + again))
        for src, _ in end:
            b.raise_from(src)
    b.node(cfg.exit, "exit")
    b.connect(end, cfg.exit)
    return cfg


def _conditions(b: _Builder, node: ast.AST, preds: list[Pred]) -> list[Pred]:
    for i, gen in enumerate(node.generators):  # type: ignore[attr-defined]
        if i:
            preds = b.expr(gen.iter, preds)
        for cond in gen.ifs:
            preds = b.expr(cond, preds)
    return preds


def build_cfgs(tree: ast.Module, nodes: ModuleNodes, source: str) -> list[Cfg]:
    """Every CFG of one module: its body first, then each function, lambda and comprehension."""
    return build_cfgs_with(tree, nodes, IdResolver(nodes, source))


def build_cfgs_with(tree: ast.Module, nodes: ModuleNodes, resolve: IdResolver) -> list[Cfg]:
    pending: list[tuple[str, str, ast.AST, str]] = [(nodes.nodes[0].node_id, "module", tree, "")]
    out: list[Cfg] = []
    while pending:
        scope_id, kind, node, parent = pending.pop(0)
        out.append(_build_scope(scope_id, kind, node, resolve, pending, parent))
    return out
