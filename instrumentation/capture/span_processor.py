"""The execscope span processor: where fast-captured calls become OTLP spans, off the hot path.

:class:`ExecscopeSpanProcessor` is a real :class:`opentelemetry.sdk.trace.SpanProcessor`, registered
on the application's :class:`~opentelemetry.sdk.trace.TracerProvider` next to its other processors.
It owns the fast capture core (:mod:`.fast_capture`): rewritten code records compact frames on the
program's threads; the processor's worker thread takes them in bulk every ``interval_s`` and hands
them to ``sink(frames, dropped)``, which encodes them (:meth:`encode`, one
``ExportTraceServiceRequest`` carrying the provider's resource, through the ``encoder`` the processor
is given: :func:`execscope.instrumentation.export.otlp_encode.encode_request`) and writes them where
they go (the spool of the embedded default, Kafka). The capture wing never imports the export wing:
whoever builds the processor passes both in.

What it takes from the provider: the resource of every exported span, and the sampler's decision
for every new trace (a call with no sampled OpenTelemetry span around it): ``TraceIdRatioBased``,
``ALWAYS_ON``/``ALWAYS_OFF`` and their ``ParentBased`` forms are applied as a ratio in the capture
core (no call into the SDK per trace); any other sampler is asked once per new trace. Calls under
an OpenTelemetry span follow that span: its trace id, its span as parent, its sampled flag.

Spans the application makes through the SDK itself pass through ``on_start``/``on_end`` untouched:
its own processors export them.

Threading: ``force_flush`` and ``shutdown`` may be called from any thread, are bounded by their
timeout, and ``shutdown`` is idempotent (it stops recording through this processor).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import sampling as otel_sampling
from opentelemetry.trace import SpanKind

from execscope import __version__
from execscope.instrumentation.capture import clocks, fast_capture, runtime

FrameSink = Callable[[list, int], None]
FrameEncoder = Callable[..., bytes]
"""``encoder(frames, resource_attributes, sdk_version, dropped[, receives=[clocks.Receive, ...]])`` -> one
serialized ``ExportTraceServiceRequest`` (``receives`` is passed only when there are some)."""


def sampler_ratio(sampler: Any) -> float | None:
    """The head-sampling ratio equivalent to ``sampler`` for new traces, or None when it is not a
    ratio (a custom sampler, asked per trace instead)."""
    if isinstance(sampler, otel_sampling.ParentBased):
        sampler = getattr(sampler, "_root", sampler)
    if isinstance(sampler, otel_sampling.TraceIdRatioBased):
        return float(sampler.rate)
    if isinstance(sampler, otel_sampling.StaticSampler):
        return 1.0 if sampler.should_sample(None, 1, "execscope").decision.is_sampled() else 0.0
    return None


def _ask(sampler: Any) -> Callable[[int], bool]:
    def decide(trace_id: int) -> bool:
        result = sampler.should_sample(None, trace_id, "execscope", SpanKind.INTERNAL)
        return bool(result.decision.is_sampled())

    return decide


class ExecscopeSpanProcessor(SpanProcessor):
    """Turns the fast capture core's frames into OTLP spans in bulk; see the module docstring.

    ``sink(frames, dropped)`` runs on the processor's worker thread; ``dropped`` is the cumulative
    count of frames lost to a full buffer (it travels in the exported resource). A sink that raises
    loses that batch, counted as dropped. Creating the processor starts recording.
    """

    def __init__(self, sink: FrameSink, encoder: FrameEncoder, *, resource: Resource | None = None,
                 sampler: Any = None, interval_s: float = 0.5) -> None:
        self._encoder = encoder
        self.resource = resource if resource is not None else Resource.create({})
        ratio = sampler_ratio(sampler) if sampler is not None else 1.0
        if ratio is not None:
            fast_capture.set_sampling(ratio)
        else:
            fast_capture.set_root_sampler(_ask(sampler))
        self._stopped = False
        clocks.keep_receives()  # exported with the frames (encode)
        self._worker = fast_capture.CaptureWorker(sink, interval_s)
        fast_capture.activate()

    @classmethod
    def install(cls, provider: TracerProvider, sink: FrameSink, encoder: FrameEncoder,
                interval_s: float = 0.5) -> ExecscopeSpanProcessor:
        """A processor with ``provider``'s resource and sampler, registered on it."""
        processor = cls(sink, encoder, resource=provider.resource, sampler=provider.sampler, interval_s=interval_s)
        provider.add_span_processor(processor)
        return processor

    def resource_attributes(self) -> dict[str, Any]:
        """The exported resource: the provider's, execscope as the telemetry SDK that made the spans,
        and this process's id, host and clock identity (read each time: a forked child reports its own)."""
        return {**self.resource.attributes, "telemetry.sdk.name": "execscope", "telemetry.sdk.version": __version__,
                "process.pid": os.getpid(), **clocks.process_attributes()}

    def encode(self, frames: list, dropped: int = 0, resource: Mapping[str, Any] | None = None) -> bytes:
        """One serialized ``ExportTraceServiceRequest`` holding ``frames`` and the messages this
        process received from others since the last batch (:func:`clocks.take_receives`), which the
        encoder is then given as ``receives=``."""
        attrs = resource if resource is not None else self.resource_attributes()
        receives, _ = clocks.take_receives()
        if receives:
            return self._encoder(frames, attrs, __version__, dropped, receives=receives)
        return self._encoder(frames, attrs, __version__, dropped)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._worker.force_flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._worker.shutdown()
        if runtime.enter is fast_capture.HOOKS["enter"]:  # still the core recording: stop it
            runtime.deactivate()
