"""The schema for a ClickHouse cluster, generated from the same numbered migrations as a single store.

``execscope storage ddl --cluster NAME`` prints it. Every table of the migrations becomes one of two
kinds, decided from its columns, so migrations added later (by anyone) are placed without a list to
keep up to date:

* **sharded by trace** (a table with a ``TraceId`` column: ``otel_traces``, ``execscope_events``,
  ``otel_traces_trace_id_ts``, ...): ``<name>_local`` on every node, a ``Replicated*MergeTree`` with the
  replica path ``/clickhouse/tables/{shard}/{database}/<name>_local``, and ``<name>`` a ``Distributed``
  table over it with the sharding key ``cityHash64(TraceId)``: all of a trace lives on one shard, so a
  trace's spans, events and their joins are local to it (queries set
  ``distributed_product_mode = 'local'``; see README). Tables derived from a sharded table by a
  materialized view (``execscope_node_stats``) are sharded the same way: the view runs on each
  shard, from ``<source>_local`` into ``<target>_local``.
* **replicated everywhere** (no ``TraceId``: the CPG tables, ``execscope_collector_stats`` and the schema
  version table): one ``Replicated*MergeTree`` whose replica path has no ``{shard}``, so every node
  holds all of it and the joins of spans with the code property graph need no network.

Execscope then reads and writes the same table names as on one server (a ``Distributed`` table takes
inserts and reads). Materialized views are created ``ON CLUSTER`` between the local tables;
``ALTER TABLE`` of a sharded table alters the local table and its ``Distributed`` table (a change of
storage only, a table setting or a column's codec, alters the local table alone);
``non_replicated_deduplication_window`` becomes ``replicated_deduplication_window`` (the same
deduplication of retried inserts under a token). Data statements (the backfill ``INSERT ... SELECT`` of
a migration) have nothing to do on a new cluster and are printed as comments. The schema version is
recorded, so ``open_store`` on any node finds the schema current and applies nothing.

The statements are checked by the engine's own parser in the tests (``formatQuery``); running them needs
a cluster with ZooKeeper or ClickHouse Keeper and the ``{shard}`` / ``{replica}`` macros.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from execscope.storage.migrations import VERSION_TABLE, VERSION_TABLE_COLUMNS, all_migrations

SHARD_KEY = "cityHash64(TraceId)"
LOCAL_SUFFIX = "_local"
SHARDED_PATH = "/clickhouse/tables/{shard}/{database}/"
EVERYWHERE_PATH = "/clickhouse/tables/all/{database}/"

_CREATE_TABLE = re.compile(r"\ACREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(\w+)\s*\(", re.IGNORECASE)
_CREATE_VIEW = re.compile(r"\ACREATE\s+MATERIALIZED\s+VIEW\s+IF\s+NOT\s+EXISTS\s+(\w+)\s+TO\s+(\w+)\s+AS\s+(.*)\Z",
                          re.IGNORECASE | re.DOTALL)
_CREATE_PLAIN_VIEW = re.compile(r"\ACREATE\s+VIEW\s+IF\s+NOT\s+EXISTS\s+(\w+)\s+AS\s+(.*)\Z",
                                re.IGNORECASE | re.DOTALL)
_MODIFY_QUERY = re.compile(r"\AMODIFY\s+QUERY\s+", re.IGNORECASE)
# how a table stores its parts (settings, codecs): the local table's business; a Distributed table has neither
_STORAGE_ONLY = re.compile(r"\A(MODIFY|RESET)\s+SETTING\s|\AMODIFY\s+COLUMN\s+\w+\s+CODEC\s*\(", re.IGNORECASE)
_ALTER = re.compile(r"\AALTER\s+TABLE\s+(\w+)\s+(.*)\Z", re.IGNORECASE | re.DOTALL)
_INSERT = re.compile(r"\AINSERT\s+INTO\s+(\w+)\b", re.IGNORECASE)
_ENGINE = re.compile(r"\)\s*ENGINE\s*=\s*(\w*MergeTree)(?:\(([^()]*)\))?", re.IGNORECASE)
_FROM = re.compile(r"\b(FROM|JOIN)\s+(\w+)\b", re.IGNORECASE)
_TRACE_ID = re.compile(r"^\s*TraceId\s", re.MULTILINE)
_IDENT = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")


class ClusterDdlError(ValueError):
    """A migration statement this generator cannot place on a cluster, or a bad cluster name."""


@dataclass(frozen=True)
class Statement:
    """One statement of the printed schema: ``sql`` runs as is; a ``comment`` is printed as ``--`` lines."""

    sql: str = ""
    comment: str = ""

    def render(self) -> str:
        if self.comment:
            return "\n".join(f"-- {line}" if line else "--" for line in self.comment.splitlines())
        return self.sql + ";"


def single_node_ddl() -> list[Statement]:
    """The schema of one server (what ``open_store`` applies), migration by migration."""
    out = [Statement(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ({VERSION_TABLE_COLUMNS}) "
                     "ENGINE = MergeTree ORDER BY version")]
    for migration in all_migrations():
        out.append(Statement(comment=f"migration {migration.version:04d} {migration.name}"))
        out += [Statement(sql) for sql in migration.statements]
    out.append(_versions_insert())
    return out


def cluster_ddl(cluster: str) -> list[Statement]:
    """The schema for the ClickHouse cluster ``cluster`` (a name of the servers' ``remote_servers``)."""
    if not _IDENT.match(cluster):
        raise ClusterDdlError(f"cluster name {cluster!r}: use a plain identifier (letters, digits, _)")
    sharded = _sharded_tables()
    out = [Statement(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ON CLUSTER {cluster} ({VERSION_TABLE_COLUMNS}) "
                     f"ENGINE = ReplicatedMergeTree('{EVERYWHERE_PATH}{VERSION_TABLE}', '{{replica}}') "
                     "ORDER BY version")]
    for migration in all_migrations():
        out.append(Statement(comment=f"migration {migration.version:04d} {migration.name}"))
        for sql in migration.statements:
            out += _place(sql, cluster, sharded)
    out.append(_versions_insert())
    return out


def render(statements: list[Statement]) -> str:
    return "\n\n".join(s.render() for s in statements) + "\n"


def _versions_insert() -> Statement:
    values = ", ".join(f"({m.version}, '{m.name}')" for m in all_migrations())
    return Statement(f"INSERT INTO {VERSION_TABLE} (version, name) VALUES {values}")


def _sharded_tables() -> set[str]:
    """Tables with a TraceId column, and the targets of materialized views reading a sharded table."""
    statements = [sql for migration in all_migrations() for sql in migration.statements]
    sharded = {m.group(1) for sql in statements if (m := _CREATE_TABLE.match(sql)) and _TRACE_ID.search(sql)}
    views = [(m.group(2), {name for _, name in _FROM.findall(m.group(3))})
             for sql in statements if (m := _CREATE_VIEW.match(sql))]
    grown = True
    while grown:
        before = len(sharded)
        sharded |= {target for target, sources in views if sources & sharded}
        grown = len(sharded) > before
    return sharded


def _place(sql: str, cluster: str, sharded: set[str]) -> list[Statement]:
    if m := _CREATE_TABLE.match(sql):
        return _create_table(sql, m.group(1), cluster, sharded)
    if m := _CREATE_VIEW.match(sql):
        view, target, select = m.group(1), m.group(2), m.group(3)
        sources = {name for _, name in _FROM.findall(select)}
        if sources & sharded and target not in sharded:
            raise ClusterDdlError(f"materialized view {view} reads a sharded table into {target}, which is not")
        select = _FROM.sub(lambda f: f"{f.group(1)} {_local(f.group(2), sharded)}", select)
        return [Statement(f"CREATE MATERIALIZED VIEW IF NOT EXISTS {view} ON CLUSTER {cluster} "
                          f"TO {_local(target, sharded)} AS {select}")]
    if m := _CREATE_PLAIN_VIEW.match(sql):  # a query over the whole cluster: it reads the Distributed tables
        return [Statement(f"CREATE VIEW IF NOT EXISTS {m.group(1)} ON CLUSTER {cluster} AS {m.group(2)}")]
    if m := _ALTER.match(sql):
        table, rest = m.group(1), m.group(2)
        if _MODIFY_QUERY.match(rest):  # a materialized view's new query: on each shard, between local tables
            rest = _FROM.sub(lambda f: f"{f.group(1)} {_local(f.group(2), sharded)}", rest)
            return [Statement(f"ALTER TABLE {table} ON CLUSTER {cluster} {rest}")]
        if table in sharded and _STORAGE_ONLY.match(rest):
            return [Statement(f"ALTER TABLE {table}{LOCAL_SUFFIX} ON CLUSTER {cluster} {rest}")]
        if table in sharded:  # the local table, then the Distributed one (which must show the column too)
            return [Statement(f"ALTER TABLE {table}{LOCAL_SUFFIX} ON CLUSTER {cluster} {rest}"),
                    Statement(f"ALTER TABLE {table} ON CLUSTER {cluster} {rest}")]
        return [Statement(f"ALTER TABLE {table} ON CLUSTER {cluster} {rest}")]
    if _INSERT.match(sql):
        local = _FROM.sub(lambda f: f"{f.group(1)} {_local(f.group(2), sharded)}",
                          _INSERT.sub(lambda i: f"INSERT INTO {_local(i.group(1), sharded)}", sql))
        return [Statement(comment="data, not schema: nothing to do on a new cluster; on one that holds data, "
                                  "run on one replica of every shard:\n" + local + ";")]
    raise ClusterDdlError(f"cannot place this migration statement on a cluster: {sql[:120]}")


def _create_table(sql: str, name: str, cluster: str, sharded: set[str]) -> list[Statement]:
    engine = _ENGINE.search(sql)
    if engine is None:
        raise ClusterDdlError(f"table {name}: only MergeTree-family engines can be replicated")
    body = sql[_CREATE_TABLE.match(sql).end():engine.start()]  # type: ignore[union-attr]
    rest = sql[engine.end():].replace("non_replicated_deduplication_window", "replicated_deduplication_window")
    shard = name in sharded
    local = f"{name}{LOCAL_SUFFIX}" if shard else name
    path = f"'{SHARDED_PATH if shard else EVERYWHERE_PATH}{local}', '{{replica}}'"
    args = f"{path}, {engine.group(2)}" if engine.group(2) else path
    create = (f"CREATE TABLE IF NOT EXISTS {local} ON CLUSTER {cluster} ({body}) "
              f"ENGINE = Replicated{engine.group(1)}({args}){rest}")
    if not shard:
        return [Statement(create)]
    key = SHARD_KEY if _TRACE_ID.search(body) else "rand()"  # filled by a view on each shard, not through it
    return [Statement(create),
            Statement(f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {cluster} AS {local} "
                      f"ENGINE = Distributed({cluster}, currentDatabase(), {local}, {key})")]


def _local(table: str, sharded: set[str]) -> str:
    return f"{table}{LOCAL_SUFFIX}" if table in sharded else table
