"""Servers listen on loopback unless a token guards them, and check the token on every connection."""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from execscope.serving import (
    ASGITokenMiddleware,
    DapTokenGate,
    ServingError,
    TokenGuard,
    check_bind,
    is_loopback,
    new_token,
    read_dap_message,
    resolve_token,
    serve_dap_connection,
    write_dap_message,
)

TOKEN = "t0ken-of-the-test-server-0123456789"


def test_non_loopback_bind_without_a_token_is_refused() -> None:
    for host in ("0.0.0.0", "::", "", "192.168.1.10", "10.0.0.1"):
        with pytest.raises(ServingError, match="without a token"):
            check_bind(host, None, "mcp")
        check_bind(host, TOKEN)  # with a token: allowed
    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"):
        assert is_loopback(host)
        check_bind(host, None)
    assert not is_loopback("no-such-host.invalid")


def test_token_from_option_or_environment_and_too_short_ones_refused() -> None:
    assert resolve_token(None, {}) is None
    assert resolve_token(None, {"EXECSCOPE_TOKEN": TOKEN}) == TOKEN
    assert resolve_token("x" * 20, {"EXECSCOPE_TOKEN": TOKEN}) == "x" * 20
    with pytest.raises(ServingError, match="at least 16"):
        resolve_token("short", {})
    assert len(new_token()) >= 40 and new_token() != new_token()


def test_guard_compares_tokens_and_parses_bearer_headers() -> None:
    guard = TokenGuard(TOKEN)
    assert guard.required and guard.check(TOKEN) and guard.check(TOKEN.encode())
    assert not guard.check(None) and not guard.check(TOKEN[:-1]) and not guard.check(TOKEN + "x")
    assert guard.check_authorization(f"Bearer {TOKEN}") and guard.check_authorization(f"bearer  {TOKEN} ")
    assert not guard.check_authorization(f"Basic {TOKEN}") and not guard.check_authorization(None)
    assert guard.check_headers([(b"host", b"x"), (b"Authorization", f"Bearer {TOKEN}".encode())])
    assert not guard.check_headers([(b"host", b"x")])
    open_guard = TokenGuard(None)
    assert not open_guard.required and open_guard.check(None) and open_guard.check_headers([])


async def _asgi_call(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def test_http_requests_without_the_token_get_401_and_never_reach_the_app() -> None:
    reached: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope["type"])
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    guarded = ASGITokenMiddleware(app, TokenGuard(TOKEN))
    http = {"type": "http", "method": "POST", "path": "/mcp"}
    out = asyncio.run(_asgi_call(guarded, {**http, "headers": [(b"content-type", b"application/json")]}))
    assert out[0]["status"] == 401 and (b"www-authenticate", b"Bearer") in out[0]["headers"] and reached == []
    out = asyncio.run(_asgi_call(guarded, {**http, "headers": [(b"authorization", b"Bearer wrong-token-0000000")]}))
    assert out[0]["status"] == 401 and reached == []
    out = asyncio.run(_asgi_call(guarded, {"type": "websocket", "headers": []}))
    assert out == [{"type": "websocket.close", "code": 1008}] and reached == []
    out = asyncio.run(_asgi_call(guarded, {**http, "headers": [(b"authorization", f"Bearer {TOKEN}".encode())]}))
    assert out[0]["status"] == 200 and reached == ["http"]
    asyncio.run(_asgi_call(guarded, {"type": "lifespan"}))
    assert reached == ["http", "lifespan"]


def test_dap_gate_answers_initialize_only_until_launch_or_attach_brings_the_token() -> None:
    gate = DapTokenGate(TokenGuard(TOKEN))
    assert gate.admit({"seq": 1, "command": "initialize", "arguments": {}}) is None
    refusal = gate.admit({"seq": 2, "command": "stackTrace"})
    assert refusal is not None and not refusal["success"] and gate.closing
    gate = DapTokenGate(TokenGuard(TOKEN))
    refusal = gate.admit({"seq": 2, "command": "attach", "arguments": {"token": "nope-nope-nope-nope"}})
    assert refusal is not None and refusal["request_seq"] == 2 and gate.closing
    gate = DapTokenGate(TokenGuard(TOKEN))
    assert gate.admit({"seq": 2, "command": "launch", "arguments": {"token": TOKEN, "trace": "abc"}}) is None
    assert gate.admit({"seq": 3, "command": "stackTrace"}) is None and gate.authenticated
    assert DapTokenGate(TokenGuard(None)).admit({"seq": 1, "command": "threads"}) is None


@pytest.fixture
def dap_server() -> Iterator[tuple[str, int]]:
    """A real TCP server on loopback that serves DAP through serve_dap_connection with a token."""
    guard = TokenGuard(TOKEN)

    def dispatch(request: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"type": "response", "request_seq": request["seq"], "success": True,
                 "command": request["command"], "seq": 0, "body": {"recorded": "values"}}]

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            serve_dap_connection(self.rfile, self.wfile, guard, dispatch)

    check_bind("127.0.0.1", TOKEN)
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[0], server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _session(address: tuple[str, int], requests: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
    with socket.create_connection(address, timeout=10) as sock:
        stream = sock.makefile("rwb")
        replies = []
        for request in requests:
            try:
                write_dap_message(stream, request)
                replies.append(read_dap_message(stream))
            except OSError:  # the server closed the connection
                replies.append(None)
        return replies


def test_a_dap_client_over_tcp_without_the_token_is_refused(dap_server: tuple[str, int]) -> None:
    init = {"seq": 1, "type": "request", "command": "initialize", "arguments": {"adapterID": "execscope"}}
    ok = _session(dap_server, [init, {"seq": 2, "type": "request", "command": "attach",
                                      "arguments": {"token": TOKEN}},
                               {"seq": 3, "type": "request", "command": "threads"}])
    assert [r is not None and r["success"] for r in ok] == [True, True, True]
    refused = _session(dap_server, [init, {"seq": 2, "type": "request", "command": "threads"},
                                    {"seq": 3, "type": "request", "command": "threads"}])
    assert refused[0] is not None and refused[0]["success"]
    assert refused[1] is not None and not refused[1]["success"] and "unauthorized" in refused[1]["message"]
    assert refused[2] is None  # the server closed the connection
    wrong = _session(dap_server, [{"seq": 1, "type": "request", "command": "launch",
                                   "arguments": {"token": "wrong-token-wrong-token"}},
                                  {"seq": 2, "type": "request", "command": "threads"}])
    assert wrong[0] is not None and not wrong[0]["success"] and wrong[1] is None
