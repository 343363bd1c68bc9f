"""One function's graphs loaded back from the store, and written as Graphviz DOT for a person.

``load_function_graph(store, "pkg.mod:Cart.total")`` gives the function's CFG, CDG and data-flow
edges (the kinds asked for) of its newest stored code version, or of ``code_version``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from execscope.storage.store import Store

DEFAULT_KINDS = ("CFG",)
_STYLE = {"CFG": "", "CDG": "style=dashed color=blue", "REACHING_DEF": "style=dotted color=darkgreen",
          "PHI": "style=dotted color=purple", "CALL": "color=red"}


@dataclass(slots=True)
class FunctionGraph:
    function: str
    code_version: str
    nodes: dict[str, dict[str, object]] = field(default_factory=dict)
    """node ID -> kind, line, code (as stored in cpg_nodes)."""
    edges: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(src, dst, kind, label)."""

    def to_dot(self) -> str:
        def esc(s: str) -> str:
            return s.replace("\\", "\\\\").replace('"', '\\"')

        def q(s: str) -> str:
            return f'"{esc(s)}"'

        lines = [f"digraph {q(self.function)} {{", "  node [shape=box fontname=monospace fontsize=10];"]
        for node_id, info in self.nodes.items():
            short = node_id.split(":", 2)[-1]
            label = esc(short) + (f"\\nL{info.get('line', '')}: {esc(str(info.get('code', '')))}"
                                  if info.get("code") else "")
            shape = "ellipse" if info.get("kind") in ("entry", "exit") else (
                "diamond" if info.get("kind") in ("arm", "except") else "box")
            lines.append(f'  {q(node_id)} [label="{label}" shape={shape}];')  # label escaped; its \\n is DOT's newline
        for src, dst, kind, label in self.edges:
            attrs = [f"label={q(label)}"] if label else []
            if _STYLE.get(kind):
                attrs.append(_STYLE[kind])
            lines.append(f"  {q(src)} -> {q(dst)} [{' '.join(attrs)}];")
        lines.append("}")
        return "\n".join(lines) + "\n"


def load_function_graph(store: Store, function: str, kinds: tuple[str, ...] = DEFAULT_KINDS,
                        code_version: str | None = None) -> FunctionGraph:
    """Raises ``LookupError`` when no CFG of ``function`` is stored."""
    if code_version is None:
        rows = store.query(
            "SELECT code_version FROM cpg_nodes WHERE node_id = {f:String} ORDER BY inserted_at DESC LIMIT 1",
            parameters={"f": function}).rows
        if not rows:
            raise LookupError(f"no function {function!r} in the store (run `execscope analyze` or record it)")
        code_version = rows[0][0]
    edges = store.query(
        "SELECT DISTINCT src, dst, kind, label FROM cpg_edges FINAL WHERE code_version = {v:String} "
        "AND kind IN {kinds:Array(String)} AND properties['scope'] = {f:String} ORDER BY kind, src, dst, label",
        parameters={"v": code_version, "kinds": list(kinds), "f": function}).rows
    if not edges:
        raise LookupError(f"no {'/'.join(kinds)} edges of {function!r} at code version {code_version}")
    graph = FunctionGraph(function, code_version, edges=[tuple(e) for e in edges])
    ids = sorted({e[0] for e in edges} | {e[1] for e in edges})
    for node_id, kind, line, code in store.query(
            "SELECT node_id, any(kind), any(line), any(code) FROM cpg_nodes WHERE code_version = {v:String} "
            "AND node_id IN {ids:Array(String)} GROUP BY node_id", parameters={"v": code_version, "ids": ids}).rows:
        graph.nodes[node_id] = {"kind": kind, "line": line, "code": code}
    for node_id in ids:
        graph.nodes.setdefault(node_id, {"kind": "", "line": "", "code": ""})
    return graph
