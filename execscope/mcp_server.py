"""``execscope mcp``: the recorded truth of runs as tools for coding agents (Model Context Protocol).

Built on the official ``mcp`` SDK (``MCPServer``, the 2.x name of FastMCP): each tool is a small typed
function whose schema comes from its type hints and whose description is its docstring; every tool is
annotated read-only and idempotent. The tools are thin: the answers are made by
:mod:`execscope.queries.agent` (bounded, each saying what it left out) and the chains by
:mod:`execscope.queries.why`, the same code ``execscope explain`` runs.

The store is opened on the first call and closed again after ``idle_close`` seconds without one, so
an embedded store (one owner at a time) is free for ``execscope run`` between an agent's questions;
while a recording owns it, a tool answers with the store's one-line "locked" error. Tools run on the
SDK's worker threads: one lock serialises the store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from execscope import __version__
from execscope.storage.store import Store, StoreError, open_store

T = TypeVar("T")
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)

Trace = Annotated[str, Field(description="Trace id (32 hex digits), from list_traces or find_failures.")]
Frame = Annotated[int, Field(ge=0, description="Cinema position (0-based frame number) in the trace.")]
INSTRUCTIONS = """\
execscope recorded Python programs: every call, branch, statement and value, in ClickHouse.
Start with list_traces (errors_only=true for failures) or find_failures; explain a failure with why;
step through a trace with frames (positions are cinema frames: `seq`), see the variables of every live
call with state_at, follow a variable with value_history; source shows recorded code; function_graph
shows a function's control and data flow; sql runs one read-only SELECT. Answers are bounded and say
in `left_out` what they did not include."""


class StoreHolder:
    """The store, opened on demand and closed after ``idle_close`` seconds unused (None: kept open)."""

    def __init__(self, dsn: str | None, idle_close: float | None = 10.0) -> None:
        self.dsn = dsn
        self.idle_close = idle_close
        self._store: Store | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def run(self, fn: Callable[[Store], T]) -> T:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._store is None:
                self._store = open_store(self.dsn)
            try:
                return fn(self._store)
            finally:
                if self.idle_close is not None:
                    self._timer = threading.Timer(self.idle_close, self._close_if_idle)
                    self._timer.daemon = True
                    self._timer.start()

    def _close_if_idle(self) -> None:
        if self._lock.acquire(blocking=False):
            try:
                self._timer = None
                if self._store is not None:
                    self._store.close()
                    self._store = None
            finally:
                self._lock.release()

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._store is not None:
                self._store.close()
                self._store = None


def build_server(dsn: str | None = None, idle_close: float | None = 10.0,
                 holder: StoreHolder | None = None) -> MCPServer:
    """The MCP server over the store at ``dsn`` (``--store`` / ``EXECSCOPE_STORE`` / the default)."""
    from execscope.queries import agent

    store = holder or StoreHolder(dsn, idle_close)
    server = MCPServer("execscope", instructions=INSTRUCTIONS, version=__version__, log_level="WARNING")

    def call(fn: Callable[[Store], dict[str, Any]]) -> dict[str, Any]:
        try:
            return store.run(fn)
        except StoreError as exc:
            raise ToolError(f"store: {exc}") from None
        except (LookupError, ValueError) as exc:
            raise ToolError(str(exc).strip('"')) from None

    @server.tool(annotations=READ_ONLY)
    def list_traces(errors_only: bool = False,
                    root: Annotated[str, Field(description="Substring of the root span's name.")] = "",
                    since: Annotated[str, Field(description="ISO time or '15m', '2h', '3d' ago.")] = "",
                    until: Annotated[str, Field(description="ISO time or '15m', '2h', '3d' ago.")] = "",
                    limit: Annotated[int, Field(ge=1, le=1000)] = 20) -> dict[str, Any]:
        """Recorded traces, newest first: trace_id, root span, spans, errors, start, duration_ms, service."""
        return call(lambda s: agent.list_traces(s, errors_only, root, since, until, limit))

    @server.tool(annotations=READ_ONLY)
    def find_failures(trace: Annotated[str, Field(description="Only this trace (all when empty).")] = "",
                      include_caught: bool = True,
                      limit: Annotated[int, Field(ge=1, le=1000)] = 20) -> dict[str, Any]:
        """Exceptions, newest first: where each was first raised (what='raised': type, message, function,
        line) and handlers that caught one (what='caught'), with trace_id and cinema position `frame`."""
        return call(lambda s: agent.find_failures(s, trace, include_caught, limit))

    @server.tool(annotations=READ_ONLY)
    def frames(trace: Trace, at: Frame = 0, count: Annotated[int, Field(ge=1, le=500)] = 50,
               function: Annotated[str, Field(description="Only frames of functions whose name contains "
                                                          "this.")] = "") -> dict[str, Any]:
        """A window of the execution cinema: what the program did from position `at` on, one frame per
        call, statement, branch arm, write, return or exception, with the running function's variables."""
        return call(lambda s: agent.frames(s, trace, at, count, function))

    @server.tool(annotations=READ_ONLY)
    def state_at(trace: Trace, at: Frame) -> dict[str, Any]:
        """The variables of every call alive at position `at` (outermost first), as a debugger's stack."""
        return call(lambda s: agent.state_at(s, trace, at))

    @server.tool(annotations=READ_ONLY)
    def value_history(var: Annotated[str, Field(description="Variable name (or target text, e.g. self.x).")],
                      trace: Annotated[str, Field(description="Only this trace (all when empty).")] = "",
                      function: Annotated[str, Field(description="Only in this function (module.qualname).")] = "",
                      limit: Annotated[int, Field(ge=1, le=1000)] = 100) -> dict[str, Any]:
        """Every value a variable took, in order, with trace, seq, function and line of each write."""
        return call(lambda s: agent.value_history(s, var, trace, function, limit))

    @server.tool(annotations=READ_ONLY)
    def why(trace: Trace,
            at: Annotated[int | None, Field(ge=0, description="Explain this frame (a write, return, exception, "
                                                               "statement or call); the failure when omitted.")] = None,
            var: Annotated[str | None, Field(description="With `at`: explain this variable as seen there.")] = None,
            max_steps: Annotated[int, Field(ge=1, le=200)] = 16) -> dict[str, Any]:
        """The root-cause chain of a failure or a value, without a model: walked backwards through the
        recorded writes, arguments and returns along the data flow, as sentences with file:line, code
        and values (the same chain `execscope explain` prints)."""
        return call(lambda s: agent.why(s, trace, at, var, max_steps))

    @server.tool(annotations=READ_ONLY)
    def hot_paths(function: Annotated[str, Field(description="Node id (pkg.mod:f) or module.qualname: the "
                                                             "paths through it; empty: the hottest functions.")] = "",
                  limit: Annotated[int, Field(ge=1, le=1000)] = 20) -> dict[str, Any]:
        """Where time goes: the functions by total/self/p95 time, or the branch paths through one
        function ranked by p95 latency."""
        return call(lambda s: agent.hot_paths(s, function, limit))

    @server.tool(annotations=READ_ONLY)
    def coverage(function: Annotated[str, Field(description="One function's node id.")] = "",
                 module: Annotated[str, Field(description="Only functions of this module.")] = "",
                 limit: Annotated[int, Field(ge=1, le=1000)] = 50) -> dict[str, Any]:
        """Per function: CFG nodes and edges executed vs not, least covered first."""
        return call(lambda s: agent.coverage(s, function, module, limit))

    @server.tool(annotations=READ_ONLY)
    def function_graph(function: Annotated[str, Field(description="Function node id, e.g. pkg.mod:Cart.total.")],
                       kinds: Annotated[list[str], Field(description="Edge kinds: CFG, CDG, REACHING_DEF, PHI, "
                                                                     "CALL, AST.")] = ["CFG", "REACHING_DEF"],  # noqa: B006
                       ) -> dict[str, Any]:
        """A function's control flow and data flow as text: nodes with line, kind and code; edges
        `src -> dst KIND label` (labels: branch taken, variable defined)."""
        return call(lambda s: agent.function_graph(s, function, tuple(kinds)))

    @server.tool(annotations=READ_ONLY)
    def source(node_id: Annotated[str, Field(description="Node id, e.g. pkg.mod:f or pkg.mod:f:if#0.")],
               code_version: Annotated[str, Field(description="Code version (newest holding the node when "
                                                              "empty).")] = "",
               context: Annotated[int, Field(ge=0, le=50)] = 0) -> dict[str, Any]:
        """The code of a node as it was recorded (the stored source of that code version), numbered."""
        return call(lambda s: agent.source(s, node_id, code_version, context))

    @server.tool(annotations=READ_ONLY)
    def sql(query: Annotated[str, Field(description="One SELECT (ClickHouse SQL). Tables: otel_traces, "
                                                    "execscope_events, cpg_nodes, cpg_edges, cpg_functions, "
                                                    "cpg_sources.")],
            max_rows: Annotated[int, Field(ge=1, le=1000)] = 200) -> dict[str, Any]:
        """One read-only statement against the store. Read-only is enforced by the engine (ClickHouse's
        readonly setting): writes, DDL and setting changes are refused. At most max_rows rows."""
        return call(lambda s: agent.sql(s, query, max_rows))

    server.holder = store  # type: ignore[attr-defined]
    return server


def serve(dsn: str | None, transport: str = "stdio", port: int = 8765, host: str = "127.0.0.1",
          idle_close: float | None = 10.0, token: str | None = None) -> None:
    """Run until the client goes away (stdio) or the process is stopped (http: streamable HTTP at /mcp).
    Over HTTP a non-loopback ``host`` needs ``token`` (:func:`execscope.serving.check_bind` raises
    before anything listens); with a token every request must carry ``Authorization: Bearer <token>``
    (401 otherwise)."""
    from execscope.serving import check_bind

    if transport != "stdio":
        check_bind(host, token, "mcp")
    server = build_server(dsn, idle_close)
    try:
        if transport == "stdio":
            server.run("stdio")
        elif token is None:
            server.run("streamable-http", host=host, port=port)
        else:
            _serve_http_with_token(server, host, port, token)
    finally:
        server.holder.close()  # type: ignore[attr-defined]


def _serve_http_with_token(server: Any, host: str, port: int, token: str) -> None:
    """The SDK's streamable HTTP app behind :class:`~execscope.serving.ASGITokenMiddleware`, on uvicorn
    (what the SDK's own ``run("streamable-http")`` uses)."""
    import uvicorn

    from execscope.serving import ASGITokenMiddleware, TokenGuard

    app = ASGITokenMiddleware(server.streamable_http_app(host=host), TokenGuard(token))
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()
