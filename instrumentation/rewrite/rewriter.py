"""The rewrite: inserts runtime calls into a module's :mod:`ast`, keeping every original location.

Why :mod:`ast` and not libcst's code generation: inserted statements would move every line below
them, and tracebacks, ``inspect.getsource``, coverage and debuggers all trust ``co_lines``. Here the
original nodes keep their positions and inserted nodes borrow the position of the construct they
instrument, so a traceback through rewritten code is the traceback of the original. Node IDs come
from the libcst parse (:mod:`.node_ids`) and are found again by position.

What each level adds (each includes the previous):

``functions``  per def: ``enter`` (argument values) / ``ret`` (return value) / ``fail`` / ``leave``;
               generator ``yield`` points hand the context back (``suspend`` / ``resumed``). A plain
               function whose body needs the frame only to return gets the "no-variable form":
               ``enter_current`` / ``ret_current`` / ``fail_current`` / ``leave_current``, the frame
               kept by the thread (CPython 3.11 clears every local at every call, recorded or not).
``branches``   module bodies get a frame; the arm taken of every if/elif/else, for/while body and
               ``else``, except handler, try ``else``/``finally``, match case, ``and``/``or``
               operand and conditional expression.
``statements`` every statement executed (``line``) and every value written to a name, attribute or
               subscript (``assign`` / ``value``).

Expression-level probes are not placed inside lambdas and comprehensions (their own scopes, which
report to no frame); what of them runs in the enclosing scope (a lambda's defaults, a comprehension's
first iterable) is probed like any other expression there.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from execscope.instrumentation.capture import runtime as _runtime
from execscope.instrumentation.capture.runtime import BRANCHES, FUNCTIONS, STATEMENTS
from execscope.instrumentation.nodes.node_ids import IdResolver, ModuleNodes, NodeInfo
from execscope.instrumentation.rewrite.plan import OFF, Plan

RT = _runtime.BUILTIN_NAME  # rewritten code finds the runtime by this name (published in builtins)
FRAME = "_execscope_frame"
EXC = "_execscope_exc"
GATE = "_execscope_gate"


@dataclass
class RewriteStats:
    functions: int = 0
    probes: int = 0
    unmatched: list[str] = field(default_factory=list)
    """Constructs whose node ID could not be found again (left uninstrumented); should stay empty."""
    skipped: list[str] = field(default_factory=list)
    """Functions deliberately left unrecorded, with the reason."""


def _is_docstring(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


def _is_future(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"


def _own_scope_facts(body: list[ast.stmt]) -> tuple[bool, bool, bool]:
    """Of a function body's own scope (one walk): does it define a function or class, declare a name
    ``global`` or ``nonlocal``, call ``locals()`` or ``vars()`` with no argument?"""
    defines = declares = reads_locals = False
    for node in _own_scope(body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defines = True
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            declares = True
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("locals", "vars")
              and not node.args and not node.keywords):
            reads_locals = True
    return defines, declares, reads_locals


def _at(node: ast.AST, ref: ast.AST) -> ast.AST:
    """``node`` with every node of its subtree given the location of ``ref``."""
    line, col, end_line, end_col = ref.lineno, ref.col_offset, ref.end_lineno, ref.end_col_offset  # type: ignore[attr-defined]
    for n in ast.walk(node):
        if "lineno" in n._attributes:
            n.lineno, n.col_offset, n.end_lineno, n.end_col_offset = line, col, end_line, end_col  # type: ignore[attr-defined]
    return node


def _copy(node: Any) -> Any:
    """A deep copy of an AST (a node, a list of them, or a leaf value), several times faster than
    ``copy.deepcopy``: a tree has no shared or cyclic nodes, and its leaves are immutable."""
    if isinstance(node, list):
        return [_copy(n) for n in node]
    if not isinstance(node, ast.AST):
        return node
    cls = node.__class__
    new = cls.__new__(cls)
    fields = new.__dict__
    for name, value in node.__dict__.items():
        fields[name] = _copy(value) if isinstance(value, (list, ast.AST)) else value
    return new


def _name(id_: str, ctx: ast.expr_context | None = None) -> ast.Name:
    return ast.Name(id=id_, ctx=ctx or ast.Load())


def _call(func: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=ast.Attribute(value=_name(RT), attr=func, ctx=ast.Load()), args=list(args),
                    keywords=[])


def _rt_attr(name: str) -> ast.Attribute:
    return ast.Attribute(value=_name(RT), attr=name, ctx=ast.Load())


def _own_scope(body: list[ast.stmt]) -> Iterable[ast.AST]:
    """Every node of a function body outside nested functions, classes and lambdas."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))


def _is_ret(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "ret"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == RT
            and bool(node.args) and isinstance(node.args[0], ast.Name) and node.args[0].id == FRAME)


def _frame_reads(body: list[ast.stmt]) -> tuple[int, int]:
    """(reads of the frame variable, ``ret`` calls) in ``body``: when they are equal the frame is read
    only as ``ret``'s first argument, and the no-variable form can drop it."""
    names = rets = 0
    for stmt in body:
        for node in ast.walk(stmt):
            names += isinstance(node, ast.Name) and node.id == FRAME
            rets += _is_ret(node)
    return names, rets


class _ReturnsToCurrent(ast.NodeTransformer):
    """``ret(frame, value)`` becomes ``ret_current(value)`` (the no-variable form)."""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if not _is_ret(node):
            return node
        call = _call("ret_current", *node.args[1:])
        call.func = ast.copy_location(call.func, node)
        call.func.value = ast.copy_location(call.func.value, node)  # type: ignore[attr-defined]
        return ast.copy_location(call, node)


class _DropDeclarations(ast.NodeTransformer):
    """Removes ``global``/``nonlocal`` statements of one function scope (kept by the caller, once,
    at the top of the function: a declaration applies to the whole scope wherever it stands)."""

    def visit_Global(self, node: ast.Global) -> ast.AST:
        return _at(ast.Pass(), node)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> ast.AST:
        return _at(ast.Pass(), node)

    def _scope(self, node: ast.AST) -> ast.AST:
        return node  # a nested scope keeps its own declarations

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = _scope


def _const(value: Any) -> ast.Constant:
    return ast.Constant(value=value)


class _Scope:
    __slots__ = ("kind", "has_frame", "light")

    def __init__(self, kind: str, has_frame: bool, light: bool = False) -> None:
        self.kind = kind            # module, function, class, lambda, comprehension
        self.has_frame = has_frame  # may probes in this scope name the frame variable?
        self.light = light          # nothing in its expressions is rewritten: they are not visited


class Rewriter(ast.NodeTransformer):
    """One concern per ``visit_*``: definitions wrap, statements probe, expressions report arms."""

    def __init__(self, nodes: ModuleNodes, source: str, level: int, plan: Plan | None = None) -> None:
        self.nodes = nodes
        self.by_id: dict[str, NodeInfo] = {n.node_id: n for n in nodes.nodes}
        self._id = IdResolver(nodes, source)
        self.plan = plan
        # the level of the code being rewritten: per function under a plan (innermost last)
        self._levels = [plan.setting_for(nodes.module).level if plan is not None else level]
        self.stats = RewriteStats(unmatched=self._id.unmatched)
        self.scopes: list[_Scope] = []
        self._yield_scopes = {n.qualname for n in nodes.nodes if n.kind == "yield"}

    @property
    def level(self) -> int:
        return self._levels[-1]

    def visit(self, node: ast.AST) -> Any:
        # Below branches level only a yield of a recorded function is rewritten inside an expression
        # (its suspension and resumption); a scope without one skips its expressions whole.
        if isinstance(node, ast.expr) and self.scopes and self.scopes[-1].light:
            return node
        return super().visit(node)

    def _light(self, recorded: str | None = None) -> bool:
        """Are the expressions of a scope (at the current level) left as written? Below branches they
        are, unless the scope is the recorded function ``recorded`` (a qualname) with a yield of its own
        (or of a lambda in it)."""
        if self.level >= BRANCHES:
            return False
        return recorded is None or not any(q == recorded or q.startswith(recorded + ".") for q in self._yield_scopes)

    def _probing(self) -> bool:
        return bool(self.scopes) and self.scopes[-1].has_frame

    def _probe(self, ref: ast.AST, func: str, *args: ast.expr) -> ast.stmt:
        self.stats.probes += 1
        return _at(ast.Expr(value=_call(func, _name(FRAME), *args)), ref)  # type: ignore[return-value]

    # --- module --------------------------------------------------------------------------------
    def rewrite(self, tree: ast.Module) -> ast.Module:
        module_frame = self.level >= BRANCHES
        self.scopes.append(_Scope("module", module_frame, self._light()))
        body = self._block(tree.body, docstring=True)
        self.scopes.pop()
        head: list[ast.stmt] = []
        while body and (_is_future(body[0]) or (not head and _is_docstring(body[0]))):
            head.append(body.pop(0))
        ref = body[0] if body else (head[-1] if head else None)
        if ref is None:
            return tree
        # ``_execscope_rt = _execscope_rt``: the runtime from builtins (it publishes itself there when
        # imported, as the hook does before serving rewritten code), with no import statement a
        # program could observe
        imp = _at(ast.Assign(targets=[_name(RT, ast.Store())], value=_name(RT)), ref)
        gate = _at(ast.Assign(targets=[_name(GATE, ast.Store())], value=_rt_attr("GATE")), ref)
        prologue: list[ast.stmt] = [imp, gate]  # type: ignore[list-item]
        if module_frame and body:
            info = (self.nodes.nodes[0].node_id, self.nodes.module, self.nodes.file, 1,
                    self.nodes.code_version, ())
            enter = _at(ast.Assign(targets=[_name(FRAME, ast.Store())],
                                   value=_call("enter_module", _const(info))), ref)
            prologue.append(enter)  # type: ignore[arg-type]
            body = [self._wrap_try(body, ref, release=True)]
        tree.body = head + prologue + body
        return tree

    # --- blocks and statements -----------------------------------------------------------------
    def _block(self, stmts: Iterable[ast.stmt], *, docstring: bool = False,
               prefix: list[ast.stmt] | None = None) -> list[ast.stmt]:
        out: list[ast.stmt] = list(prefix or [])
        for i, stmt in enumerate(stmts):
            skip_line = (docstring and i == 0 and _is_docstring(stmt)) or _is_future(stmt)
            if self.level >= STATEMENTS and self._probing() and not skip_line:
                node_id = self._id(stmt)
                if node_id is not None:
                    out.append(self._probe(stmt, "line", _const(node_id), _const(stmt.lineno)))
            new = self.visit(stmt)
            if isinstance(new, list):
                out.extend(new)
            elif new is not None:
                out.append(new)
            if self.level >= STATEMENTS and self._probing():
                out.extend(self._after_assignment(stmt))
        return out

    def _expressions(self, node: ast.AST) -> None:
        """Visit every child of ``node`` except statement blocks (handled by ``_block``)."""
        for fname, value in ast.iter_fields(node):
            if isinstance(value, list):
                if value and isinstance(value[0], (ast.stmt, ast.excepthandler, ast.match_case)):
                    continue
                setattr(node, fname, [self.visit(v) if isinstance(v, ast.AST) else v for v in value])
            elif isinstance(value, ast.AST):
                setattr(node, fname, self.visit(value))

    def _arm_probe(self, owner: str | None, label: str, ref: ast.AST) -> list[ast.stmt]:
        if owner is None or self.level < BRANCHES or not self._probing():
            return []
        return [self._probe(ref, "branch", _const(f"{owner}.{label}"))]

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, ast.stmt):
            self._expressions(node)
            for fname in ("body", "orelse", "finalbody"):
                block = getattr(node, fname, None)
                if isinstance(block, list) and block:
                    setattr(node, fname, self._block(block))
            return node
        return super().generic_visit(node)

    def visit_If(self, node: ast.If) -> ast.AST:
        owner = self._id(node) if self.level >= BRANCHES and self._probing() else None
        node.test = self.visit(node.test)
        node.body = self._block(node.body, prefix=self._arm_probe(owner, "true", node.body[0]))
        if node.orelse:
            node.orelse = self._block(node.orelse, prefix=self._arm_probe(owner, "false", node.orelse[0]))
        else:
            node.orelse = self._arm_probe(owner, "false", node)
        return node

    def _loop(self, node: ast.For | ast.AsyncFor | ast.While) -> ast.AST:
        owner = self._id(node) if self.level >= BRANCHES and self._probing() else None
        self._expressions(node)
        prefix = self._arm_probe(owner, "body", node.body[0])
        if isinstance(node, (ast.For, ast.AsyncFor)) and self.level >= STATEMENTS and self._probing():
            prefix += self._target_probes(node.target, node.body[0])
        node.body = self._block(node.body, prefix=prefix)
        if node.orelse:
            node.orelse = self._block(node.orelse, prefix=self._arm_probe(owner, "else", node.orelse[0]))
        return node

    visit_For = visit_AsyncFor = visit_While = _loop

    def _try(self, node: ast.AST) -> ast.AST:
        owner = self._id(node) if self.level >= BRANCHES and self._probing() else None
        points = self._raise_points(node.body) if owner is not None and node.handlers else ()  # type: ignore[attr-defined]
        node.body = self._block(node.body)  # type: ignore[attr-defined]
        for handler in node.handlers:  # type: ignore[attr-defined]
            handler.type = self.visit(handler.type) if handler.type is not None else None
            prefix: list[ast.stmt] = []
            if self.level >= BRANCHES and self._probing():
                hid = self._id(handler)
                if hid is not None:  # the handler's arm, after the exception it caught (see runtime.caught)
                    prefix.append(self._probe(handler.body[0], "caught", _const(hid), _const(points)))
                    if handler.name and self.level >= STATEMENTS:
                        prefix.append(self._probe(handler.body[0], "assign", _const(hid),
                                                  _const(handler.name), _name(handler.name)))
            handler.body = self._block(handler.body, prefix=prefix)
        if node.orelse:  # type: ignore[attr-defined]
            node.orelse = self._block(node.orelse,  # type: ignore[attr-defined]
                                      prefix=self._arm_probe(owner, "else", node.orelse[0]))  # type: ignore[attr-defined]
        if node.finalbody:  # type: ignore[attr-defined]
            node.finalbody = self._block(node.finalbody,  # type: ignore[attr-defined]
                                         prefix=self._arm_probe(owner, "finally", node.finalbody[0]))  # type: ignore[attr-defined]
        return node

    def _raise_points(self, body: list[ast.stmt]) -> tuple[tuple[int, int, int, int, str], ...]:
        """Where an exception caught by a handler of this ``try`` can have been raised in the frame:
        (line, column, end line, end column, node ID) of every statement of the body, nested blocks
        included, nested definitions' and classes' bodies not (their own frames). Columns are UTF-8
        byte offsets, as the interpreter's positions are; a decorated definition starts at its first
        decorator. A tuple of constants: one constant of the code object, nothing at run time."""
        points: list[tuple[int, int, int, int, str]] = []
        stack: list[ast.stmt] = list(reversed(body))
        while stack:
            stmt = stack.pop()
            node_id = self._id(stmt)
            start: Any = stmt
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                start = stmt.decorator_list[0] if stmt.decorator_list else stmt
            if node_id is not None:
                points.append((start.lineno, start.col_offset, stmt.end_lineno or stmt.lineno,
                               stmt.end_col_offset or 0, node_id))
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            inner: list[ast.stmt] = []
            for fname in ("body", "handlers", "orelse", "finalbody", "cases"):
                for child in getattr(stmt, fname, None) or ():
                    inner.extend(child.body if isinstance(child, (ast.ExceptHandler, ast.match_case)) else [child])
            stack.extend(reversed(inner))
        return tuple(points)

    visit_Try = _try
    if hasattr(ast, "TryStar"):
        visit_TryStar = _try

    def _with(self, node: ast.With | ast.AsyncWith) -> ast.AST:
        self._expressions(node)
        prefix: list[ast.stmt] = []
        if self.level >= STATEMENTS and self._probing():
            for item in node.items:
                if item.optional_vars is not None:
                    prefix += self._target_probes(item.optional_vars, node.body[0])
        node.body = self._block(node.body, prefix=prefix)
        return node

    visit_With = visit_AsyncWith = _with

    def visit_Match(self, node: ast.Match) -> ast.AST:
        owner = self._id(node) if self.level >= BRANCHES and self._probing() else None
        node.subject = self.visit(node.subject)
        for i, case in enumerate(node.cases):
            if case.guard is not None:
                case.guard = self.visit(case.guard)
            case.body = self._block(case.body, prefix=self._arm_probe(owner, f"case{i}", case.body[0]))
        return node

    def visit_Return(self, node: ast.Return) -> ast.AST:
        self._expressions(node)
        if node.value is not None and self._in_function():
            node.value = _at(_call("ret", _name(FRAME), node.value), node.value)  # type: ignore[assignment]
        return node

    def _in_function(self) -> bool:
        return bool(self.scopes) and self.scopes[-1].kind == "function" and self.scopes[-1].has_frame

    # --- assignments (statements level) ---------------------------------------------------------
    def _target_probes(self, target: ast.expr, ref: ast.AST) -> list[ast.stmt]:
        probes: list[ast.stmt] = []
        for name in self._names(target):
            node_id = self._id(name, "target")
            if node_id is not None:
                probes.append(self._probe(ref, "assign", _const(node_id), _const(name.id), _name(name.id)))
        return probes

    @staticmethod
    def _names(target: ast.expr) -> list[ast.Name]:
        if isinstance(target, ast.Name):
            return [target]
        if isinstance(target, (ast.Tuple, ast.List)):
            return [n for element in target.elts for n in Rewriter._names(element)]
        if isinstance(target, ast.Starred):
            return Rewriter._names(target.value)
        return []

    def _after_assignment(self, stmt: ast.stmt) -> list[ast.stmt]:
        if isinstance(stmt, ast.Assign):
            return [p for t in stmt.targets for p in self._target_probes(t, stmt)]
        if isinstance(stmt, ast.AugAssign) or (isinstance(stmt, ast.AnnAssign) and stmt.value is not None):
            return self._target_probes(stmt.target, stmt)
        return []

    def _store_value(self, target: ast.expr, value: ast.expr) -> ast.expr:
        """Attribute/subscript stores: capture the value on its way in (re-reading could run code)."""
        node_id = self._id(target, "target")
        if node_id is None:
            return value
        self.stats.probes += 1
        info = self.by_id.get(node_id)
        label = info.code if info is not None else ast.unparse(target)
        return _at(_call("value", _name(FRAME), _const(node_id), _const(label), value), value)  # type: ignore[return-value]

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        self._expressions(node)
        if (self.level >= STATEMENTS and self._probing() and len(node.targets) == 1
                and isinstance(node.targets[0], (ast.Attribute, ast.Subscript))):
            node.value = self._store_value(node.targets[0], node.value)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        # The annotation is never probed: inside a function it is not evaluated, under
        # ``from __future__ import annotations`` (and 3.14's deferred annotations) it becomes text or
        # a function evaluated later, where a probe would be a stray call naming a finished frame.
        node.target = self.visit(node.target)
        if node.value is not None:
            node.value = self.visit(node.value)
        if (self.level >= STATEMENTS and self._probing() and node.value is not None
                and isinstance(node.target, (ast.Attribute, ast.Subscript))):
            node.value = self._store_value(node.target, node.value)
        return node

    # --- expressions (branches level) ------------------------------------------------------------
    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        if self.level >= BRANCHES and self._probing():
            owner = self._id(node)
            if owner is not None:
                node.values = [_at(_call("arm", _name(FRAME), _const(f"{owner}.op{i}"), v), v)  # type: ignore[misc]
                               for i, v in enumerate(node.values)]
                self.stats.probes += len(node.values)
        return node

    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        self.generic_visit(node)
        if self.level >= BRANCHES and self._probing():
            owner = self._id(node)
            if owner is not None:
                node.body = _at(_call("arm", _name(FRAME), _const(f"{owner}.true"), node.body), node.body)  # type: ignore[assignment]
                node.orelse = _at(_call("arm", _name(FRAME), _const(f"{owner}.false"), node.orelse),  # type: ignore[assignment]
                                  node.orelse)
                self.stats.probes += 2
        return node

    def visit_TypeAlias(self, node: ast.AST) -> ast.AST:
        return node  # ``type X = ...`` (3.12+): evaluated lazily in a scope of its own, like an annotation

    def _yield(self, node: ast.Yield | ast.YieldFrom) -> ast.AST:
        """Yield points hand the context back to the consumer; from ``branches`` on they are also
        recorded (an event at every suspension and resumption, naming the yield node)."""
        original_key = self._id(node) if self.level >= BRANCHES else None
        self.generic_visit(node)
        if not self._in_function():
            return node
        extra = [_const(original_key)] if original_key is not None else []
        node.value = _at(_call("suspend", _name(FRAME), node.value or _const(None), *extra), node)  # type: ignore[assignment]
        return _at(_call("resumed", _name(FRAME), node, *extra), node)

    visit_Yield = visit_YieldFrom = _yield

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        # A lambda is its own scope (its body is left alone), but its defaults run out here.
        self._defaults(node.args)
        return node

    def _defaults(self, args: ast.arguments) -> None:
        args.defaults = [self.visit(d) for d in args.defaults]
        args.kw_defaults = [self.visit(d) if d is not None else None for d in args.kw_defaults]

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp) -> ast.AST:
        # A comprehension is its own scope (left alone), but its first iterable runs out here.
        first = node.generators[0]
        first.iter = self.visit(first.iter)
        return node

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    # --- definitions ---------------------------------------------------------------------------
    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.bases = [self.visit(b) for b in node.bases]
        node.keywords = [self.visit(k) for k in node.keywords]
        # A class body sees the frame of the code defining it (module global or enclosing local).
        self.scopes.append(_Scope("class", self._probing(), self._light()))
        node.body = self._block(node.body, docstring=True)
        self.scopes.pop()
        return node

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        self._defaults(node.args)  # annotations are left alone: see visit_AnnAssign
        node_id = self._id(node)
        level, rate = self._planned(node_id)
        if level == OFF:
            node_id = None
        defines, declares, reads_locals = _own_scope_facts(node.body) if node_id is not None else (False, False, False)
        if reads_locals:
            self.stats.skipped.append(f"{node.name}: calls locals()/vars(), which would show the frame variable")
            node_id = None
        leaf = node_id is not None and not defines
        pristine = _copy(node.body) if leaf else []
        self._levels.append(level)
        self.scopes.append(_Scope("function", node_id is not None,
                                  self._light(self.by_id[node_id].qualname if node_id is not None else None)))
        body = self._block(node.body, docstring=True)
        self._levels.pop()
        self.scopes.pop()
        if node_id is None:
            node.body = body
            return node
        self.stats.functions += 1
        doc = [body.pop(0)] if body and _is_docstring(body[0]) else []
        ref = body[0] if body else node
        params = self._params(node.args)
        info = self._function_info(node_id, params, node.lineno)
        if isinstance(node, ast.AsyncFunctionDef):  # may be suspended across tasks: see _capture.c
            info += (True,)
        call = _call("enter", _const(info), ast.Tuple(elts=[_name(p) for p in params], ctx=ast.Load()))
        gate: ast.expr = _name(GATE)  # runtime.GATE: false when this call is not to be recorded
        if rate < 1.0:  # ``gate and plan_keep(node_id, rate)``: the plan records this fraction of calls
            gate = _at(ast.BoolOp(op=ast.And(), values=[gate, _call("plan_keep", _const(node_id), _const(rate))]),
                       ref)  # type: ignore[assignment]
        if leaf:
            # ``if not gate: <the body as written>; return``: an unrecorded call runs the original
            # code after one truth test. Only for functions without nested definitions, which would
            # otherwise be defined unrecorded by an unrecorded call (and doubled at every level).
            if doc:
                pristine.pop(0)
            declared: list[ast.stmt] = []
            if declares:
                declared = [n for n in _own_scope(pristine) if isinstance(n, (ast.Global, ast.Nonlocal))]
                drop = _DropDeclarations()
                pristine = [drop.visit(stmt) for stmt in pristine]
                body = [drop.visit(stmt) for stmt in body]
            if not pristine or not isinstance(pristine[-1], (ast.Return, ast.Raise)):
                pristine.append(ast.copy_location(ast.Return(value=None), pristine[-1] if pristine else ref))
            test = ast.copy_location(ast.UnaryOp(op=ast.Not(), operand=ast.copy_location(gate, ref)), ref)
            unrecorded = ast.copy_location(ast.If(test=test, body=pristine, orelse=[]), ref)  # the original
            # statements keep their own positions
            frame_reads, rets = _frame_reads(body) if isinstance(node, ast.FunctionDef) else (-1, 0)
            if frame_reads == rets:
                if rets:
                    body = [_ReturnsToCurrent().visit(stmt) for stmt in body]
                call.func.attr = "enter_current"  # type: ignore[attr-defined]
                start: Any = _at(ast.Expr(value=call), ref)
                nothing: Any = _at(ast.Pass(), node)
                wrapped = self._wrap_try_current(body or [nothing], ref)
                node.body = [*doc, *declared, unrecorded, start, wrapped]
                return node
            enter: Any = _at(ast.Assign(targets=[_name(FRAME, ast.Store())], value=call), ref)
            empty: Any = _at(ast.Pass(), node)
            node.body = [*doc, *declared, unrecorded, enter, self._wrap_try(body or [empty], ref)]
            return node
        # ``enter(...) if gate else NO_FRAME``: an unrecorded call's hooks see NO_FRAME and return
        enter = _at(ast.Assign(targets=[_name(FRAME, ast.Store())],
                               value=ast.IfExp(test=gate, body=call, orelse=_rt_attr("NO_FRAME"))), ref)
        node.body = doc + [enter, self._wrap_try(body or [_at(ast.Pass(), node)], ref)]  # type: ignore[list-item]
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def _planned(self, node_id: str | None) -> tuple[int, float]:
        """(level, rate) of the function ``node_id``: the plan's, else the module's level at rate 1."""
        if self.plan is None:
            return self._levels[0], 1.0
        info = self.by_id.get(node_id) if node_id is not None else None
        setting = self.plan.setting_for(self.nodes.module, info.qualname.replace("@", "") if info else "",
                                        node_id or "")
        return (setting.level, setting.rate) if setting.records else (OFF, 0.0)

    @staticmethod
    def _params(args: ast.arguments) -> list[str]:
        names = [a.arg for a in (*args.posonlyargs, *args.args)]
        if args.vararg is not None:
            names.append(args.vararg.arg)
        names += [a.arg for a in args.kwonlyargs]
        if args.kwarg is not None:
            names.append(args.kwarg.arg)
        return names

    def _function_info(self, node_id: str, params: list[str], line: int) -> tuple:
        info = self.by_id[node_id]
        qualname = info.qualname.replace("@", "")  # duplicate-definition marker is for IDs only
        return (node_id, f"{self.nodes.module}.{qualname}", self.nodes.file, line,
                self.nodes.code_version, tuple(params))

    def _wrap_try_current(self, body: list[ast.stmt], ref: ast.AST) -> ast.stmt:
        """The no-variable form's ``try: body except BaseException: fail_current(); raise finally: leave_current()``."""
        handler = ast.ExceptHandler(type=_name("BaseException"), name=None,
                                    body=[ast.Expr(value=_call("fail_current")), ast.Raise(exc=None, cause=None)])
        final: list[ast.stmt] = [ast.Expr(value=_call("leave_current"))]
        wrapper = ast.Try(body=body, handlers=[_at(handler, ref)], orelse=[], finalbody=final)  # type: ignore[list-item]
        for stmt in (*handler.body, *final):
            _at(stmt, ref)
        for k in ("lineno", "col_offset", "end_lineno", "end_col_offset"):
            setattr(wrapper, k, getattr(ref, k))
        return wrapper

    def _wrap_try(self, body: list[ast.stmt], ref: ast.AST, *, release: bool = False) -> ast.stmt:
        handler = ast.ExceptHandler(
            type=_name("BaseException"), name=EXC,
            body=[ast.Expr(value=_call("fail", _name(FRAME), _name(EXC))), ast.Raise(exc=None, cause=None)])
        final: list[ast.stmt] = [ast.Expr(value=_call("leave", _name(FRAME)))]
        if release:  # a module's frame global must not keep the finished frame alive
            final.append(ast.Delete(targets=[_name(FRAME, ast.Del())]))
        wrapper = ast.Try(body=body, handlers=[_at(handler, ref)], orelse=[], finalbody=final)  # type: ignore[list-item]
        for stmt in (*handler.body, *final):
            _at(stmt, ref)
        wrapper.lineno, wrapper.col_offset = ref.lineno, ref.col_offset  # type: ignore[attr-defined]
        wrapper.end_lineno, wrapper.end_col_offset = ref.end_lineno, ref.end_col_offset  # type: ignore[attr-defined]
        return wrapper


def rewrite(tree: ast.Module, nodes: ModuleNodes, source: str, level: int = FUNCTIONS,
            plan: Plan | None = None) -> tuple[ast.Module, RewriteStats]:
    """Rewrite ``tree`` (parsed from ``source``) in place at ``level``, or per function as ``plan``
    says (``level`` is then unused); returns it and what was done."""
    rewriter = Rewriter(nodes, source, level, plan)
    return rewriter.rewrite(tree), rewriter.stats


def rewrite_source(source: str, module: str, file: str, level: int = FUNCTIONS,
                   code_version: str | None = None, plan: Plan | None = None
                   ) -> tuple[ast.Module, ModuleNodes, RewriteStats]:
    """Parse (once), name and rewrite one module; raises SyntaxError as is."""
    from execscope.instrumentation.nodes.node_ids import name_nodes

    tree = ast.parse(source, filename=file or "<unknown>")
    nodes = name_nodes(source, module, file, code_version, tree=tree)  # before the rewrite mutates the tree
    tree, stats = rewrite(tree, nodes, source, level, plan)
    return tree, nodes, stats
