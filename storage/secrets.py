"""Secrets in a store: find them (``execscope redact-check``) and rewrite them in place
(``execscope storage scrub``), for stores recorded before the secrets policy existed or by a
policy that was turned down.

The policy is handed in (the recording's, :class:`execscope.instrumentation.capture.redaction.Policy`;
storage imports nothing of instrumentation): anything with ``findings(text)``, ``redact_text``,
``redact_source``, ``redact_attributes``, ``is_secret_name``, ``name_regex``, ``triggers``,
``card``, ``b64run`` and ``always``.

Every table of the store's database is read: every String column, every ``Map(..., String)`` (its
values, and its keys as the values' names), every ``Array(String)`` and ``Array(Map(...))`` (the
Nested ``Events`` and ``Links``); materialized columns are derived from those and not read twice.
A prefilter in SQL (the policy's triggers through ``multiSearchAnyCaseInsensitive``, its run
detectors through ``match``, its names through ``match`` on keys) leaves to Python only the values
that may hold a secret; there the policy decides exactly as it does at capture.

Scrubbing rewrites what the policy would have stored: ``ALTER TABLE ... UPDATE`` from a Join table
of the new values (one mutation per table, waited for), so materialized views are not run again.
``otel_traces.SpanName`` is part of the sorting key and cannot be updated: such spans are inserted
again, redacted (their events come back through the view), and the old rows deleted. Other key
columns are reported, not changed.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from execscope.storage.store import Store

MARKERS_SQL = "(startsWith({v}, '<redacted') OR {v} IN ('[REDACTED]', '***', ''))"
VAR_NAME, VAR_VALUE = "execscope.var.name", "execscope.var.value"


def _name_sql(key: str, m: str) -> str:
    """redaction.attribute_name in SQL: the name a map value goes by."""
    return (f"multiIf({key} = '{VAR_VALUE}', {m}['{VAR_NAME}'], startsWith({key}, 'execscope.arg.'), "
            f"substring({key}, 15), startsWith({key}, 'execscope.'), '', {key})")
SCRUB_PREFIX = "execscope_scrub_"

NODE_COLUMN = {"otel_traces": "NodeId", "execscope_events": "NodeId", "cpg_nodes": "node_id",
               "cpg_functions": "node_id", "cpg_edges": "src", "cpg_sources": "module", "cpg_files": "module",
               "execscope_node_stats": "NodeId"}
"""How a finding in each table is placed (the node it belongs to; events: their own node)."""

NAME_COLUMN = {("execscope_events", "VarValue"): "VarName"}
"""String columns whose values are named by another column (an assignment's variable)."""

IDENTITY: dict[str, tuple[tuple[str, str], ...]] = {
    "otel_traces": (("TraceId", "String"), ("SpanId", "String")),
    # events of other SDKs have no sequence number: their time and content tell them apart
    "execscope_events": (("TraceId", "String"), ("SpanId", "String"), ("Seq", "UInt64"),
                         ("toString(EventName)", "String"), ("toUnixTimestamp64Nano(Timestamp)", "Int64"),
                         ("cityHash64(mapKeys(Attributes), mapValues(Attributes))", "UInt64")),
    "cpg_nodes": (("node_id", "String"), ("toString(code_version)", "String")),
    "cpg_functions": (("node_id", "String"), ("toString(code_version)", "String")),
    "cpg_edges": (("toString(code_version)", "String"), ("toString(kind)", "String"), ("src", "String"),
                  ("dst", "String"), ("label", "String")),
    "cpg_sources": (("toString(code_version)", "String"), ("toString(module)", "String")),
    "cpg_files": (("file", "String"), ("toString(module)", "String"), ("toString(code_version)", "String")),
}
"""The SQL expressions (and their types) that tell one row from another, per table ``storage scrub``
can rewrite (evaluated on the row as stored, before the update)."""

IDENTIFIER_COLUMNS = frozenset({"TraceId", "SpanId", "ParentSpanId", "Links.TraceId", "Links.SpanId",
                                "code_version", "CodeVersion"})
"""Columns of identifiers the tracer or the analysis made (hex trace, span and code-version ids), never
a recorded value: not scanned. One hex id in about 18,000 is all digits, and a tenth of those pass the
Luhn check: a store of a few million spans would otherwise report span ids as card numbers."""

SOURCE_COLUMNS = {("cpg_sources", "source"), ("cpg_nodes", "code")}
"""Source text: redacted keeping its line count (lines are addressed by number)."""


@dataclass(frozen=True)
class Column:
    table: str
    name: str
    kind: str   # "str" | "map" | "array" | "array_map"
    type: str


@dataclass
class Finding:
    table: str
    column: str
    key: str
    node: str
    kind: str
    count: int

    def row(self) -> list[Any]:
        return [self.table, self.column, self.key, self.node, self.kind, self.count]


FINDING_COLUMNS = ["table", "column", "key", "node", "kind", "count"]


def _kind_of(type_: str) -> str:
    t = type_.replace("LowCardinality(", "").replace("Nullable(", "")
    t = t.replace(")", "")  # "String" / "Map(String, String" / "Array(String" / "Array(Map(String, String"
    if t == "String":
        return "str"
    if t == "Map(String, String":
        return "map"
    if t == "Array(String":
        return "array"
    if t == "Array(Map(String, String":
        return "array_map"
    return ""


def scannable_columns(store: Store) -> list[Column]:
    """Every column of the store's tables that holds text (materialized and alias columns left out:
    derived from the others; identifier columns left out: see :data:`IDENTIFIER_COLUMNS`)."""
    rows = store.query(
        "SELECT c.table, c.name, c.type, c.default_kind FROM system.columns AS c "
        "INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table "
        "WHERE c.database = currentDatabase() AND t.engine NOT IN ('MaterializedView', 'View', 'Join', 'Memory') "
        "AND NOT startsWith(c.table, {prefix:String}) ORDER BY c.table, c.position",
        parameters={"prefix": SCRUB_PREFIX}).rows
    out = []
    for table, name, type_, default_kind in rows:
        if default_kind in ("MATERIALIZED", "ALIAS", "EPHEMERAL") or name in IDENTIFIER_COLUMNS:
            continue
        kind = _kind_of(type_)
        if kind:
            out.append(Column(table, name, kind, type_))
    return out


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class _Sql:
    """The prefilter of a policy as ClickHouse expressions (parameters bound by the server)."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.params = {"triggers": list(policy.triggers), "names": policy.name_regex}

    def may_hold(self, x: str) -> str:
        p = self.policy
        if p.always:
            return "1"
        parts = []
        if p.triggers:
            parts.append(f"multiSearchAnyCaseInsensitive({x}, {{triggers:Array(String)}})")
        if p.card:
            parts.append(f"match({x}, '[2-6][0-9]([ -]?[0-9]){{12}}')")
        if p.b64run:
            parts.append(f"match({x}, '[A-Za-z0-9+/]{{40}}')")
        return "(" + " OR ".join(parts) + ")" if parts else "0"

    def named(self, name: str, value: str) -> str:
        return f"(match({name}, {{names:String}}) AND NOT {MARKERS_SQL.format(v=value)})"


def _scan_query(col: Column, sql: _Sql) -> str:
    node = NODE_COLUMN.get(col.table)
    node_expr = _q(node) if node else "''"
    c = _q(col.name)
    if col.kind == "str":
        name_col = NAME_COLUMN.get((col.table, col.name))
        name = _q(name_col) if name_col else "''"
        cond = sql.may_hold(c) + (f" OR {sql.named(name, c)}" if name_col else "")
        return f"SELECT {node_expr} AS node, {c} AS v, {name} AS k, '' AS key FROM {_q(col.table)} WHERE {cond}"
    if col.kind == "array":
        return (f"SELECT {node_expr} AS node, x AS v, '' AS k, '' AS key FROM {_q(col.table)} "
                f"ARRAY JOIN {c} AS x WHERE {sql.may_hold('x')}")
    if col.kind == "map":
        return (f"SELECT {node_expr} AS node, kv.2 AS v, {_name_sql('kv.1', c)} AS k, "
                f"kv.1 AS key FROM {_q(col.table)} ARRAY JOIN arrayZip(mapKeys({c}), mapValues({c})) AS kv "
                f"WHERE {sql.may_hold('kv.2')} OR {sql.named('k', 'kv.2')}")
    return (f"SELECT if(m['execscope.node_id'] != '', m['execscope.node_id'], {node_expr}) AS node, kv.2 AS v, "
            f"{_name_sql('kv.1', 'm')} AS k, kv.1 AS key FROM {_q(col.table)} "
            f"ARRAY JOIN {c} AS m ARRAY JOIN arrayZip(mapKeys(m), mapValues(m)) AS kv "
            f"WHERE {sql.may_hold('kv.2')} OR {sql.named('k', 'kv.2')}")


def _kinds(policy: Any, value: Any, name: str) -> list[str]:
    if not isinstance(value, str) or not value:
        return []
    kinds = list(policy.findings(value))
    if name and policy.is_secret_name(name) and not (value.startswith("<redacted") or value in ("[REDACTED]", "***")):
        kinds.append("secret-name")
    return kinds


def check_store(store: Store, policy: Any, columns: Iterable[Column] | None = None) -> list[Finding]:
    """Where the store holds what ``policy`` would have redacted: one finding per (table, column,
    map key, node, kind) with its count; [] when the store is clean."""
    sql = _Sql(policy)
    counts: Counter[tuple[str, str, str, str, str]] = Counter()
    for col in columns if columns is not None else scannable_columns(store):
        result = store.query(_scan_query(col, sql), parameters=sql.params)
        for node, value, name, key in result.rows:
            for kind in _kinds(policy, value, name):
                counts[(col.table, col.name, key, node, kind)] += 1
    return [Finding(*k, n) for k, n in sorted(counts.items())]


# -- scrub -------------------------------------------------------------------------------------------

@dataclass
class ScrubReport:
    updated: Counter[tuple[str, str]] = field(default_factory=Counter)    # (table, column) -> rows rewritten
    reinserted: Counter[str] = field(default_factory=Counter)             # table -> rows inserted again
    left: list[str] = field(default_factory=list)                         # what could not be rewritten, why

    def rows(self) -> list[list[Any]]:
        out: list[list[Any]] = [[t, c, "updated", n] for (t, c), n in sorted(self.updated.items())]
        out += [[t, "*", "reinserted", n] for t, n in sorted(self.reinserted.items())]
        out += [[reason, "", "left", 0] for reason in self.left]
        return out


SCRUB_COLUMNS = ["table", "column", "action", "rows"]


def _redact(policy: Any, col: Column, value: Any) -> Any:
    if col.kind == "str":
        if not isinstance(value, str):
            return value
        return policy.redact_source(value) if (col.table, col.name) in SOURCE_COLUMNS else policy.redact_text(value)
    if col.kind == "array":
        return [policy.redact_text(v) if isinstance(v, str) else v for v in value]
    if col.kind == "map":
        return dict(policy.redact_attributes(value))
    return [dict(policy.redact_attributes(m)) for m in value]


def _named_str(policy: Any, table: str, column: str, row: dict[str, Any], value: Any) -> Any:
    name_col = NAME_COLUMN.get((table, column))
    if name_col and isinstance(value, str) and value and policy.is_secret_name(str(row.get(name_col) or "")) \
            and not value.startswith("<redacted"):
        return "<redacted>"
    return value


def _row_filter(cols: list[Column], sql: _Sql) -> str:
    conds = []
    for col in cols:
        c = _q(col.name)
        if col.kind == "str":
            conds.append(sql.may_hold(c))
            name_col = NAME_COLUMN.get((col.table, col.name))
            if name_col:
                conds.append(sql.named(_q(name_col), c))
        elif col.kind == "array":
            conds.append(f"arrayExists(x -> {sql.may_hold('x')}, {c})")
        elif col.kind == "map":
            conds.append(f"arrayExists(x -> {sql.may_hold('x')}, mapValues({c})) OR "
                         f"arrayExists(x -> match({_name_sql('x', c)}, {{names:String}}), mapKeys({c}))")
        else:
            conds.append(f"arrayExists(m -> arrayExists(x -> {sql.may_hold('x')}, mapValues(m)) OR "
                         f"arrayExists(x -> match({_name_sql('x', 'm')}, {{names:String}}), mapKeys(m)), {c})")
    return " OR ".join(f"({c})" for c in conds)


def _key_columns(store: Store, table: str) -> set[str]:
    rows = store.query("SELECT sorting_key, partition_key, primary_key FROM system.tables "
                       "WHERE database = currentDatabase() AND name = {t:String}", parameters={"t": table}).rows
    text = " ".join(str(x) for x in rows[0]) if rows else ""
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", text))


def scrub_store(store: Store, policy: Any, dry_run: bool = False) -> ScrubReport:
    """Rewrite every row holding what ``policy`` would have redacted (see the module doc)."""
    report = ScrubReport()
    sql = _Sql(policy)
    by_table: dict[str, list[Column]] = {}
    for col in scannable_columns(store):
        by_table.setdefault(col.table, []).append(col)
    database = store.query("SELECT currentDatabase()").rows[0][0]
    for table, cols in by_table.items():
        found = check_store(store, policy, cols)
        if not found:
            continue
        identity = IDENTITY.get(table)
        if identity is None:
            report.left.append(f"{table}: {sum(f.count for f in found)} findings (a table scrub does not know)")
            continue
        id_names = [f"execscope_id{i}" for i in range(len(identity))]
        plain_ids = {expr for expr, _t in identity}
        scan_cols = [c for c in cols if c.name not in plain_ids]
        select = ", ".join(f"{expr} AS {n}" for (expr, _t), n in zip(identity, id_names))
        select += ", " + ", ".join(_q(c.name) for c in scan_cols)
        extra = sorted({n for (t, _c), n in NAME_COLUMN.items() if t == table} - {c.name for c in scan_cols})
        if extra:
            select += ", " + ", ".join(_q(n) for n in extra)
        result = store.query(f"SELECT {select} FROM {_q(table)} WHERE {_row_filter(scan_cols, sql)}",
                             parameters=sql.params)
        changed: dict[tuple[Any, ...], dict[str, Any]] = {}
        for raw in result.rows:
            row = dict(zip(result.column_names, raw))
            new: dict[str, Any] = {}
            for col in scan_cols:
                value = _named_str(policy, table, col.name, row, _redact(policy, col, row[col.name]))
                if value != row[col.name]:
                    new[col.name] = value
            if new:
                changed[tuple(row[n] for n in id_names)] = new
        if not changed:
            continue
        keys = _key_columns(store, table)
        key_changes = {name for new in changed.values() for name in new if name in keys}
        for name in sorted(key_changes - {"SpanName"} if table == "otel_traces" else key_changes):
            report.left.append(f"{table}.{name}: part of the sorting key, not rewritten")
        updatable = sorted({name for new in changed.values() for name in new} - keys)
        for name in updatable:
            report.updated[(table, name)] += sum(1 for new in changed.values() if name in new)
        if table == "otel_traces" and "SpanName" in key_changes:
            moved = {k: v for k, v in changed.items() if "SpanName" in v}
            report.reinserted[table] += len(moved)
            if not dry_run:
                _reinsert_spans(store, policy, moved)
            changed = {k: v for k, v in changed.items() if k not in moved}
        if dry_run or not updatable or not changed:
            continue
        _update(store, database, table, identity, id_names, cols, updatable, changed, result)
    return report


def _update(store: Store, database: str, table: str, identity: tuple[tuple[str, str], ...], id_names: list[str],
            cols: list[Column], updatable: list[str], changed: dict[tuple[Any, ...], dict[str, Any]],
            result: Any) -> None:
    """One ALTER TABLE ... UPDATE: the new values through a Join table keyed by the row identity."""
    types = {c.name: c.type for c in cols}
    originals = {}
    for raw in result.rows:
        row = dict(zip(result.column_names, raw))
        originals[tuple(row[n] for n in id_names)] = row
    suffix = f"{table}_{os.getpid()}"
    join_table, keys_table = f"{SCRUB_PREFIX}{suffix}", f"{SCRUB_PREFIX}keys_{suffix}"
    id_defs = ", ".join(f"{n} {t}" for n, (_e, t) in zip(id_names, identity))
    val_defs = ", ".join(f"{_q(c)} {types[c]}" for c in updatable)
    store.command(f"DROP TABLE IF EXISTS {_q(join_table)}")
    store.command(f"DROP TABLE IF EXISTS {_q(keys_table)}")
    store.command(f"CREATE TABLE {_q(join_table)} ({id_defs}, {val_defs}) ENGINE = Join(ANY, LEFT, "
                  f"{', '.join(id_names)})")
    store.command(f"CREATE TABLE {_q(keys_table)} ({id_defs}) ENGINE = Memory")
    try:
        ids = list(changed)
        id_cols = [[k[i] for k in ids] for i in range(len(identity))]
        value_cols = [[changed[k].get(c, originals[k][c]) for k in ids] for c in updatable]
        store.insert_columns(join_table, id_cols + value_cols, id_names + updatable)
        store.insert_columns(keys_table, id_cols, id_names)
        exprs = ", ".join(expr for expr, _t in identity)
        sets = ", ".join(f"{_q(c)} = joinGet('{database}.{join_table}', '{c}', {exprs})" for c in updatable)
        store.command(f"ALTER TABLE {_q(table)} UPDATE {sets} WHERE ({exprs}) IN "
                      f"(SELECT {', '.join(id_names)} FROM {_q(keys_table)})",
                      settings={"mutations_sync": 2, "allow_nondeterministic_mutations": 1})
    finally:
        store.command(f"DROP TABLE IF EXISTS {_q(join_table)}")
        store.command(f"DROP TABLE IF EXISTS {_q(keys_table)}")


def _reinsert_spans(store: Store, policy: Any, moved: dict[tuple[Any, ...], dict[str, Any]]) -> None:
    """Spans whose name holds a secret: inserted again redacted, then the old rows (and the events
    the view made of them) deleted. The insert is deduplicated, so a scrub run again after a crash
    between the two steps inserts nothing twice."""
    cols = [c for c in scannable_columns(store) if c.table == "otel_traces"]
    by_name = {c.name: c for c in cols}
    keys = list(moved)
    store.command("DROP TABLE IF EXISTS execscope_scrub_span_keys")
    store.command("CREATE TABLE execscope_scrub_span_keys (TraceId String, SpanId String) ENGINE = Memory")
    try:
        store.insert_columns("execscope_scrub_span_keys", [[k[0] for k in keys], [k[1] for k in keys]],
                             ["TraceId", "SpanId"])
        result = store.query("SELECT * FROM otel_traces WHERE (TraceId, SpanId) IN "
                             "(SELECT TraceId, SpanId FROM execscope_scrub_span_keys)")
        names = result.column_names
        new_rows, old_names = [], set()
        for raw in result.rows:
            row = dict(zip(names, raw))
            old_names.add(row["SpanName"])
            new_rows.append([_redact(policy, by_name[n], row[n]) if n in by_name else row[n] for n in names])
        if not new_rows:
            return
        token = "scrub:" + hashlib.sha256(repr(sorted(map(repr, new_rows))).encode()).hexdigest()
        store.insert_columns("otel_traces", [list(c) for c in zip(*new_rows)], names, dedup_token=token)
        store.command("DROP TABLE IF EXISTS execscope_scrub_span_names")
        store.command("CREATE TABLE execscope_scrub_span_names (SpanName String) ENGINE = Memory")
        store.insert_columns("execscope_scrub_span_names", [sorted(old_names)], ["SpanName"])
        for table in ("otel_traces", "execscope_events"):
            store.command(f"ALTER TABLE {table} DELETE WHERE (TraceId, SpanId) IN "
                          "(SELECT TraceId, SpanId FROM execscope_scrub_span_keys) "
                          "AND SpanName IN (SELECT SpanName FROM execscope_scrub_span_names)",
                          settings={"mutations_sync": 2})
    finally:
        store.command("DROP TABLE IF EXISTS execscope_scrub_span_keys")
        store.command("DROP TABLE IF EXISTS execscope_scrub_span_names")
