"""Node rows that arrived inside the OTLP data: carrier spans taken out of a request.

The execscope instrumentor sends each recorded module version's node rows as one span of scope
``execscope.cpg`` (:mod:`execscope.instrumentation.export.cpg_spans`), so that they reach the store
whichever collectors carried the trace data (the stock OpenTelemetry Collector writing ``otlp_proto``
to Kafka passes them through untouched). :func:`take_carriers` splits a serialized
``ExportTraceServiceRequest`` into its node documents and the request without those spans: the
documents go to the CPG tables (:meth:`.clickhouse_writer.ClickHouseWriter.write_modules`), the rest
to ``otel_traces`` as usual, so carrier spans never appear among the program's spans.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from execscope.collector.otlp_decode import any_value_to_str, parse_request
from execscope.instrumentation.export.cpg_spans import SCOPE, CarrierError, document_from_attributes

__all__ = ["SCOPE", "Carriers", "take_carriers"]


@dataclass
class Carriers:
    """What :func:`take_carriers` found in one request."""

    rest: bytes
    """The request without its carrier spans, serialized (``b""`` when nothing else was in it)."""
    documents: list[dict[str, Any]] = field(default_factory=list)
    """The node documents read back (the spool's module document: module, file, code_version, fields, nodes)."""
    errors: list[str] = field(default_factory=list)
    """One reason per carrier span whose document could not be read (cut, corrupt)."""
    spans: int = 0
    """Carrier spans taken out (read or not)."""


def take_carriers(payload: bytes) -> Carriers:
    """Split ``payload`` (a serialized ExportTraceServiceRequest) into its carrier spans' documents
    and the rest. Raises :class:`~.otlp_decode.DecodeError` when it is not a request; a carrier
    whose document is unreadable is reported in ``errors`` (and still taken out)."""
    request = parse_request(payload)
    found = Carriers(rest=b"")
    remaining = 0
    for resource_spans in request.resource_spans:
        kept = []
        for scope_spans in resource_spans.scope_spans:
            if scope_spans.scope.name != SCOPE:
                kept.append(scope_spans)
                remaining += len(scope_spans.spans)
                continue
            for span in scope_spans.spans:
                found.spans += 1
                attrs = {kv.key: any_value_to_str(kv.value) for kv in span.attributes}
                try:
                    found.documents.append(document_from_attributes(attrs))
                except CarrierError as exc:
                    found.errors.append(str(exc))
        if len(kept) != len(resource_spans.scope_spans):
            resource_spans.ClearField("scope_spans")
            resource_spans.scope_spans.extend(kept)
    if remaining:
        kept_resources = [rs for rs in request.resource_spans if rs.scope_spans]
        if len(kept_resources) != len(request.resource_spans):
            request.ClearField("resource_spans")
            request.resource_spans.extend(kept_resources)
        found.rest = request.SerializeToString()
    return found
