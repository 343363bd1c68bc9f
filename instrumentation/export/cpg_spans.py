"""Node rows inside the OTLP data: one carrier span per recorded module version.

On the OpenTelemetry path (``opentelemetry-instrument`` with the execscope instrumentor, spans sent
wherever the user's OTel configuration says, e.g. to a stock OpenTelemetry Collector that writes
Kafka) there is no spool and no ``<topic>.cpg`` topic, so the node rows of each rewritten module
travel in the trace pipeline itself, in a form every collector passes through untouched: an ordinary
span of instrumentation scope :data:`SCOPE`, with the module version's node document (the spool's
JSON document, :func:`..spool.module_document`) as a string attribute. execscope's collector
recognises these spans (``execscope.collector.cpg_carrier``) and writes the CPG tables from them
instead of ``otel_traces``.

Carrier span contract (version 1):

* scope name ``execscope.cpg``, span name ``execscope.cpg``, kind INTERNAL, a root span of a trace
  of its own (never a child of the program's spans);
* ``execscope.cpg.module``, ``execscope.cpg.file``, ``execscope.cpg.code_version`` (strings);
* ``execscope.cpg.encoding`` = ``json+zlib+base64``: ``execscope.cpg.document`` is the document
  compressed with zlib, in base64 (node rows repeat each node's source, which compresses ~8x: a
  large module's rows stay well under the 1 MB a Kafka message holds by default);
* ``execscope.cpg.size``: the document's length in bytes before compression (an attribute value cut
  by an SDK length limit is told from a whole one by it).

A span is made for each module version once per process, through the provider's sampler. The
OpenTelemetry default (``parentbased_always_on``) keeps it as a root span; when the sampler leaves the
root out (``parentbased_traceidratio``: node rows are needed by every sampled trace that runs the
module, whichever traces were sampled), it is made again as the child of a remote sampled parent of a
trace of its own, which every parent-based sampler keeps (its parent span id then names no exported
span). A sampler that is not parent-based and leaves both out loses it: a warning says so once.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import zlib
from collections.abc import Mapping
from typing import Any

from execscope.instrumentation.export.spool import module_document
from execscope.instrumentation.nodes.node_ids import ModuleNodes

SCOPE = "execscope.cpg"
SPAN_NAME = "execscope.cpg"
ENCODING = "json+zlib+base64"
A_MODULE = "execscope.cpg.module"
A_FILE = "execscope.cpg.file"
A_VERSION = "execscope.cpg.code_version"
A_ENCODING = "execscope.cpg.encoding"
A_DOCUMENT = "execscope.cpg.document"
A_SIZE = "execscope.cpg.size"

_log = logging.getLogger("execscope")


class CarrierError(ValueError):
    """A carrier span whose document cannot be read back (cut, corrupt, unknown encoding)."""


def carrier_attributes(nodes: ModuleNodes) -> dict[str, str | int]:
    """The attributes of the carrier span of one module version."""
    doc = module_document(nodes)
    return {
        A_MODULE: nodes.module, A_FILE: nodes.file, A_VERSION: nodes.code_version, A_ENCODING: ENCODING,
        A_DOCUMENT: base64.b64encode(zlib.compress(doc, 6)).decode("ascii"), A_SIZE: len(doc),
    }


def document_from_attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The node document a carrier span holds (``attrs``: its attributes, values as sent or as
    strings). Raises :class:`CarrierError` saying what is wrong."""
    encoding = attrs.get(A_ENCODING)
    if encoding != ENCODING:
        raise CarrierError(f"unknown CPG carrier encoding {encoding!r} (expected {ENCODING!r})")
    try:
        size = int(attrs[A_SIZE])
        data = zlib.decompress(base64.b64decode(str(attrs[A_DOCUMENT]), validate=True))
    except KeyError as exc:
        raise CarrierError(f"CPG carrier span without {exc.args[0]!r}") from exc
    except (ValueError, zlib.error) as exc:  # binascii.Error is a ValueError
        raise CarrierError(f"CPG carrier document unreadable (cut by an attribute length limit?): {exc}") from exc
    if len(data) != size:
        raise CarrierError(f"CPG carrier document is {len(data)} bytes, its span says {size}")
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise CarrierError(f"CPG carrier document is not JSON: {exc}") from exc
    for key in ("module", "file", "code_version", "fields", "nodes"):
        if not isinstance(doc, dict) or key not in doc:
            raise CarrierError(f"CPG carrier document without {key!r}")
    if doc["code_version"] != attrs.get(A_VERSION) or doc["module"] != attrs.get(A_MODULE):
        raise CarrierError("CPG carrier document does not match its span's module and code version")
    return doc


class CpgSpanSink:
    """A node sink for the import hook: each module version's rows as one carrier span of
    ``tracer_provider`` (see the module doc).

    Thread contract: called on the importing thread; never raises (returns False when the span was
    not made or not sampled). Each ``<code_version>:<module>`` is sent once per instance."""

    def __init__(self, tracer_provider: Any, scope_version: str = "") -> None:
        self._tracer = tracer_provider.get_tracer(SCOPE, scope_version)
        self._sent: set[str] = set()
        self._lock = threading.Lock()
        self._warned = False
        self.sent = 0
        self.unsampled = 0

    def __call__(self, nodes: ModuleNodes) -> bool:
        key = f"{nodes.code_version}:{nodes.module}"
        with self._lock:
            if key in self._sent:
                return True
            self._sent.add(key)
        try:
            from opentelemetry.context import Context

            attributes = carrier_attributes(nodes)
            recording = self._emit(attributes, Context())
            if not recording:  # a ratio sampler left the root out: a sampled parent makes parent-based ones keep it
                recording = self._emit(attributes, _sampled_parent())
        except Exception as exc:  # never into the program's import
            _log.warning("execscope: node rows of %s not sent as a span: %s", nodes.module, exc)
            return False
        if recording:
            self.sent += 1
            return True
        self.unsampled += 1
        if not self._warned:
            self._warned = True
            _log.warning("execscope: the tracer provider did not record the node rows of %s (its sampler left "
                         "them out, or it records nothing): spans of module versions whose rows were not sent "
                         "will not join cpg_nodes (a parent-based sampler keeps them)", nodes.module)
        return False

    def _emit(self, attributes: dict[str, str | int], context: Any) -> bool:
        from opentelemetry.trace import SpanKind

        span = self._tracer.start_span(SPAN_NAME, context=context, kind=SpanKind.INTERNAL, attributes=attributes)
        recording = bool(span.is_recording())
        span.end()
        return recording


def _sampled_parent() -> Any:
    """A context whose span is a remote, sampled parent of a trace of its own (never exported: it only
    carries the sampled flag, which parent-based samplers follow)."""
    import random

    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    rng = random.SystemRandom()
    parent = SpanContext(trace_id=rng.getrandbits(128) or 1, span_id=rng.getrandbits(64) or 1, is_remote=True,
                         trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return set_span_in_context(NonRecordingSpan(parent))
