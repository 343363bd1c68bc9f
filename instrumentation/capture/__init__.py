"""Capture: what runs inside the recorded program, on its threads.

Owns: :mod:`.runtime` (the API rewritten code calls, the SDK-span core, levels, budgets),
:mod:`.fast_capture` (the compact-frame core, its C accelerator ``_capture.c`` with the value
renderer ``_repr.c``), :mod:`.values` (safe, bounded, redacted values), :mod:`.redaction` (the
secrets policy, shared with the collector and ``execscope redact-check``), :mod:`.thread_context`
(recorded parents carried into threads), :mod:`.ids` (span and trace ids) and
:mod:`.span_processor` (the OpenTelemetry ``SpanProcessor`` that drains frames off the hot path)
and :mod:`.otel_context` (the runtime context that shows the current recorded call to the
OpenTelemetry API as the current span).

May import: the standard library, the OpenTelemetry API and SDK. Never :mod:`..analysis` (static
analysis is not the recorded program's business) nor :mod:`..export`: the span processor hands
frames to an encoder and a sink it is given.
"""
