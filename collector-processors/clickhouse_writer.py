"""Where spans are written: columnar, idempotent inserts into ClickHouse.

Each batch carries a deduplication token (the spool file name, or a Kafka topic-partition-offset
range), so a batch retried after a crash adds nothing to query results.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from execscope.collector.columns import TRACE_COLUMNS
from execscope.storage.store import Store

if TYPE_CHECKING:
    from execscope.instrumentation.analysis.cpg import ModuleCpg

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
        return self._write([_cpg_tables(cpg)])

    def write_module_nodes(self, doc: dict[str, Any]) -> int:
        """Store one module version an import hook published (see :meth:`write_modules`)."""
        return self.write_modules([doc])

    def write_modules(self, docs: list[dict[str, Any]]) -> int:
        """Store module versions import hooks published, each unless stored: its whole CPG when the
        source on disk is still that version (the usual case), else its node rows and AST edges
        only. One insert per table for all of them (an insert costs ~20 ms in the embedded engine
        whatever its size). Returns the number of node rows written."""
        tables: list[_ModuleRows] = []
        for doc in docs:
            key = f"{doc['code_version']}:{doc['module']}"
            if key in self.known_versions() or any(t.key == key for t in tables):
                continue
            cpg = _analyse_published(doc)
            tables.append(_cpg_tables(cpg) if cpg is not None else _published_tables(doc))
        return self._write(tables)

    def _write(self, modules: list[_ModuleRows]) -> int:
        modules = [m for m in modules if m.key not in self.known_versions()]
        if not modules:
            return 0
        keys = sorted(m.key for m in modules)
        batch = keys[0] if len(keys) == 1 else hashlib.sha1("\n".join(keys).encode()).hexdigest()
        # nodes last: a version counts as stored once its nodes are (the other tables are written
        # first, so a crash in between leaves nothing half-known; a replay is deduplicated by token)
        for table in ("cpg_edges", "cpg_functions", "cpg_sources", "cpg_nodes"):
            parts = [m.tables[table] for m in modules if table in m.tables]
            if not parts:
                continue
            names = parts[0][1]
            columns = [[v for part in parts for v in part[0][i]] for i in range(len(names))]
            if columns[0]:
                self.store.insert_columns(table, columns, names, dedup_token=f"{table}-{batch}")
        self.known_versions().update(keys)
        return sum(m.nodes for m in modules)


class _ModuleRows:
    """One module version's rows: {table: (columns, column names)}."""

    __slots__ = ("key", "nodes", "tables")

    def __init__(self, key: str, nodes: int, tables: dict[str, tuple[list[list[Any]], tuple[str, ...]]]) -> None:
        self.key, self.nodes, self.tables = key, nodes, tables


def _cpg_tables(cpg: ModuleCpg) -> _ModuleRows:
    from execscope.instrumentation.analysis.cpg import EDGE_COLUMNS, FUNCTION_COLUMNS

    nodes = cpg.nodes
    version, module = nodes.code_version, nodes.module
    tables: dict[str, tuple[list[list[Any]], tuple[str, ...]]] = {}
    m = len(cpg.edges)
    tables["cpg_edges"] = ([[version] * m] + [[e[i] for e in cpg.edges] for i in range(5)],
                           ("code_version", *EDGE_COLUMNS))
    k = len(cpg.functions)
    tables["cpg_functions"] = ([[f[i] for f in cpg.functions] for i in range(len(FUNCTION_COLUMNS))] + [[version] * k],
                               (*FUNCTION_COLUMNS, "code_version"))
    if cpg.source:
        tables["cpg_sources"] = ([[version], [module], [nodes.file], [cpg.source]],
                                 ("code_version", "module", "file", "source"))
    rows = nodes.nodes
    n = len(rows)
    columns = [[getattr(r, c) for r in rows] for c in NODE_COLUMNS]
    tables["cpg_nodes"] = (columns + [[version] * n, [module] * n, [nodes.file] * n],
                           (*NODE_COLUMNS, "code_version", "module", "file"))
    return _ModuleRows(f"{version}:{module}", n, tables)


def _published_tables(doc: dict[str, Any]) -> _ModuleRows:
    """Node rows and AST edges of a published module whose source changed since (no analysis)."""
    version, module = doc["code_version"], doc["module"]
    index = {f: i for i, f in enumerate(doc["fields"])}
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
    m = len(src)
    tables: dict[str, tuple[list[list[Any]], tuple[str, ...]]] = {
        "cpg_edges": ([[version] * m, src, dst, ["AST"] * m, label, [{}] * m],
                      ("code_version", "src", "dst", "kind", "label", "properties")),
        "cpg_nodes": ([[r[index[c]] for r in rows] for c in NODE_COLUMNS] + [[version] * n, [module] * n,
                                                                            [doc["file"]] * n],
                      (*NODE_COLUMNS, "code_version", "module", "file")),
    }
    return _ModuleRows(f"{version}:{module}", n, tables)


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
