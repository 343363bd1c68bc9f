"""Where spans are written: columnar, idempotent inserts into ClickHouse.

Each batch carries a deduplication token (the spool file name, or a Kafka topic-partition-offset
range), so a batch retried after a crash adds nothing to query results.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from execscope.collector.otlp_decode import TRACE_COLUMNS
from execscope.storage.store import Store

if TYPE_CHECKING:
    from execscope.instrumentation.cpg import ModuleCpg

NODE_COLUMNS = ("node_id", "kind", "qualname", "name", "line", "col", "end_line", "end_col", "parent_id", "code")


class ClickHouseWriter:
    """Writes decoded batches into one store. Not thread-safe (one writer per store)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._known_versions: set[str] | None = None

    def write_spans(self, columns: list[list[Any]], dedup_token: str) -> int:
        if not columns[0]:
            return 0
        self.store.insert_columns("otel_traces", columns, TRACE_COLUMNS, dedup_token=dedup_token)
        return len(columns[0])

    def known_versions(self) -> set[str]:
        """``<code_version>:<module>`` of every module version stored (one file may be imported under
        two names, e.g. by a lazy-alias package, and gets node IDs under each)."""
        if self._known_versions is None:
            rows = self.store.query("SELECT DISTINCT code_version, module FROM cpg_nodes").rows
            self._known_versions = {f"{r[0]}:{r[1]}" for r in rows}
        return self._known_versions

    def write_module_cpg(self, cpg: ModuleCpg) -> int:
        """Insert one module version's whole CPG (edges, function facts, then nodes) unless stored.
        Returns the number of node rows written. Idempotent: replays are deduplicated by token."""
        from execscope.instrumentation.cpg import EDGE_COLUMNS, FUNCTION_COLUMNS

        nodes = cpg.nodes
        version, module = nodes.code_version, nodes.module
        key = f"{version}:{module}"
        if key in self.known_versions():
            return 0
        if cpg.edges:
            m = len(cpg.edges)
            columns: list[list[Any]] = [[version] * m] + [[e[i] for e in cpg.edges] for i in range(5)]
            self.store.insert_columns("cpg_edges", columns, ("code_version", *EDGE_COLUMNS),
                                      dedup_token=f"cpg_edges-all-{version}-{module}")
        if cpg.functions:
            k = len(cpg.functions)
            columns = [[f[i] for f in cpg.functions] for i in range(len(FUNCTION_COLUMNS))] + [[version] * k]
            self.store.insert_columns("cpg_functions", columns, (*FUNCTION_COLUMNS, "code_version"),
                                      dedup_token=f"cpg_functions-{version}-{module}")
        if cpg.source:
            self.store.insert_columns("cpg_sources", [[version], [module], [nodes.file], [cpg.source]],
                                      ("code_version", "module", "file", "source"),
                                      dedup_token=f"cpg_sources-{version}-{module}")
        rows = nodes.nodes
        n = len(rows)
        columns = [[getattr(r, c) for r in rows] for c in NODE_COLUMNS]
        columns += [[version] * n, [module] * n, [nodes.file] * n]
        self.store.insert_columns("cpg_nodes", columns, (*NODE_COLUMNS, "code_version", "module", "file"),
                                  dedup_token=f"cpg_nodes-all-{version}-{module}")
        self.known_versions().add(key)
        return n

    def write_module_nodes(self, doc: dict[str, Any]) -> int:
        """Store one module version an import hook published: its whole CPG when the source on disk
        is still that version (the usual case), else its node rows and AST edges only."""
        version = doc["code_version"]
        key = f"{version}:{doc['module']}"
        if key in self.known_versions():
            return 0
        cpg = _analyse_published(doc)
        if cpg is not None:
            return self.write_module_cpg(cpg)
        fields = doc["fields"]
        index = {f: i for i, f in enumerate(fields)}
        rows = doc["nodes"]
        n = len(rows)
        order: dict[str, int] = {}
        src, dst, label = [], [], []
        for r in rows:
            parent = r[index["parent_id"]]
            if parent:
                src.append(parent)
                dst.append(r[index["node_id"]])
                label.append(str(order.setdefault(parent, 0)))
                order[parent] += 1
        if src:
            m = len(src)
            self.store.insert_columns(
                "cpg_edges", [[version] * m, src, dst, ["AST"] * m, label, [{}] * m],
                ("code_version", "src", "dst", "kind", "label", "properties"),
                dedup_token=f"cpg_edges-ast-{version}-{doc['module']}")
        # nodes last: a version counts as stored once its nodes are (edges are written first, so a
        # crash in between leaves nothing half-known; a replay is deduplicated by the tokens)
        columns: list[list[Any]] = [[r[index[c]] for r in rows] for c in NODE_COLUMNS]
        columns += [[version] * n, [doc["module"]] * n, [doc["file"]] * n]
        self.store.insert_columns("cpg_nodes", columns, (*NODE_COLUMNS, "code_version", "module", "file"),
                                  dedup_token=f"cpg_nodes-{version}-{doc['module']}")
        self.known_versions().add(key)
        return n


def load_module_doc(data: bytes) -> dict[str, Any]:
    doc = json.loads(data)
    for key in ("module", "file", "code_version", "fields", "nodes"):
        if key not in doc:
            raise ValueError(f"node file without {key!r}")
    return doc


def _analyse_published(doc: dict[str, Any]) -> ModuleCpg | None:
    """The full CPG of a published module, from its file, if the file still has that version."""
    from execscope.project_analysis import analyse_file

    result = analyse_file(doc["file"], doc["module"])
    return result.cpg if result.status == "ok" and result.code_version == doc["code_version"] else None
