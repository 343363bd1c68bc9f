"""Ad-hoc SQL against the store (``execscope sql``)."""

from __future__ import annotations

from typing import Any

from execscope.storage.store import QueryResult, Store


def run_sql(store: Store, sql: str, parameters: dict[str, Any] | None = None) -> QueryResult:
    """Run one statement; parameters are bound server-side as ``{name:Type}`` placeholders."""
    return store.query(sql, parameters=parameters)
