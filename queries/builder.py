"""A fluent query builder over the code property graph joined with runtime data.

    from execscope.queries.builder import CpgQuery
    slow_complex = (CpgQuery(store).functions()
                    .where("cyclomatic", ">=", 5).module("toolz.*")
                    .with_executions()
                    .order_by("p95_ms", descending=True).limit(10))
    slow_complex.rows()        # list of dicts
    slow_complex.dataframe()   # pandas.DataFrame (pandas must be installed)
    slow_complex.sql()         # the SQL, with {name:Type} placeholders; .params() the values

Every value is a bound parameter; column names and operators are checked against what the source
offers, so nothing a caller passes is pasted into SQL. Builders are immutable: each call returns a
new one, so a base query can be refined in several directions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from execscope.storage.store import Store

_FUNCTION_COLUMNS = {
    "node_id": "String", "code_version": "String", "module": "String", "qualname": "String", "file": "String",
    "line": "UInt32", "end_line": "UInt32", "cyclomatic": "UInt32", "nesting_depth": "UInt32",
    "statements": "UInt32", "parameters": "UInt32", "cfg_nodes": "UInt32", "cfg_edges": "UInt32",
    "is_async": "Bool", "is_generator": "Bool",
}
_NODE_COLUMNS = {
    "node_id": "String", "code_version": "String", "module": "String", "qualname": "String", "kind": "String",
    "name": "String", "file": "String", "line": "UInt32", "col": "UInt32", "end_line": "UInt32",
    "end_col": "UInt32", "parent_id": "String", "code": "String",
}
_FUNCTION_RUNTIME = {
    "calls": "UInt64", "errors": "UInt64", "total_ms": "Float64", "avg_ms": "Float64", "p50_ms": "Float64",
    "p95_ms": "Float64", "p99_ms": "Float64", "max_ms": "Float64",
}
_NODE_RUNTIME = {"executions": "UInt64", "traces": "UInt64"}
_OPERATORS = {"=": "=", "==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "like": "LIKE",
              "in": "IN", "not in": "NOT IN"}

_FUNCTIONS_RUNTIME_SQL = """
    SELECT NodeId, CodeVersion, count() AS calls, countIf(StatusCode = 'STATUS_CODE_ERROR') AS errors,
           round(sum(Duration) / 1e6, 3) AS total_ms, round(avg(Duration) / 1e6, 3) AS avg_ms,
           round(quantile(0.5)(Duration) / 1e6, 3) AS p50_ms, round(quantile(0.95)(Duration) / 1e6, 3) AS p95_ms,
           round(quantile(0.99)(Duration) / 1e6, 3) AS p99_ms, round(max(Duration) / 1e6, 3) AS max_ms
    FROM otel_traces WHERE NodeId != '' GROUP BY NodeId, CodeVersion"""
_NODES_RUNTIME_SQL = """
    SELECT NodeId, count() AS executions, uniqExact(TraceId) AS traces FROM execscope_events
    WHERE EventName IN ('execscope.line', 'execscope.branch', 'execscope.assign') GROUP BY NodeId"""


class QueryBuildError(ValueError):
    """A column, operator or value the chosen source does not offer; the message lists what does."""


@dataclass(frozen=True)
class CpgQuery:
    store: Store | None = None
    source: str = ""
    runtime: bool = False
    filters: tuple[tuple[str, str, str], ...] = ()
    """(column, SQL operator, parameter name)."""
    values: dict[str, tuple[str, Any]] = field(default_factory=dict)
    """parameter name -> (ClickHouse type, value)."""
    order: tuple[tuple[str, bool], ...] = ()
    max_rows: int | None = None
    columns: tuple[str, ...] = ()

    # --- sources -----------------------------------------------------------------------------------
    def functions(self) -> CpgQuery:
        """One row per function version (``cpg_functions``)."""
        return replace(self, source="functions")

    def nodes(self, kind: str | None = None) -> CpgQuery:
        """One row per CPG node (``cpg_nodes``), optionally of one ``kind`` (if, for, call, arm, ...)."""
        q = replace(self, source="nodes")
        return q.where("kind", "=", kind) if kind is not None else q

    # --- refinements -------------------------------------------------------------------------------
    def _available(self) -> dict[str, str]:
        if self.source == "functions":
            return {**_FUNCTION_COLUMNS, **(_FUNCTION_RUNTIME if self.runtime else {})}
        if self.source == "nodes":
            return {**_NODE_COLUMNS, **(_NODE_RUNTIME if self.runtime else {})}
        raise QueryBuildError("choose a source first: .functions() or .nodes()")

    def where(self, column: str, op: str, value: Any) -> CpgQuery:
        available = self._available()
        if column not in available:
            raise QueryBuildError(f"no column {column!r}; available: {', '.join(sorted(available))}")
        sql_op = _OPERATORS.get(op.lower().strip())
        if sql_op is None:
            raise QueryBuildError(f"unknown operator {op!r}; use one of {', '.join(_OPERATORS)}")
        ch_type = available[column]
        if sql_op in ("IN", "NOT IN"):
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise QueryBuildError(f"{op} needs a list of values")
            value, ch_type = list(value), f"Array({ch_type})"
        name = f"p{len(self.values)}"
        return replace(self, filters=(*self.filters, (column, sql_op, name)),
                       values={**self.values, name: (ch_type, value)})

    def module(self, pattern: str) -> CpgQuery:
        """Only code of modules matching a glob (``pkg.*``)."""
        if any(c in pattern for c in "*?["):
            return self.where("module", "like", _glob_to_like(pattern))
        return self.where("module", "=", pattern)

    def with_executions(self) -> CpgQuery:
        """Join what the recording saw: for functions calls, errors and latency (total/avg/p50/p95/
        p99/max ms); for nodes executions and traces. Code that never ran has zeros."""
        self._available()
        return replace(self, runtime=True)

    def order_by(self, column: str, descending: bool = False) -> CpgQuery:
        if column not in self._available():
            raise QueryBuildError(f"cannot order by {column!r}; available: {', '.join(sorted(self._available()))}")
        return replace(self, order=(*self.order, (column, descending)))

    def limit(self, n: int) -> CpgQuery:
        if n < 0:
            raise QueryBuildError("limit must be >= 0")
        return replace(self, max_rows=n)

    def select(self, *columns: str) -> CpgQuery:
        available = self._available()
        unknown = [c for c in columns if c not in available]
        if unknown:
            raise QueryBuildError(f"no column(s) {', '.join(unknown)}; available: {', '.join(sorted(available))}")
        return replace(self, columns=columns)

    # --- output ------------------------------------------------------------------------------------
    def sql(self) -> str:
        available = self._available()
        cols = self.columns or tuple(available)
        if self.source == "functions":
            base = ("(SELECT * FROM cpg_functions FINAL) AS f" + (
                f" LEFT JOIN ({_FUNCTIONS_RUNTIME_SQL}) AS r ON r.NodeId = f.node_id AND r.CodeVersion = "
                "f.code_version" if self.runtime else ""))
            qualified = {c: (f"r.{c}" if c in _FUNCTION_RUNTIME else f"f.{c}") for c in available}
        else:
            base = ("(SELECT * FROM cpg_nodes FINAL) AS f" + (
                f" LEFT JOIN ({_NODES_RUNTIME_SQL}) AS r ON r.NodeId = f.node_id" if self.runtime else ""))
            qualified = {c: (f"r.{c}" if c in _NODE_RUNTIME else f"f.{c}") for c in available}
        select = ", ".join(f"{qualified[c]} AS {c}" for c in cols)
        sql = f"SELECT {select} FROM {base}"
        if self.filters:
            sql += " WHERE " + " AND ".join(
                f"{qualified[c]} {op} {{{name}:{self.values[name][0]}}}" for c, op, name in self.filters)
        if self.order:
            sql += " ORDER BY " + ", ".join(f"{c} {'DESC' if d else 'ASC'}" for c, d in self.order)
        if self.max_rows is not None:
            sql += f" LIMIT {int(self.max_rows)}"
        return sql

    def params(self) -> dict[str, Any]:
        return {name: value for name, (_t, value) in self.values.items()}

    def rows(self) -> list[dict[str, Any]]:
        if self.store is None:
            raise QueryBuildError("no store: CpgQuery(store)")
        return self.store.query(self.sql(), parameters=self.params(), settings={"join_use_nulls": 0}).dicts()

    def dataframe(self) -> Any:
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("dataframe() needs pandas (pip install pandas); rows() needs nothing") from None
        if self.store is None:
            raise QueryBuildError("no store: CpgQuery(store)")
        result = self.store.query(self.sql(), parameters=self.params())
        return pd.DataFrame(result.rows, columns=result.column_names)


def _glob_to_like(pattern: str) -> str:
    out = []
    for ch in pattern:
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)
