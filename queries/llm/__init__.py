"""LLM providers for explanations: one protocol (:class:`Provider`), plain HTTP, keys only from the
environment, and the offline default (no model: the root-cause chain alone)."""

from execscope.queries.llm.context import SYSTEM_PROMPT, build_context
from execscope.queries.llm.providers import PROVIDERS, Provider, ProviderError, make_provider
from execscope.queries.llm.redaction import redact_text

__all__ = ["PROVIDERS", "SYSTEM_PROMPT", "Provider", "ProviderError", "build_context", "make_provider", "redact_text"]
