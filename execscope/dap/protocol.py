"""Debug Adapter Protocol framing: ``Content-Length`` headers around UTF-8 JSON, over byte streams.

Messages are plain dicts as the protocol's JSON schema describes them (``seq``, ``type``, and
``command``/``event`` with ``arguments``/``body``). They are hand-written rather than typed models
(``dap-types`` on PyPI): the adapter reads a handful of argument fields per request and answers with
small bodies, so conversion layers would cost more code than they check; the protocol conformance is
checked by Microsoft's own client in the tests instead.

Threading: a :class:`Connection` may be written from several threads (the writer holds a lock); it
is read from one thread.
"""

from __future__ import annotations

import json
import threading
from typing import Any, BinaryIO

MAX_MESSAGE = 64 * 1024 * 1024


class ProtocolError(ValueError):
    """A frame that is not a DAP message (bad header, bad JSON, not an object)."""


class Connection:
    """Reads and writes DAP messages on a pair of binary streams."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO) -> None:
        self._reader = reader
        self._writer = writer
        self._lock = threading.Lock()
        self._seq = 0

    def read(self) -> dict[str, Any] | None:
        """The next message; None at end of stream. A frame whose body is not a JSON object raises
        ProtocolError after consuming it, so the caller can answer and read on."""
        length = None
        while True:
            line = self._reader.readline()
            if not line:
                return None
            line = line.strip()
            if not line:
                if length is None:
                    continue  # stray blank line between frames
                break
            name, _, value = line.decode("ascii", "replace").partition(":")
            if name.strip().lower() == "content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    raise ProtocolError(f"bad Content-Length header {value.strip()!r}") from None
        if not 0 <= length <= MAX_MESSAGE:
            raise ProtocolError(f"Content-Length {length} out of range")
        body = self._reader.read(length)
        if len(body) < length:
            return None
        try:
            message = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProtocolError(f"message is not JSON: {exc}") from None
        if not isinstance(message, dict):
            raise ProtocolError("message is not a JSON object")
        return message

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            message["seq"] = self._seq
            body = json.dumps(message, default=str, ensure_ascii=False).encode("utf-8")
            self._writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self._writer.flush()

    def respond(self, request: dict[str, Any], body: dict[str, Any] | None = None, *, success: bool = True,
                message: str | None = None) -> None:
        response: dict[str, Any] = {"type": "response", "request_seq": request.get("seq", 0),
                                    "command": request.get("command", ""), "success": success}
        if body is not None:
            response["body"] = body
        if message is not None:
            response["message"] = message
        self.send(response)

    def error(self, request: dict[str, Any], text: str) -> None:
        """A failed response whose message (and body.error.format) says what went wrong."""
        self.respond(request, {"error": {"id": 1, "format": text, "showUser": True}}, success=False, message=text)

    def event(self, name: str, body: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"type": "event", "event": name}
        if body is not None:
            message["body"] = body
        self.send(message)
