"""`execscope storage ddl`: the single-server schema is what the migrations apply, and the cluster schema
is accepted by the engine's own parser (formatQuery) and keeps every table's columns, with each table
placed as documented (sharded by trace behind a Distributed table, or replicated to every node)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from execscope.storage import open_store
from execscope.storage.cluster import ClusterDdlError, Statement, cluster_ddl, render, single_node_ddl
from execscope.storage.migrations import VERSION_TABLE, all_migrations
from execscope.storage.store import Store
from tests.integration.test_run_cli import cli

SHARDED = {"otel_traces", "otel_traces_trace_id_ts", "execscope_events", "execscope_node_stats",
           "execscope_clock_messages"}


def _format(store: Store, sql: str) -> str:
    """The statement as the engine's parser reads it (a syntax error raises), on one line."""
    return " ".join(str(store.query("SELECT formatQuery({q:String})", {"q": sql}).rows[0][0]).split())


def _columns(formatted: str) -> str:
    """The column and index list of a formatted CREATE TABLE."""
    start = formatted.index("(")
    return formatted[start:formatted.index(") ENGINE")]


def _created(formatted: str) -> str:
    return re.match(r"CREATE (?:TABLE|MATERIALIZED VIEW) IF NOT EXISTS (\w+)", formatted).group(1)  # type: ignore[union-attr]


def test_cluster_schema_parses_and_places_every_table(tmp_path: Path) -> None:
    statements = [s.sql for s in cluster_ddl("prod") if s.sql]
    with open_store(f"chdb://{tmp_path / 'db'}", migrate=False) as store:
        formatted = [_format(store, sql) for sql in statements]
        single = {_created(f): f for f in (_format(store, s.sql) for s in single_node_ddl() if s.sql)
                  if f.startswith("CREATE TABLE")}
    assert all(" ON CLUSTER prod " in f for f in formatted[:-1])
    creates = {_created(f): f for f in formatted if f.startswith("CREATE TABLE")}
    for table, definition in single.items():
        local = f"{table}_local" if table in SHARDED else table
        assert _columns(creates[local]) == _columns(definition), table  # the same columns, codecs, indexes
        engine = re.search(r"ENGINE = (\w+)\('([^']*)', '\{replica\}'", creates[local])
        assert engine and engine.group(1).startswith("Replicated"), creates[local]
        if table in SHARDED:
            assert engine.group(2) == f"/clickhouse/tables/{{shard}}/{{database}}/{table}_local"
            key = "cityHash64(TraceId)" if "TraceId" in _columns(definition) else "rand()"
            assert creates[table] == (f"CREATE TABLE IF NOT EXISTS {table} ON CLUSTER prod AS {table}_local "
                                      f"ENGINE = Distributed(prod, currentDatabase(), {table}_local, {key})")
        else:
            assert engine.group(2) == f"/clickhouse/tables/all/{{database}}/{table}" and f"{table}_local" not in creates
        if "non_replicated_deduplication_window" in definition:
            assert "replicated_deduplication_window = 10000" in creates[local]
            assert "non_replicated_deduplication_window" not in creates[local]
    views = [f for f in formatted if f.startswith("CREATE MATERIALIZED VIEW")]
    assert len(views) == sum(s.upper().startswith("CREATE MATERIALIZED VIEW") for m in all_migrations()
                             for s in m.statements)
    for view in views:  # every view runs on each shard, between local tables
        assert re.search(r" TO \w+_local AS ", view) and re.search(r"\bFROM otel_traces_local\b", view), view
    alters = [f for f in formatted if f.startswith("ALTER TABLE")]
    altered = [(s.split()[2], " SETTING " in s.upper() or " CODEC(" in s.upper())
               for m in all_migrations() for s in m.statements if s.upper().startswith("ALTER")]
    assert any(storage for _t, storage in altered)
    # a sharded table's ALTER goes to its local tables and to the Distributed one (its storage settings
    # and codecs to the local one only); a view's to the view
    assert sorted(a.split()[2] for a in alters) == sorted(
        [name for t, storage in altered
         for name in (([f"{t}_local"] if storage else [t, f"{t}_local"]) if t in SHARDED else [t])])
    for alter in alters:
        if " MODIFY QUERY " in alter:  # a materialized view's new query reads the local table
            assert re.search(r"\bFROM otel_traces_local\b", alter) and "FROM otel_traces " not in alter, alter
    plain_views = [f for f in formatted if f.startswith("CREATE VIEW")]
    assert plain_views and all(" ON CLUSTER prod AS " in v and "_local" not in v for v in plain_views)
    assert formatted[-1] == f"INSERT INTO {VERSION_TABLE} (version, name) FORMAT Values"  # the versions follow
    assert statements[-1].endswith("VALUES " + ", ".join(f"({m.version}, '{m.name}')" for m in all_migrations()))


def test_single_server_schema_is_what_the_migrations_apply(tmp_path: Path) -> None:
    with open_store(f"chdb://{tmp_path / 'migrated'}") as store:
        migrated = store.query("SELECT name, create_table_query FROM system.tables WHERE database = currentDatabase() "
                               "ORDER BY name").rows
    with open_store(f"chdb://{tmp_path / 'printed'}", migrate=False) as store:
        for statement in single_node_ddl():
            if statement.sql:
                store.command(statement.sql)
        printed = store.query("SELECT name, create_table_query FROM system.tables WHERE database = currentDatabase() "
                              "ORDER BY name").rows
        assert [r[0] for r in store.query(f"SELECT version FROM {VERSION_TABLE} ORDER BY version").rows] == [
            m.version for m in all_migrations()]
    assert printed == migrated


def test_the_cli_prints_it(tmp_path: Path) -> None:
    out = cli("storage", "ddl", "--cluster", "prod", cwd=tmp_path).stdout
    assert out == render(cluster_ddl("prod"))
    assert "-- migration 0001 otel_traces" in out and out.count(" ON CLUSTER prod ") >= 20
    bad = cli("storage", "ddl", "--cluster", "prod; DROP", cwd=tmp_path, check=False)
    assert bad.returncode == 1 and "use a plain identifier" in bad.stderr and bad.stdout == ""
    with pytest.raises(ClusterDdlError):
        cluster_ddl("")
    assert Statement(comment="a\nb").render() == "-- a\n-- b"
