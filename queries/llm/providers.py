"""LLM providers behind one small protocol, over plain HTTP (the standard library's ``urllib``: one
client, no vendor SDK), each streaming its answer.

========== ===================================================== =============================
provider   endpoint (default base URL)                           stream / key (environment)
========== ===================================================== =============================
offline    none: the root-cause chain alone                      -
openai     POST {base}/chat/completions (https://api.openai.com/ SSE ``data:`` chunks, ``[DONE]``
           v1; also Ollama's and vLLM's /v1)                     / ``OPENAI_API_KEY`` (optional
                                                                 off api.openai.com)
anthropic  POST {base}/v1/messages (https://api.anthropic.com)   SSE ``content_block_delta``
                                                                 / ``ANTHROPIC_API_KEY``
gemini     POST {base}/v1beta/models/{model}:streamGenerate      SSE (``alt=sse``) candidates
           Content?alt=sse (https://generativelanguage.googleapis / ``GEMINI_API_KEY`` or
           .com)                                                 ``GOOGLE_API_KEY``
ollama     POST {base}/api/chat (http://127.0.0.1:11434)         NDJSON lines / none
========== ===================================================== =============================

Chosen with ``--provider`` or ``EXECSCOPE_LLM_PROVIDER``; the model with ``--model`` or
``EXECSCOPE_LLM_MODEL`` (required: model names change faster than code); the base URL with
``--base-url`` or ``EXECSCOPE_LLM_BASE_URL``; ``EXECSCOPE_LLM_API_KEY`` overrides the vendor's key
variable. Keys are read from the environment only, sent only in the vendor's auth header, and never
logged, printed or stored: an error message that quotes one has it replaced by ``***``. Every failure
(unreachable host, refused key, HTTP error, a stream cut short) is a :class:`ProviderError` whose
message is one line.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from execscope import __version__

PROVIDERS = ("offline", "openai", "anthropic", "gemini", "ollama")
ENV_PROVIDER = "EXECSCOPE_LLM_PROVIDER"
ENV_MODEL = "EXECSCOPE_LLM_MODEL"
ENV_BASE_URL = "EXECSCOPE_LLM_BASE_URL"
ENV_API_KEY = "EXECSCOPE_LLM_API_KEY"
DEFAULT_TIMEOUT_S = 120.0
MAX_ANSWER_TOKENS = 2048


class ProviderError(RuntimeError):
    """A provider failed; ``str()`` is one line naming the provider and what went wrong."""


class Provider(Protocol):
    """Streams a model's answer. ``stream`` runs on the caller's thread and yields text as it arrives;
    it raises :class:`ProviderError` (never anything else) on failure, possibly after some text."""

    name: str
    model: str

    def stream(self, system: str, prompt: str) -> Iterator[str]: ...


@dataclass(frozen=True)
class Settings:
    model: str
    base_url: str
    api_key: str = field(default="", repr=False)
    timeout: float = DEFAULT_TIMEOUT_S


# --- the one HTTP client --------------------------------------------------------------------------
def _scrub(text: str, secret: str) -> str:
    text = " ".join(str(text).split())
    if secret:
        text = text.replace(secret, "***")
    return text[:300]


def _post(provider: str, url: str, body: dict[str, Any], headers: Mapping[str, str], settings: Settings
          ) -> Any:
    """POST JSON; the open response (a file of bytes) on 2xx, else ProviderError."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "Accept": "text/event-stream, application/x-ndjson, application/json",
        "User-Agent": f"execscope/{__version__}", **headers})
    host = urllib.parse.urlparse(url).netloc
    try:
        return urllib.request.urlopen(request, timeout=settings.timeout)  # noqa: S310 (http(s) URLs only)
    except urllib.error.HTTPError as exc:
        try:
            raw = exc.read(4096).decode("utf-8", "replace")
        except Exception:
            raw = ""
        detail = _error_detail(raw) or exc.reason or ""
        if exc.code in (401, 403):
            raise ProviderError(f"{provider}: the API key was refused by {host} (HTTP {exc.code}): "
                                f"{_scrub(detail, settings.api_key)}") from None
        raise ProviderError(f"{provider}: HTTP {exc.code} from {host}: {_scrub(detail, settings.api_key)}") from None
    except OSError as exc:  # URLError, timeouts, refused connections
        reason = getattr(exc, "reason", exc)
        raise ProviderError(f"{provider}: cannot reach {host}: {_scrub(str(reason), settings.api_key)}") from None


def _error_detail(raw: str) -> str:
    try:
        doc = json.loads(raw)
    except ValueError:
        return raw.strip()
    if isinstance(doc, dict):
        err = doc.get("error", doc)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("status") or err)
        return str(err)
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):  # Gemini answers errors as a list
        return _error_detail(json.dumps(doc[0]))
    return raw.strip()


def _lines(provider: str, response: Any, settings: Settings) -> Iterator[str]:
    try:
        with response:
            for raw in response:
                yield raw.decode("utf-8", "replace").rstrip("\r\n")
    except (OSError, ValueError) as exc:
        raise ProviderError(f"{provider}: the answer stopped: {_scrub(str(exc), settings.api_key)}") from None


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) of a server-sent-events stream (data lines of one event joined by newlines)."""
    event, data = "", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", list[str]()
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" ") if line[5:6] == " " else line[5:])
    if data:
        yield event or "message", "\n".join(data)


def _json(provider: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise ProviderError(f"{provider}: the stream carried something that is not JSON: {text[:80]!r}") from None


# --- the providers --------------------------------------------------------------------------------
class OpenAIProvider:
    """OpenAI chat completions, and every server that speaks them (Ollama's and vLLM's /v1)."""

    name = "openai"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model = settings.model

    def stream(self, system: str, prompt: str) -> Iterator[str]:
        s = self.settings
        headers = {"Authorization": f"Bearer {s.api_key}"} if s.api_key else {}
        body = {"model": s.model, "stream": True,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}]}
        response = _post(self.name, s.base_url.rstrip("/") + "/chat/completions", body, headers, s)
        for _event, data in sse_events(_lines(self.name, response, s)):
            if data.strip() == "[DONE]":
                return
            doc = _json(self.name, data)
            if isinstance(doc, dict) and doc.get("error"):
                raise ProviderError(f"{self.name}: {_scrub(_error_detail(data), s.api_key)}")
            for choice in doc.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    yield text


class AnthropicProvider:
    """Anthropic's messages API."""

    name = "anthropic"
    VERSION = "2023-06-01"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model = settings.model

    def stream(self, system: str, prompt: str) -> Iterator[str]:
        s = self.settings
        if not s.api_key:
            raise ProviderError(f"{self.name}: no API key: set ANTHROPIC_API_KEY (or {ENV_API_KEY})")
        headers = {"x-api-key": s.api_key, "anthropic-version": self.VERSION}
        body = {"model": s.model, "max_tokens": MAX_ANSWER_TOKENS, "stream": True, "system": system,
                "messages": [{"role": "user", "content": prompt}]}
        response = _post(self.name, s.base_url.rstrip("/") + "/v1/messages", body, headers, s)
        for event, data in sse_events(_lines(self.name, response, s)):
            if event == "error":
                raise ProviderError(f"{self.name}: {_scrub(_error_detail(data), s.api_key)}")
            if event == "message_stop":
                return
            if event == "content_block_delta":
                delta = _json(self.name, data).get("delta") or {}
                if delta.get("type") == "text_delta" and delta.get("text"):
                    yield delta["text"]


class GeminiProvider:
    """Google's Gemini API, ``streamGenerateContent`` as server-sent events."""

    name = "gemini"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model = settings.model

    def stream(self, system: str, prompt: str) -> Iterator[str]:
        s = self.settings
        if not s.api_key:
            raise ProviderError(f"{self.name}: no API key: set GEMINI_API_KEY (or GOOGLE_API_KEY, {ENV_API_KEY})")
        url = (f"{s.base_url.rstrip('/')}/v1beta/models/{urllib.parse.quote(s.model, safe='')}"
               ":streamGenerateContent?alt=sse")
        body = {"systemInstruction": {"parts": [{"text": system}]},
                "contents": [{"role": "user", "parts": [{"text": prompt}]}]}
        response = _post(self.name, url, body, {"x-goog-api-key": s.api_key}, s)
        for _event, data in sse_events(_lines(self.name, response, s)):
            doc = _json(self.name, data)
            if isinstance(doc, dict) and doc.get("error"):
                raise ProviderError(f"{self.name}: {_scrub(_error_detail(data), s.api_key)}")
            for candidate in doc.get("candidates") or ():
                for part in (candidate.get("content") or {}).get("parts") or ():
                    if part.get("text") and not part.get("thought"):
                        yield part["text"]


class OllamaProvider:
    """Ollama's native chat API (newline-delimited JSON)."""

    name = "ollama"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model = settings.model

    def stream(self, system: str, prompt: str) -> Iterator[str]:
        s = self.settings
        body = {"model": s.model, "stream": True,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}]}
        response = _post(self.name, s.base_url.rstrip("/") + "/api/chat", body, {}, s)
        for line in _lines(self.name, response, s):
            if not line.strip():
                continue
            doc = _json(self.name, line)
            if doc.get("error"):
                raise ProviderError(f"{self.name}: {_scrub(str(doc['error']), s.api_key)}")
            text = (doc.get("message") or {}).get("content")
            if text:
                yield text
            if doc.get("done"):
                return
        raise ProviderError(f"{self.name}: the answer stopped before it was done")


_CLASSES: dict[str, Any] = {"openai": OpenAIProvider, "anthropic": AnthropicProvider, "gemini": GeminiProvider,
                            "ollama": OllamaProvider}
_DEFAULT_BASE = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com",
                 "gemini": "https://generativelanguage.googleapis.com", "ollama": "http://127.0.0.1:11434"}
_KEY_VARS = {"openai": ("OPENAI_API_KEY",), "anthropic": ("ANTHROPIC_API_KEY",),
             "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"), "ollama": ()}


def make_provider(name: str | None = None, model: str | None = None, base_url: str | None = None,
                  environ: Mapping[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> Provider | None:
    """The provider ``name`` (else ``EXECSCOPE_LLM_PROVIDER``, else offline: None), configured from the
    arguments and the environment. Raises ProviderError for an unknown provider or a missing model."""
    env = os.environ if environ is None else environ
    name = (name or env.get(ENV_PROVIDER) or "offline").strip().lower()
    if name not in PROVIDERS:
        raise ProviderError(f"unknown provider {name!r}: choose one of {', '.join(PROVIDERS)}")
    if name == "offline":
        return None
    model = model or env.get(ENV_MODEL) or ""
    if not model:
        raise ProviderError(f"{name}: no model: give --model or set {ENV_MODEL}")
    key = env.get(ENV_API_KEY) or next((env[v] for v in _KEY_VARS[name] if env.get(v)), "")
    base = base_url or env.get(ENV_BASE_URL) or _DEFAULT_BASE[name]
    if not base.startswith(("http://", "https://")):
        raise ProviderError(f"{name}: the base URL must start with http:// or https:// (got {base!r})")
    if name == "openai" and not key and "api.openai.com" in base:
        raise ProviderError(f"{name}: no API key: set OPENAI_API_KEY (or {ENV_API_KEY})")
    provider: Provider = _CLASSES[name](Settings(model, base, key, timeout))
    return provider
