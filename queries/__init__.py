"""Reading the store: named SQL, the Python query API, and (later) cinema frames and insights."""

from execscope.queries.sql import run_sql
from execscope.queries.traces import list_traces

__all__ = ["list_traces", "run_sql"]
