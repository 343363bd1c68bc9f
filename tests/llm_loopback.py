"""Loopback HTTP servers speaking each LLM vendor's real streaming wire format, for the provider tests.

A :class:`Vendor` server records every request (method, path, query, headers, JSON body) and answers
``ANSWER`` split into pieces, framed as that vendor frames a streamed answer (OpenAI chat completion
chunks as server-sent events ending in ``[DONE]``; Anthropic ``message_start`` ...
``content_block_delta`` ... ``message_stop`` events; Gemini ``streamGenerateContent?alt=sse``
candidates; Ollama ``/api/chat`` newline-delimited JSON), or the vendor's error body with ``status``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

ANSWER_PIECES = ["The discount ", "is added twice: ", "`discount += 0.40` at pricing.py:23 ", "should be 0.04.\n",
                 "Fix: `discount += 0.04`."]
ANSWER = "".join(ANSWER_PIECES)


def _sse(event: str | None, data: Any) -> bytes:
    head = f"event: {event}\n" if event else ""
    return (head + "data: " + (data if isinstance(data, str) else json.dumps(data)) + "\n\n").encode()


def frames(vendor: str) -> list[bytes]:
    """The streamed answer as the vendor sends it, one network write per element."""
    if vendor == "openai":
        out = [_sse(None, {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                           "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                        "finish_reason": None}]})]
        out += [_sse(None, {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                            "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]})
                for p in ANSWER_PIECES]
        out.append(_sse(None, {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        out.append(b": keep-alive comment\n\n")
        out.append(_sse(None, "[DONE]"))
        return out
    if vendor == "anthropic":
        out = [_sse("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "m",
            "stop_reason": None, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
            _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}}),
            _sse("ping", {"type": "ping"})]
        out += [_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "text_delta", "text": p}}) for p in ANSWER_PIECES]
        out += [_sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
                _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                       "usage": {"output_tokens": 30}}),
                _sse("message_stop", {"type": "message_stop"})]
        return out
    if vendor == "gemini":
        out = [(("data: " + json.dumps({"candidates": [{"content": {"parts": [{"text": p}], "role": "model"},
                                                        "index": 0}],
                                        "modelVersion": "m"}) + "\r\n\r\n").encode()) for p in ANSWER_PIECES]
        out.append(("data: " + json.dumps({"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"},
                                                           "finishReason": "STOP", "index": 0}],
                                           "usageMetadata": {"promptTokenCount": 10}}) + "\r\n\r\n").encode())
        return out
    if vendor == "ollama":
        out = [(json.dumps({"model": "m", "created_at": "2026-01-01T00:00:00Z",
                            "message": {"role": "assistant", "content": p}, "done": False}) + "\n").encode()
               for p in ANSWER_PIECES]
        out.append((json.dumps({"model": "m", "created_at": "2026-01-01T00:00:00Z",
                                "message": {"role": "assistant", "content": ""}, "done": True,
                                "done_reason": "stop", "total_duration": 1}) + "\n").encode())
        return out
    raise ValueError(vendor)


ERRORS = {  # each vendor's error body for a refused key
    "openai": {"error": {"message": "Incorrect API key provided: sk-te***ey.", "type": "invalid_request_error",
                         "param": None, "code": "invalid_api_key"}},
    "anthropic": {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
    "gemini": {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                         "status": "INVALID_ARGUMENT"}},
    "ollama": {"error": "model 'nope' not found"},
}
CONTENT_TYPES = {"openai": "text/event-stream", "anthropic": "text/event-stream", "gemini": "text/event-stream",
                 "ollama": "application/x-ndjson"}


class Vendor:
    """``with Vendor('openai') as v: ... v.url ... v.requests``; ``status`` != 200 answers the vendor's
    error body with that status instead."""

    def __init__(self, vendor: str, status: int = 200) -> None:
        self.vendor = vendor
        self.status = status
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the body ends when the connection closes: pure streaming

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                parts = urlsplit(self.path)
                owner.requests.append({"path": parts.path, "query": parts.query,
                                       "headers": {k.lower(): v for k, v in self.headers.items()},
                                       "body": json.loads(raw or b"null")})
                if owner.status != 200:
                    body = json.dumps(ERRORS[owner.vendor]).encode()
                    self.send_response(owner.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPES[owner.vendor])
                self.end_headers()
                for chunk in frames(owner.vendor):
                    self.wfile.write(chunk)
                    self.wfile.flush()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Vendor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
