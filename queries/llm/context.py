"""What a model is told about a failure: the root-cause chain, the source of the functions it passes
through (as recorded: the code version that ran) and their neighbourhood in the code property graph
(data flow and calls), bounded, and all of it through :func:`~execscope.queries.llm.redaction.redact_text`."""

from __future__ import annotations

import os

from execscope.queries.llm.redaction import redact_text
from execscope.queries.why import Chain
from execscope.storage.store import Store

MAX_FUNCTIONS = 6
MAX_FUNCTION_LINES = 60
MAX_GRAPH_LINES = 40
MAX_CONTEXT_CHARS = 24_000

SYSTEM_PROMPT = """\
You are a debugging assistant. execscope recorded a Python program while it ran: every call, \
statement and value. You are given the root-cause chain it found by walking backwards from a failure \
(or a chosen value) through the recorded writes, arguments and returns, the source of the functions \
on that chain, and their data flow. Using only these facts, explain in a few sentences why the \
program did what it did (name file:line and the values), then suggest a concrete fix as a short diff \
or code snippet. If the facts do not show the cause, say what else should be looked at."""


def build_context(store: Store, chain: Chain) -> str:
    """The prompt: chain, source slice and graph neighbourhood (redacted, at most MAX_CONTEXT_CHARS)."""
    parts = [f"# Root-cause chain (trace {chain.trace_id})", chain.text().rstrip()]
    scopes: list[tuple[str, str]] = []
    for step in chain.steps:
        key = (step.scope, step.code_version)
        if step.scope and key not in scopes:
            scopes.append(key)
    shown = scopes[:MAX_FUNCTIONS]
    if shown:
        parts.append("# Source of the functions on the chain (as recorded)")
    sources: dict[str, list[str]] = {}
    for scope, version in shown:
        rows = store.query("SELECT any(file), any(line), any(end_line) FROM cpg_nodes WHERE node_id = {n:String} "
                           "AND code_version = {v:String}", parameters={"n": scope, "v": version}).rows
        if not rows or not rows[0][1]:
            continue
        file, first, last = rows[0]
        if version not in sources:
            found = store.query("SELECT any(source) FROM cpg_sources WHERE code_version = {v:String}",
                                parameters={"v": version}).rows
            sources[version] = (found[0][0] or "").splitlines() if found else []
        lines = sources[version]
        if not lines:
            continue
        last = min(max(last, first), len(lines), first + MAX_FUNCTION_LINES - 1)
        body = "\n".join(f"{n:>4}  {lines[n - 1]}" for n in range(first, last + 1))
        parts.append(f"## {os.path.basename(file)} — {scope} (lines {first}-{last})\n{body}")
    if shown:
        parts.append("# Code property graph around the chain (data flow: definition line -> use line; calls)")
    for scope, version in shown:
        rows = store.query(
            "SELECT DISTINCT e.kind, e.label, s.line, d.line, e.dst FROM cpg_edges AS e "
            "LEFT JOIN (SELECT node_id, any(line) AS line FROM cpg_nodes WHERE code_version = {v:String} "
            "           GROUP BY node_id) AS s ON s.node_id = e.src "
            "LEFT JOIN (SELECT node_id, any(line) AS line FROM cpg_nodes WHERE code_version = {v:String} "
            "           GROUP BY node_id) AS d ON d.node_id = e.dst "
            "WHERE e.code_version = {v:String} AND e.properties['scope'] = {f:String} "
            "AND e.kind IN ('REACHING_DEF', 'CALL') ORDER BY e.kind, s.line, d.line, e.label "
            "LIMIT {n:UInt32}", parameters={"v": version, "f": scope, "n": MAX_GRAPH_LINES + 1}).rows
        if not rows:
            continue
        lines = [f"## {scope}"]
        for kind, label, src_line, dst_line, dst in rows[:MAX_GRAPH_LINES]:
            lines.append(f"  `{label}` defined at line {src_line} reaches line {dst_line}" if kind == "REACHING_DEF"
                         else f"  line {src_line} calls {dst}")
        if len(rows) > MAX_GRAPH_LINES:
            lines.append("  (more edges not shown)")
        parts.append("\n".join(lines))
    if len(scopes) > len(shown):
        parts.append(f"({len(scopes) - len(shown)} more functions on the chain not shown)")
    text = redact_text("\n\n".join(parts))
    if len(text) > MAX_CONTEXT_CHARS:
        text = text[:MAX_CONTEXT_CHARS] + "\n(context cut here)"
    return text
