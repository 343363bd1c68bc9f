"""Post-dominators and control dependence over one :class:`~.cfg.Cfg`.

Node ``n`` is control dependent on ``a`` (edge label ``l``) when ``a`` has a successor along ``l``
from which every path to the exit passes through ``n``, and ``n`` does not post-dominate ``a``
(Ferrante, Ottenstein and Warren). Post-dominators use the iterative algorithm of Cooper, Harvey and
Kennedy on the reversed graph, with an ``entry -> exit`` edge added so that top-level nodes depend on
the entry. Nodes that cannot reach the exit (an endless loop) have no post-dominator and no
dependences.

Dependences are computed over normal flow: ``exception`` edges are left out, because with them
every statement after a call would depend on that call (it may raise), which says nothing a reader
wants from a CDG. Code reached only by an exception (a handler) has no controller here; the CFG's
``exception`` edges say which statements lead to it.
"""

from __future__ import annotations

from execscope.instrumentation.analysis.cfg import Cfg


def post_dominators(cfg: Cfg) -> dict[str, str]:
    """Immediate post-dominator of every node that reaches the exit (the exit maps to itself)."""
    succ: dict[str, list[str]] = {n: [] for n in cfg.nodes}
    pred: dict[str, list[str]] = {n: [] for n in cfg.nodes}
    for src, dst, label in cfg.edges:
        if label != "exception":
            succ[src].append(dst)
            pred[dst].append(src)
    succ[cfg.entry].append(cfg.exit)
    pred[cfg.exit].append(cfg.entry)
    # reverse postorder of the reversed graph, from the exit
    order: list[str] = []
    seen = {cfg.exit}
    stack: list[tuple[str, int]] = [(cfg.exit, 0)]
    while stack:
        node, i = stack[-1]
        preds = pred[node]
        if i < len(preds):
            stack[-1] = (node, i + 1)
            nxt = preds[i]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, 0))
        else:
            stack.pop()
            order.append(node)
    order.reverse()
    index = {n: i for i, n in enumerate(order)}
    ipdom: dict[str, str] = {cfg.exit: cfg.exit}
    changed = True
    while changed:
        changed = False
        for node in order[1:]:
            new: str | None = None
            for s in succ[node]:
                if s in ipdom:
                    new = s if new is None else _intersect(s, new, ipdom, index)
            if new is not None and ipdom.get(node) != new:
                ipdom[node] = new
                changed = True
    return ipdom


def _intersect(a: str, b: str, ipdom: dict[str, str], index: dict[str, int]) -> str:
    while a != b:
        while index[a] > index[b]:
            a = ipdom[a]
        while index[b] > index[a]:
            b = ipdom[b]
    return a


def control_dependences(cfg: Cfg) -> list[tuple[str, str, str]]:
    """``(controller, dependent, label)`` for every control dependence of the CFG, without duplicates."""
    ipdom = post_dominators(cfg)
    out: dict[tuple[str, str, str], None] = {}
    edges = [e for e in cfg.edges if e[2] != "exception"]
    edges.append((cfg.entry, cfg.exit, ""))
    for a, b, label in edges:
        stop = ipdom.get(a)
        if stop is None or b not in ipdom:
            continue
        runner = b
        while runner != stop and runner != cfg.exit:
            out[(a, runner, label)] = None
            runner = ipdom[runner]
    return list(out)
