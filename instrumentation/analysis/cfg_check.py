"""Checks observed transitions against a CFG: the soundness test of the static analysis.

A recorded call reports a sequence of node IDs (``line`` events name statements, ``branch`` events
name arms). Two consecutive reports ``a`` then ``b`` are explained by the CFG when a path leads from
``a`` to ``b`` through nodes that report nothing at the recording's level (at ``--level branches``
statements are silent; at ``statements`` nothing is). Anything else is a CFG violation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(slots=True)
class ScopeGraph:
    """The CFG of one scope as the checker needs it: successors and which nodes are arms."""

    successors: dict[str, list[str]] = field(default_factory=dict)
    arms: set[str] = field(default_factory=set)
    _reach: dict[tuple[str, bool], set[str]] = field(default_factory=dict)

    def add_edge(self, src: str, dst: str) -> None:
        self.successors.setdefault(src, []).append(dst)

    def explains(self, a: str, b: str, statements_level: bool) -> bool:
        key = (a, statements_level)
        reach = self._reach.get(key)
        if reach is None:
            reach = self._reach[key] = self._reportable_successors(a, statements_level)
        return b in reach

    def _reportable_successors(self, a: str, statements_level: bool) -> set[str]:
        """Nodes that can report next after ``a``: successors, and beyond silent ones."""
        out: set[str] = set()
        seen: set[str] = set()
        stack = list(self.successors.get(a, ()))
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            out.add(n)
            silent = not statements_level and n not in self.arms
            if silent:
                stack.extend(self.successors.get(n, ()))
        return out


def scope_graphs(edges: Iterable[tuple[str, str, str]], arms: Iterable[str]) -> dict[str, ScopeGraph]:
    """Group ``(scope, src, dst)`` CFG edges by scope; ``arms`` are the node IDs of kind arm/except."""
    graphs: dict[str, ScopeGraph] = {}
    for scope, src, dst in edges:
        g = graphs.get(scope)
        if g is None:
            g = graphs[scope] = ScopeGraph()
        g.add_edge(src, dst)
    arm_set = set(arms)
    for g in graphs.values():
        g.arms = arm_set
    return graphs


@dataclass(frozen=True, slots=True)
class Violation:
    scope: str
    src: str
    dst: str
    statements_level: bool


def check_sequence(graphs: Mapping[str, ScopeGraph], scope: str, nodes: list[str], statements_level: bool
                   ) -> list[Violation]:
    """Violations in one call's reported node sequence (already in report order)."""
    g = graphs.get(scope)
    out: list[Violation] = []
    for a, b in zip(nodes, nodes[1:]):
        if g is None or not g.explains(a, b, statements_level):
            out.append(Violation(scope, a, b, statements_level))
    return out
