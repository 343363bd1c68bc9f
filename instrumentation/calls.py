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

from execscope.instrumentation.node_ids import ModuleNodes


@dataclass(slots=True)
class _Scope:
    qualname: str  # '' for the module
    names: dict[str, str] = field(default_factory=dict)  # name -> target node ID
    rebound: set[str] = field(default_factory=set)
    cls: str | None = None  # qualname of the class whose method this is


@dataclass(frozen=True, slots=True)
class CallEdge:
    call: str
    target: str
    callee: str
    how: str  # local, import, method, class


def _package(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def _bound_names(func: ast.AST) -> set[str]:
    """Names a function (or module) body binds itself (not looking into nested scopes)."""
    out: set[str] = set()
    if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        a = func.args
        out.update(x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs))
        out.update(x.arg for x in (a.vararg, a.kwarg) if x is not None)
    stack: list[ast.AST] = list(getattr(func, "body", []))
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            out.add(n.id)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            out.add(n.name)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        stack.extend(ast.iter_child_nodes(n))
    return out


def static_calls(tree: ast.Module, nodes: ModuleNodes, resolve: Callable[[ast.AST, str], str | None],
                 is_package: bool = False) -> list[CallEdge]:
    module = nodes.module
    package = _package(module, is_package)
    classes: dict[str, dict[str, str]] = {}   # class qualname -> method name -> node ID
    bases: dict[str, list[str]] = {}
    module_scope = _Scope("")
    out: list[CallEdge] = []

    def import_target(node: ast.ImportFrom, alias: ast.alias) -> str:
        if node.level:
            parts = package.split(".") if package else []
            base = ".".join(parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts)
            source = f"{base}.{node.module}" if node.module else base
        else:
            source = node.module or ""
        return f"{source}:{alias.name}"

    def bind(scope: _Scope, stmts: list[ast.stmt], prefix: str) -> None:
        for s in stmts:
            if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                target = resolve(s, "class" if isinstance(s, ast.ClassDef) else "function")
                if target is not None:
                    scope.names[s.name] = target
            elif isinstance(s, ast.ImportFrom) and s.module != "__future__":
                for alias in s.names:
                    if alias.name != "*":
                        scope.names[alias.asname or alias.name] = import_target(s, alias)
            elif isinstance(s, ast.Import):
                for alias in s.names:
                    if alias.asname:
                        scope.names[alias.asname] = "module:" + alias.name
                    else:
                        top = alias.name.split(".")[0]
                        scope.names[top] = "module:" + top
            for block in ("body", "orelse", "finalbody"):  # definitions under if/try at this level
                if not isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    inner = getattr(s, block, None)
                    if isinstance(inner, list):
                        bind(scope, inner, prefix)
            for h in getattr(s, "handlers", ()):
                bind(scope, h.body, prefix)

    def lookup(scopes: list[_Scope], name: str) -> str | None:
        for scope in reversed(scopes):
            if name in scope.rebound and name not in scope.names:
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
            cls_qual = target.split(":", 1)[1]
            if cls_qual in classes:
                return target, f.id, "class"
            return target, f.id, "import" if not target.startswith(module + ":") else "local"
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
            if qual in classes:
                target = method(qual, f.attr)
                return (target, f"{base}.{f.attr}", "method") if target else None
        return None

    def visit_body(node: ast.AST, scopes: list[_Scope]) -> None:
        stack: list[ast.AST] = list(ast.iter_child_nodes(node)) if not isinstance(node, ast.Module) else list(
            node.body)
        while stack:
            n = stack.pop()
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                stack.extend((*n.decorator_list, *n.args.defaults,
                              *(d for d in n.args.kw_defaults if d is not None)))
                enter_function(n, scopes)
                continue
            if isinstance(n, ast.ClassDef):
                stack.extend((*n.decorator_list, *n.bases, *(k.value for k in n.keywords)))
                enter_class(n, scopes)
                continue
            if isinstance(n, ast.Call):
                call_id = resolve(n, "call")
                hit = resolve_call(n, scopes) if call_id is not None else None
                if call_id is not None and hit is not None:
                    target, callee, how = hit
                    out.append(CallEdge(call_id, target, callee, how))
                    if how == "class":
                        init = method(target.split(":", 1)[1], "__init__")
                        if init is not None:
                            out.append(CallEdge(call_id, init, callee, "class"))
            stack.extend(ast.iter_child_nodes(n))

    def enter_function(fn: ast.FunctionDef | ast.AsyncFunctionDef, scopes: list[_Scope]) -> None:
        fid = resolve(fn, "function")
        qual = fid.split(":", 1)[1] if fid else fn.name
        scope = _Scope(qual, rebound=_bound_names(fn))
        bind(scope, fn.body, qual)
        visit_body(fn, [*scopes, scope])

    def enter_class(c: ast.ClassDef, scopes: list[_Scope]) -> None:
        cid = resolve(c, "class")
        qual = cid.split(":", 1)[1] if cid else c.name
        classes.setdefault(qual, {})
        body_scope = _Scope(qual)
        bind(body_scope, c.body, qual)
        known = [lookup(scopes, b.id) for b in c.bases if isinstance(b, ast.Name)]
        bases[qual] = [k.split(":", 1)[1] for k in known if k is not None and k.startswith(module + ":")]
        # A class body's names are not visible inside its methods: they see the enclosing scopes.
        for s in c.body:
            if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit_method(s, scopes, qual)
            else:
                visit_body(ast.Module(body=[s], type_ignores=[]), [*scopes, body_scope])

    def visit_method(fn: ast.FunctionDef | ast.AsyncFunctionDef, scopes: list[_Scope], cls: str) -> None:
        for d in (*fn.decorator_list, *fn.args.defaults, *(k for k in fn.args.kw_defaults if k is not None)):
            visit_body(ast.Module(body=[ast.Expr(value=d)], type_ignores=[]), scopes)
        fid = resolve(fn, "function")
        qual = fid.split(":", 1)[1] if fid else fn.name
        scope = _Scope(qual, rebound=_bound_names(fn) - {"self", "cls"}, cls=cls)
        bind(scope, fn.body, qual)
        visit_body(fn, [*scopes, scope])

    # classes first (so calls above a class definition still resolve its methods)
    for n in ast.walk(tree):
        if isinstance(n, ast.ClassDef):
            cid = resolve(n, "class")
            if cid is not None:
                qual = cid.split(":", 1)[1]
                methods: dict[str, str] = {}
                for s in n.body:
                    if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        mid = resolve(s, "function")
                        if mid is not None:
                            methods.setdefault(s.name, mid)
                classes[qual] = methods
    module_scope.rebound = set()
    bind(module_scope, tree.body, "")
    visit_body(tree, [module_scope])
    return out
