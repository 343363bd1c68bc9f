"""ClickHouse schema (numbered migrations) and the store client (embedded chDB or a server)."""

from execscope.storage.store import (
    DEFAULT_STORE,
    QueryResult,
    Store,
    StoreError,
    StoreLockedError,
    StoreVersionError,
    lock_store,
    open_store,
    resolve_address,
)

__all__ = ["DEFAULT_STORE", "QueryResult", "Store", "StoreError", "StoreLockedError", "StoreVersionError",
           "lock_store", "open_store", "resolve_address"]
