"""An OTel ``SpanExporter`` that writes OTLP protobuf batches into the local spool.

This is where spans are turned into OTLP on the embedded path: each ``export`` call becomes one
``ExportTraceServiceRequest`` (opentelemetry-proto, via the OTLP exporter's own encoder) written
atomically as one spool file. Runs on the span processor's worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from execscope.instrumentation.export.held_while_tracing import HeldWhileTracing
from execscope.instrumentation.export.spool import Spool


class SpoolSpanExporter(SpanExporter):
    """Writes batches to a :class:`Spool`. ``export`` fails (and counts) when the disk does."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.exported_spans = 0
        self.failed_spans = 0
        self._shutdown = False
        self._lock = threading.Lock()
        self._held = HeldWhileTracing()  # while the program traces its allocations

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.SUCCESS if not spans else SpanExportResult.FAILURE
        return self._held.export(spans, self._write)

    def _write(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        try:
            # loaded on the first export: most recorded programs make no SDK spans of their own,
            # and opentelemetry-proto costs every recording process ~20 ms to import
            from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

            from execscope.instrumentation.export.otlp_encode import redact_sdk_request

            payload = redact_sdk_request(encode_spans(spans)).SerializeToString()
        except Exception:
            self.failed_spans += len(spans)
            return SpanExportResult.FAILURE
        ok = self.spool.write_batch(payload)
        with self._lock:
            if ok:
                self.exported_spans += len(spans)
            else:
                self.failed_spans += len(spans)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._write(self._held.take((), force=True) or [])  # what the program's tracing kept back
        self._shutdown = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every export is written synchronously
