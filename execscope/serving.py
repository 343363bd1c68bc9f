"""Who may talk to an execscope server: the piece the MCP HTTP transport and the DAP TCP port share.

A recording holds everything a program touched; a server over it must not be an open door.

* **Bind**: servers listen on ``127.0.0.1`` by default. :func:`check_bind` refuses any other address
  (``0.0.0.0``, ``::``, a LAN address, a name that resolves beyond loopback) unless a token guards
  it: ``--token`` or ``EXECSCOPE_TOKEN`` (:func:`resolve_token`; at least 16 characters,
  :func:`new_token` makes one).
* **Every connection**: with a token set (on any address), each connection must present it, compared
  in constant time (:class:`TokenGuard`). HTTP (the MCP streamable HTTP transport): an
  ``Authorization: Bearer <token>`` header on every request (:class:`ASGITokenMiddleware` wraps the
  ASGI app; a request without it gets 401). DAP over TCP has no authentication of its own: the client
  puts ``"token"`` in the arguments of its ``launch`` or ``attach`` request (in VS Code, a field of
  the launch configuration); until then only ``initialize`` is answered, and a wrong or missing
  token ends the connection (:class:`DapTokenGate`, :func:`serve_dap_connection`).

Standard library only; the servers themselves (``execscope mcp``, ``execscope dap``) wire this in.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any, BinaryIO

ENV_TOKEN = "EXECSCOPE_TOKEN"
DEFAULT_HOST = "127.0.0.1"
MIN_TOKEN_CHARS = 16


class ServingError(RuntimeError):
    """A server must not start as asked (one clear line for the user)."""


def new_token() -> str:
    """A fresh random token (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def resolve_token(option: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The token from ``--token`` or ``EXECSCOPE_TOKEN`` (the option wins); None when neither is set.
    Raises :class:`ServingError` for a token shorter than 16 characters."""
    env = os.environ if environ is None else environ
    token = option if option else env.get(ENV_TOKEN) or None
    if token is not None:
        token = token.strip()
        if len(token) < MIN_TOKEN_CHARS:
            raise ServingError(f"the server token must be at least {MIN_TOKEN_CHARS} characters "
                               f"(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return token


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` reaches this machine only: 127.0.0.0/8, ::1, or a name whose
    every address is one of those. ``""``, ``0.0.0.0`` and ``::`` (every interface) are not."""
    host = host.strip().strip("[]")
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {str(info[4][0]) for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def check_bind(host: str, token: str | None, server: str = "server") -> None:
    """Refuse (:class:`ServingError`) to listen on a non-loopback ``host`` without a token."""
    if token is None and not is_loopback(host):
        raise ServingError(
            f"execscope {server}: refusing to listen on {host or 'every interface'} without a token: anyone who "
            f"can reach it could read the recordings. Pass --token (or set {ENV_TOKEN}), or listen on "
            f"{DEFAULT_HOST}.")


class TokenGuard:
    """Checks what a connection presents against the server's token (constant-time compare).
    Without a token (loopback only, see :func:`check_bind`) every connection is admitted."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    @property
    def required(self) -> bool:
        return self._token is not None

    def check(self, presented: str | bytes | None) -> bool:
        if self._token is None:
            return True
        if presented is None:
            return False
        given = presented.encode() if isinstance(presented, str) else bytes(presented)
        return hmac.compare_digest(given, self._token)

    def check_authorization(self, value: str | bytes | None) -> bool:
        """An HTTP ``Authorization`` header value: ``Bearer <token>``."""
        if self._token is None:
            return True
        if value is None:
            return False
        raw = value.encode("latin-1") if isinstance(value, str) else bytes(value)
        scheme, _, credentials = raw.strip().partition(b" ")
        return scheme.lower() == b"bearer" and self.check(credentials.strip())

    def check_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """ASGI ``scope["headers"]``: the request's ``Authorization`` header holds the token."""
        if self._token is None:
            return True
        for name, value in headers:
            if name.lower() == b"authorization":
                return self.check_authorization(value)
        return False


class ASGITokenMiddleware:
    """Wraps an ASGI app (the MCP streamable HTTP transport): every HTTP request and websocket must
    carry ``Authorization: Bearer <token>``; others get ``401`` (websockets are closed, 1008) and
    never reach the app. Lifespan events pass through."""

    def __init__(self, app: Any, guard: TokenGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        kind = scope.get("type")
        if kind in ("http", "websocket") and not self.guard.check_headers(scope.get("headers") or ()):
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            body = b'{"error": "unauthorized: send Authorization: Bearer <token>"}'
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


# -- DAP over TCP ---------------------------------------------------------------------------------

class DapTokenGate:
    """The token check of one DAP connection (see the module doc). :meth:`admit` each request in
    order: it returns None to serve it, or the error response to send (then the connection ends
    when :attr:`closing` is set)."""

    OPEN_COMMANDS = frozenset({"initialize"})
    AUTH_COMMANDS = frozenset({"launch", "attach"})

    def __init__(self, guard: TokenGuard) -> None:
        self.guard = guard
        self.authenticated = not guard.required
        self.closing = False

    def admit(self, request: Mapping[str, Any]) -> dict[str, Any] | None:
        if self.authenticated:
            return None
        command = str(request.get("command", ""))
        if command in self.OPEN_COMMANDS:
            return None
        if command in self.AUTH_COMMANDS:
            args = request.get("arguments")
            token = args.get("token") if isinstance(args, Mapping) else None
            if isinstance(token, str) and self.guard.check(token):
                self.authenticated = True
                return None
            self.closing = True
            return _error_response(request, "unauthorized: the launch/attach arguments lack the server's token")
        self.closing = True
        return _error_response(request, f"unauthorized: {command or 'a request'} before an authenticated "
                                        "launch/attach")


def _error_response(request: Mapping[str, Any], message: str) -> dict[str, Any]:
    return {"type": "response", "request_seq": request.get("seq", 0), "success": False,
            "command": request.get("command", ""), "message": message, "seq": 0}


def read_dap_message(stream: BinaryIO, max_bytes: int = 16 << 20) -> dict[str, Any] | None:
    """One DAP message (``Content-Length`` framing); None at the end of the stream. Raises
    ValueError on a malformed or oversized one."""
    length = None
    while True:
        line = stream.readline(8192)
        if not line:
            return None
        line = line.strip()
        if not line:
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None or not 0 <= length <= max_bytes:
        raise ValueError("DAP message without a valid Content-Length")
    body = stream.read(length)
    if len(body) != length:
        return None
    message = json.loads(body)
    if not isinstance(message, dict):
        raise ValueError("DAP message is not a JSON object")
    return message


def write_dap_message(stream: BinaryIO, message: Mapping[str, Any]) -> None:
    body = json.dumps(message, separators=(",", ":")).encode()
    stream.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    stream.flush()


def serve_dap_connection(rfile: BinaryIO, wfile: BinaryIO, guard: TokenGuard,
                         dispatch: Callable[[dict[str, Any]], Iterable[Mapping[str, Any]]]) -> bool:
    """Serve one DAP connection: every request passes :class:`DapTokenGate` before ``dispatch``
    (which yields the messages to send back). Returns False when the connection was refused."""
    gate = DapTokenGate(guard)
    while True:
        try:
            message = read_dap_message(rfile)
        except ValueError:
            return gate.authenticated
        if message is None:
            return True
        refusal = gate.admit(message)
        if refusal is not None:
            write_dap_message(wfile, refusal)
            if gate.closing:
                return False
            continue
        for reply in dispatch(message):
            write_dap_message(wfile, reply)
