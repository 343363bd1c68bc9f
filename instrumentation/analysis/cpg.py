"""The code property graph of one module: every row ``cpg_nodes`` / ``cpg_edges`` / ``cpg_functions``
needs, from one :mod:`ast` parse (node IDs equal to the libcst reference's, and the flow).

Edge kinds (``cpg_edges.kind``), all between node IDs of one ``code_version``:

``AST``           parent -> child, ``label`` = child's order under the parent
``CFG``           control flow (:mod:`.cfg`), ``label`` = branch label, ``properties['scope']``
``CDG``           controller -> dependent (:mod:`.cdg`), ``label`` = the controlling edge's label
``REACHING_DEF``  definition -> using node, ``label`` = variable; ``properties['via']`` is ``local``,
                  ``closure`` (an enclosing function's definition) or ``global`` (the module's)
``PHI``           definition -> phi node, ``label`` = variable
``CALL``          call node -> called definition (:mod:`.calls`), ``label`` = callee as written

Phi nodes are extra ``cpg_nodes`` rows of kind ``phi``; entry/exit nodes are rows of kind ``entry`` /
``exit``. Pure: no I/O, deterministic for a given (source, module).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from execscope.instrumentation.analysis.calls import static_calls
from execscope.instrumentation.analysis.cdg import control_dependences
from execscope.instrumentation.analysis.cfg import Cfg, build_cfgs_with
from execscope.instrumentation.analysis.dataflow import ScopeFlow, analyse
from execscope.instrumentation.analysis.metrics import function_facts
from execscope.instrumentation.nodes.node_ids import IdResolver, ModuleNodes, NodeInfo, name_nodes

EDGE_COLUMNS = ("src", "dst", "kind", "label", "properties")
FUNCTION_COLUMNS = ("node_id", "module", "qualname", "file", "line", "end_line", "cyclomatic", "nesting_depth",
                    "statements", "parameters", "cfg_nodes", "cfg_edges", "is_async", "is_generator")


@dataclass(slots=True)
class ModuleCpg:
    nodes: ModuleNodes
    edges: list[tuple[str, str, str, str, dict[str, str]]] = field(default_factory=list)
    functions: list[tuple] = field(default_factory=list)
    cfgs: list[Cfg] = field(default_factory=list)
    source: str = ""
    unmatched: int = 0
    """Constructs whose node ID was not found again (no CFG node for them); should stay 0."""


def _params(fn: ast.AST) -> list[str]:
    a = getattr(fn, "args", None)
    if not isinstance(a, ast.arguments):
        if isinstance(fn, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            return [t.id for g in fn.generators for t in ast.walk(g.target) if isinstance(t, ast.Name)]
        return []
    names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    names += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
    return names


def build_module_cpg(source: str, module: str, file: str = "", code_version: str | None = None,
                     nodes: ModuleNodes | None = None, is_package: bool = False) -> ModuleCpg:
    """Nodes, edges and function facts of one module. Raises ``SyntaxError`` / libcst errors for
    source that does not parse; callers report and skip."""
    tree = ast.parse(source, filename=file or "<unknown>")
    if nodes is None:
        nodes = name_nodes(source, module, file, code_version, tree=tree)
    resolve = IdResolver(nodes, source)
    out = ModuleCpg(nodes, source=source)
    edges = out.edges
    # AST
    order: dict[str, int] = {}
    for n in nodes.nodes:
        if n.parent_id:
            i = order.get(n.parent_id, 0)
            order[n.parent_id] = i + 1
            edges.append((n.parent_id, n.node_id, "AST", str(i), {}))
    by_id = {n.node_id: n for n in nodes.nodes}
    cfgs = build_cfgs_with(tree, nodes, resolve)
    out.cfgs = cfgs
    flows: dict[str, ScopeFlow] = {}
    parents: dict[str, str] = {}
    extra: list[NodeInfo] = []
    for cfg in cfgs:
        parents[cfg.scope] = cfg.parent
        scope_info = by_id.get(cfg.scope)
        props = {"scope": cfg.scope}
        for src, dst, label in cfg.edges:
            edges.append((src, dst, "CFG", label, props))
        for src, dst, label in control_dependences(cfg):
            edges.append((src, dst, "CDG", label, props))
        if scope_info is not None:
            for suffix, kind in ((cfg.entry, "entry"), (cfg.exit, "exit")):
                extra.append(NodeInfo(suffix, kind, scope_info.qualname, kind, scope_info.line, scope_info.col,
                                      scope_info.end_line, scope_info.end_col, cfg.scope, ""))
        params = _params(cfg.source_ast) if cfg.source_ast is not None else []
        flow = analyse(cfg, resolve, params, cfg.scope if params else None)
        flows[cfg.scope] = flow
        for def_id, use, var in flow.reaching:
            edges.append((def_id, use, "REACHING_DEF", var, {"via": "local", "scope": cfg.scope}))
        for phi, join, var in flow.phis:
            j = by_id.get(join) or by_id.get(join.rsplit(".", 1)[0])
            line, col, end_line, end_col = (j.line, j.col, j.end_line, j.end_col) if j else (0, 0, 0, 0)
            extra.append(NodeInfo(phi, "phi", scope_info.qualname if scope_info else "", var, line, col,
                                  end_line, end_col, cfg.scope, ""))
        for def_id, phi, var in flow.phi_inputs:
            edges.append((def_id, phi, "PHI", var, {"scope": cfg.scope}))
    # names used without a local definition: closures first, then the module's globals
    module_scope = nodes.nodes[0].node_id
    for cfg in cfgs:  # `global x` / `nonlocal x`: the scope's definitions of x are the outer scope's
        for stmt in cfg.ast_of.values():
            if isinstance(stmt, (ast.Global, ast.Nonlocal)):
                target = module_scope if isinstance(stmt, ast.Global) else _defining_scope(
                    cfg.parent, stmt.names, flows, parents)
                own = flows[cfg.scope].definitions
                for name in stmt.names:
                    if target in flows and own.get(name):
                        flows[target].definitions.setdefault(name, []).extend(own[name])
    for scope, flow in flows.items():
        for use, name in flow.free:
            outer = parents.get(scope, "")
            while outer:
                defs = flows[outer].definitions.get(name) if outer in flows else None
                if defs:
                    via = "global" if outer == module_scope else "closure"
                    for d in defs:
                        edges.append((d, use, "REACHING_DEF", name, {"via": via, "scope": scope}))
                    break
                outer = parents.get(outer, "")
    for call in static_calls(tree, nodes, resolve, is_package):
        edges.append((call.call, call.target, "CALL", call.callee,
                      {"resolved": call.how, "scope": call.call.rsplit(":", 1)[0]}))
    nodes.nodes.extend(extra)
    cfg_sizes = {c.scope: (len(c.nodes), len(c.edges)) for c in cfgs}
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            fid = resolve(fn, "function")
            info = by_id.get(fid) if fid else None
            if info is None:
                continue
            facts = function_facts(fn)
            n_nodes, n_edges = cfg_sizes.get(info.node_id, (0, 0))
            out.functions.append((fid, module, info.qualname, file, info.line, info.end_line, facts.cyclomatic,
                                  facts.nesting_depth, facts.statements, facts.parameters, n_nodes, n_edges,
                                  isinstance(fn, ast.AsyncFunctionDef), facts.is_generator))
    out.unmatched = len(resolve.unmatched)
    return out


def _defining_scope(scope: str, names: list[str], flows: dict[str, ScopeFlow], parents: dict[str, str]) -> str:
    """The nearest enclosing function scope defining one of ``names`` (for ``nonlocal``)."""
    while scope:
        flow = flows.get(scope)
        if flow is not None and any(flow.definitions.get(n) for n in names):
            return scope
        scope = parents.get(scope, "")
    return ""
