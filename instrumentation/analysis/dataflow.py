"""SSA-style data flow over one scope's CFG: definitions, uses, reaching definitions and phi nodes.

Variables are ``(namespace, name)``: the namespace is the function, module, lambda or comprehension
owning the CFG, or a class whose body runs inline in it (class bodies bind class attributes, not the
enclosing scope's names). Besides plain names, attribute paths ``x.a`` (killed by any new ``x``) and
subscript stores ``d[]`` (weak: a store adds a definition and kills none) are tracked.

Where each construct defines:

* assignment, augmented / annotated assignment, walrus, ``with ... as``, star-unpacking: at the
  statement, the definition named by the target's node ID;
* ``for`` targets: at the loop's ``.body`` arm (every iteration);
* ``def`` / ``class`` / ``import``: at the statement; parameters: at the scope's entry;
* ``except E as e``: at the handler arm; every edge leaving the handler unbinds ``e`` (Python deletes
  it), so it reaches nothing after the handler;
* ``match`` captures: at the case arm; ``del x``: kills ``x``.

A use is reached by every definition of its variable that reaches the using node along the CFG
(reaching definitions, a fixed point over bitsets). A phi node ``<join>.phi(<name>)`` stands at every
join node where different definitions of a used variable arrive along different incoming edges.
Names with no local definition (globals, closures, builtins) are reported as ``free`` for the caller
to link across scopes.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field

from execscope.instrumentation.analysis.cfg import Cfg

Key = tuple[str, str]  # (namespace, variable)


@dataclass(slots=True)
class NodeFacts:
    gens: list[tuple[Key, str, bool]] = field(default_factory=list)
    """(variable, definition node ID, strong) in execution order; strong definitions kill others."""
    uses: list[Key] = field(default_factory=list)
    dels: list[Key] = field(default_factory=list)


@dataclass(slots=True)
class ScopeFlow:
    scope: str
    reaching: list[tuple[str, str, str]] = field(default_factory=list)
    """(definition, use node, variable) edges."""
    phis: list[tuple[str, str, str]] = field(default_factory=list)
    """(phi node ID, join node, variable)."""
    phi_inputs: list[tuple[str, str, str]] = field(default_factory=list)
    """(definition, phi node ID, variable)."""
    free: list[tuple[str, str]] = field(default_factory=list)
    """(use node, name) of names used without any local definition."""
    definitions: dict[str, list[str]] = field(default_factory=dict)
    """name -> every definition node ID of it in this scope's own namespace."""


Resolver = Callable[[ast.AST, str], "str | None"]


class _Facts:
    """Collects defs and uses of the expressions a node evaluates."""

    def __init__(self, ns: str, resolve: Resolver) -> None:
        self.ns = ns
        self.resolve = resolve
        self.out = NodeFacts()

    def use(self, name: str) -> None:
        self.out.uses.append((self.ns, name))

    def define(self, name: str, def_id: str | None, strong: bool = True) -> None:
        if def_id is not None:
            self.out.gens.append(((self.ns, name), def_id, strong))

    def load(self, e: ast.AST | None, bound: frozenset[str] = frozenset()) -> None:
        """Uses in ``e`` (not entering nested definitions; lambdas and comprehensions add their free
        names); walrus targets define."""
        if e is None:
            return
        stack = [e]
        while stack:
            n = stack.pop()
            if isinstance(n, ast.Name):
                if isinstance(n.ctx, ast.Load) and n.id not in bound:
                    self.use(n.id)
                continue
            if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load):
                path = _path(n)
                if path is not None and path.split(".")[0] not in bound:
                    self.use(path)
            elif isinstance(n, ast.NamedExpr):
                self.load(n.value, bound)
                if isinstance(n.target, ast.Name):
                    self.define(n.target.id, self.resolve(n.target, "target") or self.resolve(n, "walrus"))
                continue
            elif isinstance(n, ast.Lambda):
                a = n.args
                for d in (*a.defaults, *(k for k in a.kw_defaults if k is not None)):
                    stack.append(d)
                params = {x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)}
                params |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
                self.load(n.body, bound | params)
                continue
            elif isinstance(n, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
                targets: set[str] = set()
                for gen in n.generators:
                    targets |= {t.id for t in ast.walk(gen.target) if isinstance(t, ast.Name)}
                inner = bound | targets
                self.load(n.generators[0].iter, bound)
                for i, gen in enumerate(n.generators):
                    if i:
                        self.load(gen.iter, inner)
                    for cond in gen.ifs:
                        self.load(cond, inner)
                for part in ((n.key, n.value) if isinstance(n, ast.DictComp) else (n.elt,)):
                    self.load(part, inner)
                continue
            stack.extend(c for c in ast.iter_child_nodes(n) if not isinstance(c, ast.expr_context))

    def store(self, target: ast.AST) -> None:
        """Definitions made by assigning to ``target`` (and the uses its sub-expressions make)."""
        if isinstance(target, ast.Name):
            self.define(target.id, self.resolve(target, "target"))
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self.store(element)
        elif isinstance(target, ast.Starred):
            self.store(target.value)
        elif isinstance(target, ast.Attribute):
            self.load(target.value)
            path = _path(target)
            if path is not None:
                self.define(path, self.resolve(target, "target"))
        elif isinstance(target, ast.Subscript):
            self.load(target.value)
            self.load(target.slice)
            if isinstance(target.value, ast.Name):
                self.define(f"{target.value.id}[]", self.resolve(target, "target"), strong=False)


def _path(e: ast.Attribute) -> str | None:
    parts: list[str] = []
    cur: ast.AST = e
    while isinstance(cur, ast.Attribute):
        parts.append(cur.attr)
        cur = cur.value
    if not isinstance(cur, ast.Name):
        return None
    parts.append(cur.id)
    return ".".join(reversed(parts))


def _captures(p: ast.AST) -> list[str]:
    out: list[str] = []
    for n in ast.walk(p):
        if isinstance(n, (ast.MatchAs, ast.MatchStar)) and n.name:
            out.append(n.name)
        elif isinstance(n, ast.MatchMapping) and n.rest:
            out.append(n.rest)
    return out


def node_facts(cfg: Cfg, node_id: str, resolve: Resolver) -> NodeFacts:
    """Defs and uses of one CFG node (see the module docstring for where each construct defines)."""
    ns = cfg.namespace.get(node_id, cfg.scope)
    f = _Facts(ns, resolve)
    a = cfg.ast_of.get(node_id)
    kind = cfg.kinds.get(node_id)
    if a is None:
        return f.out
    if kind == "arm":
        if isinstance(a, (ast.For, ast.AsyncFor)):
            f.store(a.target)
        elif isinstance(a, ast.ExceptHandler) and a.name:
            f.define(a.name, node_id)
        elif isinstance(a, ast.match_case):
            f.load(a.guard)
            for name in _captures(a.pattern):
                f.define(name, node_id)
        return f.out
    if isinstance(a, ast.Assign):
        f.load(a.value)
        for t in a.targets:
            f.store(t)
    elif isinstance(a, ast.AugAssign):
        f.load(a.value)
        if isinstance(a.target, ast.Name):
            f.use(a.target.id)
        else:
            f.load(a.target)
        f.store(a.target)
    elif isinstance(a, ast.AnnAssign):
        if a.value is not None:
            f.load(a.value)
            f.store(a.target)
    elif isinstance(a, (ast.For, ast.AsyncFor)):
        f.load(a.iter)
    elif isinstance(a, ast.While):
        f.load(a.test)
    elif isinstance(a, ast.If):
        f.load(a.test)
    elif isinstance(a, (ast.With, ast.AsyncWith)):
        for item in a.items:
            f.load(item.context_expr)
            if item.optional_vars is not None:
                f.store(item.optional_vars)
    elif isinstance(a, ast.Match):
        f.load(a.subject)
    elif isinstance(a, (ast.FunctionDef, ast.AsyncFunctionDef)):
        for d in (*a.decorator_list, *a.args.defaults, *(k for k in a.args.kw_defaults if k is not None)):
            f.load(d)
        f.define(a.name, node_id)
    elif isinstance(a, ast.ClassDef):
        for d in (*a.decorator_list, *a.bases, *(k.value for k in a.keywords)):
            f.load(d)
        f.define(a.name, node_id)
    elif isinstance(a, ast.Import):
        for alias in a.names:
            f.define(alias.asname or alias.name.split(".")[0], node_id)
    elif isinstance(a, ast.ImportFrom):
        for alias in a.names:
            if alias.name != "*":
                f.define(alias.asname or alias.name, node_id)
    elif isinstance(a, ast.Delete):
        for t in a.targets:
            if isinstance(t, ast.Name):
                f.out.dels.append((ns, t.id))
            else:
                f.load(t)
    elif isinstance(a, (ast.Global, ast.Nonlocal, ast.Try)):
        pass
    elif isinstance(a, ast.stmt):
        for child in ast.iter_child_nodes(a):
            if not isinstance(child, (ast.stmt, ast.expr_context, ast.excepthandler, ast.match_case)):
                f.load(child)
    else:  # comprehension/lambda entry: nothing; expression arms belong to their statement
        pass
    return f.out


def analyse(cfg: Cfg, resolve: Resolver, params: list[str], param_def: str | None) -> ScopeFlow:
    """Reaching definitions and phi placement for one CFG."""
    flow = ScopeFlow(cfg.scope)
    facts: dict[str, NodeFacts] = {n: node_facts(cfg, n, resolve) for n in cfg.nodes}
    if param_def is not None:
        facts[cfg.entry].gens.extend(((cfg.scope, p), param_def, True) for p in params)
    # number the definitions; one bit each
    defs: list[tuple[Key, str]] = []
    index: dict[tuple[Key, str], int] = {}
    by_key: dict[Key, int] = {}
    by_base: dict[tuple[str, str], int] = {}  # (ns, base name) -> mask of attribute paths on it
    for n in cfg.nodes:
        for key, def_id, _ in facts[n].gens:
            if (key, def_id) not in index:
                bit = index[(key, def_id)] = len(defs)
                defs.append((key, def_id))
                by_key[key] = by_key.get(key, 0) | (1 << bit)
                if "." in key[1]:
                    base = (key[0], key[1].split(".")[0])
                    by_base[base] = by_base.get(base, 0) | (1 << bit)
                if key[0] == cfg.scope:
                    flow.definitions.setdefault(key[1], []).append(def_id)
    gen: dict[str, int] = {}
    kill: dict[str, int] = {}
    for n in cfg.nodes:
        g = k = 0
        for key, def_id, strong in facts[n].gens:
            bit = 1 << index[(key, def_id)]
            if strong:
                dead = by_key.get(key, 0) | by_base.get(key, 0)
                k |= dead
                g &= ~dead
            g |= bit
        for key in facts[n].dels:
            dead = by_key.get(key, 0) | by_base.get(key, 0)
            k |= dead
            g &= ~dead
        gen[n], kill[n] = g, k
    preds: dict[str, list[str]] = {n: [] for n in cfg.nodes}
    for src, dst, _ in cfg.edges:
        preds[dst].append(src)
    edge_kill: dict[tuple[str, str], int] = {}
    for inside, var_key in cfg.handler_regions:
        mask = by_key.get(var_key, 0)
        if mask:
            for src, dst, _ in cfg.edges:
                if src in inside and dst not in inside:
                    edge_kill[(src, dst)] = edge_kill.get((src, dst), 0) | mask
    out: dict[str, int] = {n: 0 for n in cfg.nodes}
    in_: dict[str, int] = {n: 0 for n in cfg.nodes}
    changed = True
    while changed:
        changed = False
        for n in cfg.nodes:
            acc = 0
            for p in preds[n]:
                acc |= out[p] & ~edge_kill.get((p, n), 0)
            in_[n] = acc
            new = gen[n] | (acc & ~kill[n])
            if new != out[n]:
                out[n] = new
                changed = True
    used: set[Key] = set()
    for n in cfg.nodes:
        reach = in_[n]
        for key in dict.fromkeys(facts[n].uses):
            used.add(key)
            mask = reach & by_key.get(key, 0)
            if not mask and key[0] != cfg.scope:  # class namespace: fall back to the defining scope
                key = (cfg.scope, key[1])
                mask = reach & by_key.get(key, 0)
            if mask:
                for bit in _bits(mask):
                    flow.reaching.append((defs[bit][1], n, key[1]))
            elif key not in by_key:
                flow.free.append((n, key[1]))
    for n in cfg.nodes:
        ps = preds[n]
        if len(ps) < 2 or n == cfg.exit:
            continue
        for key in used:
            mask = by_key.get(key, 0)
            if not mask:
                continue
            incoming = {out[p] & ~edge_kill.get((p, n), 0) & mask for p in ps}
            incoming.discard(0)
            union = 0
            for m in incoming:
                union |= m
            if len(incoming) > 1 and union.bit_count() > 1:
                phi = f"{n}.phi({key[1]})"
                flow.phis.append((phi, n, key[1]))
                for bit in _bits(union):
                    flow.phi_inputs.append((defs[bit][1], phi, key[1]))
    return flow


def _bits(mask: int) -> list[int]:
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out
