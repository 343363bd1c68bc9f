"""ClickHouse schema (numbered migrations) and the store client (embedded chDB or a server)."""

from execscope.storage.store import (
    DEFAULT_STORE,
    EmbeddedEngineUnavailable,
    QueryResult,
    Store,
    StoreError,
    StoreLockedError,
    StoreVersionError,
    embedded_engine_problem,
    lock_store,
    open_store,
    require_embedded_engine,
    resolve_address,
)

__all__ = ["DEFAULT_STORE", "EmbeddedEngineUnavailable", "QueryResult", "Store", "StoreError", "StoreLockedError",
           "StoreVersionError", "embedded_engine_problem", "lock_store", "open_store", "require_embedded_engine",
           "resolve_address"]
