"""Static call edges: from each call node to the definition it calls, where that is known.

Resolved without running anything, from one module's syntax:

* a name bound by a ``def``/``class`` of the module (or of an enclosing function) -> that definition;
  a class -> the class and its ``__init__`` when the class defines one;
* a name bound by ``from m import f`` / ``import m`` (``m.f(...)``) -> ``m:f`` (relative imports
  resolved against the module's package), the ID that module's own analysis gives ``f``;
* ``self.m(...)`` / ``cls.m(...)`` inside a method, and ``C.m(...)`` -> ``C.m`` when class ``C`` (or a
  base class defined in the same module) defines ``m``.

A name that the calling scope rebinds (assignment, parameter, loop target, ...) is not resolved: the
static target would be a guess. Unresolved calls get no edge; the runtime call graph shows them.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from execscope.instrumentation.nodes.node_ids import ModuleNodes


@dataclass(slots=True)
class _Scope:
    qualname: str  # '' for the module
    names: dict[str, str] = field(default_factory=dict)  # name -> target node ID
    rebound: set[str] | None = field(default_factory=set)  # None: module/class scope (not tracked)
    cls: str | None = None  # qualname of the class whose method this is


@dataclass(frozen=True, slots=True)
class CallEdge:
    call: str
    target: str
    callee: str
    how: str  # local, import, method, class


def _package(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def static_calls(tree: ast.Module, nodes: ModuleNodes, resolve: Callable[[ast.AST, str], str | None],
                 is_package: bool = False) -> list[CallEdge]:
    """Call edges of one module, from one walk of its tree (calls are resolved at the end, when every
    scope's bindings and every class's methods are known)."""
    module = nodes.module
    package = _package(module, is_package)
    classes: dict[str, dict[str, str]] = {}   # class qualname -> method name -> node ID
    bases: dict[str, list[str]] = {}
    pending: list[tuple[str, ast.Call, list[_Scope]]] = []
    class_bases: list[tuple[str, list[ast.expr], list[_Scope]]] = []

    def import_target(node: ast.ImportFrom, alias: ast.alias) -> str:
        if node.level:
            parts = package.split(".") if package else []
            base = ".".join(parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts)
            source = f"{base}.{node.module}" if node.module else base
        else:
            source = node.module or ""
        return f"{source}:{alias.name}"

    def bind(scope: _Scope, stmts: list[ast.stmt]) -> None:
        """Names bound by definitions and imports at the top level of a body (also under if/try)."""
        for s in stmts:
            if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                target = resolve(s, "class" if isinstance(s, ast.ClassDef) else "function")
                if target is not None:
                    scope.names[s.name] = target
                continue
            if isinstance(s, ast.ImportFrom) and s.module != "__future__":
                for alias in s.names:
                    if alias.name != "*":
                        scope.names[alias.asname or alias.name] = import_target(s, alias)
            elif isinstance(s, ast.Import):
                for alias in s.names:
                    name = alias.asname or alias.name.split(".")[0]
                    scope.names[name] = "module:" + (alias.name if alias.asname else name)
            for block in ("body", "orelse", "finalbody"):
                inner = getattr(s, block, None)
                if isinstance(inner, list):
                    bind(scope, inner)
            for h in getattr(s, "handlers", ()):
                bind(scope, h.body)

    def walk(roots: list[ast.AST], scopes: list[_Scope], class_qual: str | None = None) -> None:
        """One scope's code: calls are queued, names it stores are marked rebound, nested scopes
        are walked with their own chain."""
        scope = scopes[-1]
        stack = list(reversed(roots))
        while stack:
            n = stack.pop()
            t = type(n)
            if t is ast.FunctionDef or t is ast.AsyncFunctionDef:
                fn: Any = n
                stack.extend((*fn.decorator_list, *fn.args.defaults, *(d for d in fn.args.kw_defaults if d)))
                fid = resolve(fn, "function")
                qual = fid.split(":", 1)[1] if fid else fn.name
                a = fn.args
                params = {x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)}
                params |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
                inner = _Scope(qual, rebound=params - ({"self", "cls"} if class_qual else set()), cls=class_qual)
                bind(inner, fn.body)
                # a method does not see its class body's names: its chain skips the class scope
                chain = scopes[:-1] if class_qual is not None else scopes
                walk(fn.body, [*chain, inner])
                continue
            if t is ast.ClassDef:
                c: Any = n
                stack.extend((*c.decorator_list, *c.bases, *(k.value for k in c.keywords)))
                cid = resolve(c, "class")
                qual = cid.split(":", 1)[1] if cid else c.name
                methods = classes.setdefault(qual, {})
                for s in c.body:
                    if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        mid = resolve(s, "function")
                        if mid is not None:
                            methods.setdefault(s.name, mid)
                class_bases.append((qual, c.bases, scopes))
                body_scope = _Scope(qual, rebound=None)
                bind(body_scope, c.body)
                walk(c.body, [*scopes, body_scope], class_qual=qual)
                continue
            if t is ast.Call:
                call_id = resolve(n, "call")
                if call_id is not None:
                    pending.append((call_id, n, scopes))  # type: ignore[arg-type]
            elif t is ast.Name:
                if scope.rebound is not None and not isinstance(n.ctx, ast.Load):  # type: ignore[attr-defined]
                    scope.rebound.add(n.id)  # type: ignore[attr-defined]
                continue
            elif t is ast.ExceptHandler and n.name and scope.rebound is not None:  # type: ignore[attr-defined]
                scope.rebound.add(n.name)  # type: ignore[attr-defined]
            stack.extend(_children(n))

    def lookup(scopes: list[_Scope], name: str) -> str | None:
        for scope in reversed(scopes):
            if scope.rebound is not None and name in scope.rebound and name not in scope.names:
                return None
            if name in scope.names:
                return scope.names[name]
        return None

    def method(cls: str, name: str, depth: int = 0) -> str | None:
        found = classes.get(cls, {}).get(name)
        if found is None and depth < 8:
            for base in bases.get(cls, ()):
                found = method(base, name, depth + 1)
                if found is not None:
                    break
        return found

    def resolve_call(call: ast.Call, scopes: list[_Scope]) -> tuple[str, str, str] | None:
        f = call.func
        if isinstance(f, ast.Name):
            target = lookup(scopes, f.id)
            if target is None or target.startswith("module:"):
                return None
            if target.split(":", 1)[1] in classes and target.startswith(module + ":"):
                return target, f.id, "class"
            return target, f.id, "local" if target.startswith(module + ":") else "import"
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            base = f.value.id
            scope = scopes[-1]
            if scope.cls is not None and base in ("self", "cls"):
                target = method(scope.cls, f.attr)
                return (target, f"{base}.{f.attr}", "method") if target else None
            owner = lookup(scopes, base)
            if owner is None:
                return None
            if owner.startswith("module:"):
                return f"{owner[7:]}:{f.attr}", f"{base}.{f.attr}", "import"
            qual = owner.split(":", 1)[1]
            if qual in classes and owner.startswith(module + ":"):
                target = method(qual, f.attr)
                return (target, f"{base}.{f.attr}", "method") if target else None
        return None

    module_scope = _Scope("", rebound=None)
    bind(module_scope, tree.body)
    walk(list(tree.body), [module_scope])
    for qual, base_exprs, scopes in class_bases:
        known = [lookup(scopes, b.id) for b in base_exprs if isinstance(b, ast.Name)]
        bases[qual] = [k.split(":", 1)[1] for k in known if k is not None and k.startswith(module + ":")]
    out: list[CallEdge] = []
    for call_id, call, scopes in pending:
        hit = resolve_call(call, scopes)
        if hit is None:
            continue
        target, callee, how = hit
        out.append(CallEdge(call_id, target, callee, how))
        if how == "class":
            init = method(target.split(":", 1)[1], "__init__")
            if init is not None:
                out.append(CallEdge(call_id, init, callee, "class"))
    return out


def _children(node: ast.AST) -> list[ast.AST]:
    out: list[ast.AST] = []
    for name in node._fields:
        value = getattr(node, name, None)
        if type(value) is list:
            out.extend(v for v in value if isinstance(v, ast.AST))
        elif isinstance(value, ast.AST) and not isinstance(value, ast.expr_context):
            out.append(value)
    return out
