"""LLM providers against loopback servers speaking each vendor's real wire format: the request's
path, headers and body; the streamed answer, whole and in order; errors as one line without the key."""

from __future__ import annotations

import socket

import pytest

from execscope.queries.llm import ProviderError, make_provider, redact_text
from execscope.queries.llm.providers import sse_events
from tests.llm_loopback import ANSWER_PIECES, Vendor

KEY = "sk-test-secret-key-123"
SYSTEM = "You are a debugging assistant."
PROMPT = "Why did it fail?\n1. `total` became 0.23"
KEY_VARS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}


def _provider(vendor: str, url: str, model: str = "test-model"):
    env = {KEY_VARS[vendor]: KEY} if vendor in KEY_VARS else {}
    base = url + "/v1" if vendor == "openai" else url
    provider = make_provider(vendor, model, base, environ=env, timeout=10)
    assert provider is not None and provider.name == vendor and provider.model == model
    return provider


@pytest.mark.parametrize("vendor", ["openai", "anthropic", "gemini", "ollama"])
def test_streams_the_whole_answer_in_order(vendor: str) -> None:
    with Vendor(vendor) as server:
        pieces = list(_provider(vendor, server.url).stream(SYSTEM, PROMPT))
    assert pieces == ANSWER_PIECES
    assert len(server.requests) == 1


def test_openai_request_shape() -> None:
    with Vendor("openai") as server:
        list(_provider("openai", server.url).stream(SYSTEM, PROMPT))
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["query"] == ""
    assert req["headers"]["authorization"] == f"Bearer {KEY}"
    assert req["headers"]["content-type"] == "application/json"
    assert req["body"] == {"model": "test-model", "stream": True,
                           "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]}


def test_anthropic_request_shape() -> None:
    with Vendor("anthropic") as server:
        list(_provider("anthropic", server.url).stream(SYSTEM, PROMPT))
    req = server.requests[0]
    assert req["path"] == "/v1/messages"
    assert req["headers"]["x-api-key"] == KEY and req["headers"]["anthropic-version"] == "2023-06-01"
    assert "authorization" not in req["headers"]
    assert req["body"] == {"model": "test-model", "max_tokens": 2048, "stream": True, "system": SYSTEM,
                           "messages": [{"role": "user", "content": PROMPT}]}


def test_gemini_request_shape() -> None:
    with Vendor("gemini") as server:
        list(_provider("gemini", server.url, model="gemini-test").stream(SYSTEM, PROMPT))
    req = server.requests[0]
    assert req["path"] == "/v1beta/models/gemini-test:streamGenerateContent" and req["query"] == "alt=sse"
    assert req["headers"]["x-goog-api-key"] == KEY and "key=" not in req["query"]
    assert req["body"] == {"systemInstruction": {"parts": [{"text": SYSTEM}]},
                           "contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}


def test_ollama_request_shape() -> None:
    with Vendor("ollama") as server:
        list(_provider("ollama", server.url).stream(SYSTEM, PROMPT))
    req = server.requests[0]
    assert req["path"] == "/api/chat" and "authorization" not in req["headers"]
    assert req["body"] == {"model": "test-model", "stream": True,
                           "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]}


@pytest.mark.parametrize(("vendor", "status", "expected"), [
    ("openai", 401, "openai: the API key was refused by 127.0.0.1:"),
    ("anthropic", 401, "anthropic: the API key was refused by 127.0.0.1:"),
    ("gemini", 400, "gemini: HTTP 400 from 127.0.0.1:"),
    ("ollama", 404, "ollama: HTTP 404 from 127.0.0.1:"),
])
def test_a_refused_request_is_one_line_without_the_key(vendor: str, status: int, expected: str) -> None:
    with Vendor(vendor, status=status) as server:
        with pytest.raises(ProviderError) as err:
            list(_provider(vendor, server.url).stream(SYSTEM, PROMPT))
    message = str(err.value)
    assert message.startswith(expected) and "\n" not in message and KEY not in message
    vendor_text = {"openai": "Incorrect API key provided", "anthropic": "invalid x-api-key",
                   "gemini": "API key not valid", "ollama": "model 'nope' not found"}[vendor]
    assert vendor_text in message


def test_an_unreachable_host_is_one_line() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = make_provider("ollama", "m", f"http://127.0.0.1:{port}", environ={}, timeout=5)
    assert provider is not None
    with pytest.raises(ProviderError) as err:
        list(provider.stream(SYSTEM, PROMPT))
    assert str(err.value).startswith(f"ollama: cannot reach 127.0.0.1:{port}: ") and "\n" not in str(err.value)


def test_configuration_errors() -> None:
    assert make_provider(None, environ={}) is None  # offline by default
    assert make_provider("offline", environ={}) is None
    with pytest.raises(ProviderError, match="unknown provider 'gpt'"):
        make_provider("gpt", environ={})
    with pytest.raises(ProviderError, match="no model: give --model or set EXECSCOPE_LLM_MODEL"):
        make_provider("ollama", environ={})
    with pytest.raises(ProviderError, match="no API key: set OPENAI_API_KEY"):
        make_provider("openai", "m", environ={})
    with pytest.raises(ProviderError, match="no API key: set ANTHROPIC_API_KEY"):
        list(make_provider("anthropic", "m", environ={}).stream(SYSTEM, PROMPT))  # type: ignore[union-attr]
    env = {"EXECSCOPE_LLM_PROVIDER": "gemini", "EXECSCOPE_LLM_MODEL": "g", "GOOGLE_API_KEY": KEY,
           "EXECSCOPE_LLM_BASE_URL": "http://127.0.0.1:1"}
    provider = make_provider(environ=env)
    assert provider is not None and provider.name == "gemini" and provider.model == "g"
    assert KEY not in repr(provider.settings)  # type: ignore[attr-defined]
    # an OpenAI-compatible server (Ollama's or vLLM's /v1) needs no key
    assert make_provider("openai", "m", "http://127.0.0.1:11434/v1", environ={}) is not None


def test_sse_parser() -> None:
    lines = iter(["event: a", "data: one", "data: two", "", ": comment", "data:x", "", "data: tail"])
    assert list(sse_events(lines)) == [("a", "one\ntwo"), ("message", "x"), ("message", "tail")]


def test_redaction_of_the_context() -> None:
    text = ('API_KEY = "sk-abc"\nx = 5\n{"password": "hunter2", "user": "bob"}\nconnect(token=abc123, host=h)\n'
            "if token == other:\n`session_id` = 'q1' was passed")
    assert redact_text(text) == ('API_KEY = <redacted>\nx = 5\n{"password": <redacted>, "user": "bob"}\n'
                                 "connect(token=<redacted>, host=h)\nif token == other:\n"
                                 "`session_id` = <redacted> was passed")


def test_redaction_of_the_context_applies_the_secrets_policy() -> None:
    from execscope.instrumentation.capture.redaction import policy_from

    # value patterns, whatever the name: a URL password, a bearer header, an AWS key id, a card number
    text = ("`dsn` = 'postgres://admin:S3cretPass@db/app'\n"
            "headers became {'Authorization': 'Bearer abcdefghijklmnop1234'}\n"
            "key_id = AKIAIOSFODNN7EXAMPLE\ncard = '4111 1111 1111 1111' at shop.py:3")
    red = redact_text(text)
    for secret in ("S3cretPass", "abcdefghijklmnop1234", "AKIAIOSFODNN7EXAMPLE", "4111 1111 1111 1111"):
        assert secret not in red, (secret, red)
    assert "postgres://admin:<redacted:password>@db/app" in red and "<redacted:aws-key>" in red
    assert "at shop.py:3" in red
    # names the environment adds (EXECSCOPE_REDACT_NAMES) count too, given the policy built from it
    policy = policy_from({"EXECSCOPE_REDACT_NAMES": "ssn"}, patterns=True, errors=[])
    assert redact_text("`ssn` = '078-05-1120'", policy) == "`ssn` = <redacted>"
    assert redact_text("`ssn` = '078-05-1120'") == "`ssn` = '078-05-1120'"
