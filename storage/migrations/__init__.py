"""Numbered schema migrations (``NNNN_name.sql``) and the recorded schema version.

The store records every applied migration in ``execscope_schema_migrations``. Opening a store whose
recorded version is higher than the newest migration this execscope knows raises
:class:`~execscope.storage.store.StoreVersionError` instead of guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from execscope.storage.store import Store

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
VERSION_TABLE = "execscope_schema_migrations"
VERSION_TABLE_COLUMNS = "version UInt32, name String, applied_at DateTime64(3) DEFAULT now64(3)"

# otel_traces' bloom filters over map keys and values (0001, the stock exporter's): the embedded engine's
# inserts leave them to the merges (``exclude_materialize_skip_indexes_on_insert``), which build every
# skip index of the part they write whether its sources had it or not. Built on insert they cost about
# 20% of the insert with every view (0.03 s of 0.14 s for 73k spans, measured on 2 cores with
# tests/benchmarks/bench_store.py's blocks), paid again by the first merge. A part not merged yet is
# read whole by a filter on the maps, with the same rows.
INDEXES_BUILT_BY_MERGES = ("idx_res_attr_key", "idx_res_attr_value", "idx_span_attr_key", "idx_span_attr_value")
INSERT_INDEX_SETTINGS = {"exclude_materialize_skip_indexes_on_insert": ",".join(INDEXES_BUILT_BY_MERGES)}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def _split(sql: str) -> tuple[str, ...]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return tuple(s.strip() for s in "\n".join(lines).split(";") if s.strip())


def all_migrations() -> list[Migration]:
    from importlib import resources  # here: every process importing the store would pay ~4 ms for it

    found = []
    for entry in resources.files(__name__).iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), _split(entry.read_text())))
    return sorted(found, key=lambda m: m.version)


def latest_version() -> int:
    return max((m.version for m in all_migrations()), default=0)


def current_version(store: Store) -> int:
    store.command(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ({VERSION_TABLE_COLUMNS}) "
                  "ENGINE = MergeTree ORDER BY version")
    rows = store.query(f"SELECT max(version) FROM {VERSION_TABLE}").rows
    return int(rows[0][0] or 0) if rows else 0


def migrate(store: Store) -> int:
    """Apply pending migrations in order; returns the store's schema version afterwards."""
    from execscope.storage.store import StoreVersionError

    have = current_version(store)
    newest = latest_version()
    if have > newest:
        raise StoreVersionError(
            f"store {store.address} has schema version {have}, newer than this execscope understands "
            f"({newest}); upgrade execscope or use another --store")
    for migration in all_migrations():
        if migration.version <= have:
            continue
        for statement in migration.statements:
            store.command(statement)
        store.insert_columns(VERSION_TABLE, [[migration.version], [migration.name]], ["version", "name"])
    return max(have, newest)
