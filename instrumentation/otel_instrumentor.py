"""execscope as an OpenTelemetry instrumentor (``opentelemetry_instrumentor`` entry point).

``opentelemetry-instrument python app.py`` loads it with the application's other instrumentations
once the SDK is configured; with ``EXECSCOPE_INCLUDE`` set it rewrites and records the matching
modules through the configured TracerProvider, so spans go wherever the user's OTel configuration
sends them. Without ``EXECSCOPE_INCLUDE`` it does nothing (and says so at debug level).

Environment: ``EXECSCOPE_INCLUDE`` / ``EXECSCOPE_EXCLUDE`` (comma-separated globs),
``EXECSCOPE_LEVEL`` (functions | branches | statements), ``EXECSCOPE_SPOOL`` (optional: also publish
node rows there for ``cpg_nodes``), ``EXECSCOPE_CPG_SPANS`` (default 1: send each recorded module
version's node rows through the same tracer provider as one carrier span, :mod:`.export.cpg_spans`,
so that ``execscope collect`` fills ``cpg_nodes`` whichever collectors carried the spans; 0: not).
Disable like any instrumentor: ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=execscope``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from execscope.instrumentation import instrument, uninstrument
from execscope.instrumentation.process_bootstrap import (
    ENV_EXCLUDE,
    ENV_INCLUDE,
    ENV_LEVEL,
    ENV_SPOOL,
    split_globs,
)

if TYPE_CHECKING:
    from execscope.instrumentation.nodes.node_ids import ModuleNodes
    from execscope.instrumentation.rewrite.import_hook import NodeSink

_log = logging.getLogger("execscope")
ENV_CPG_SPANS = "EXECSCOPE_CPG_SPANS"


class ExecscopeInstrumentor(BaseInstrumentor):
    """``instrument(tracer_provider=..., include=[...], level=...)``; kwargs override the environment."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        include = list(kwargs.get("include") or split_globs(os.environ.get(ENV_INCLUDE)))
        from execscope.instrumentation import process_bootstrap

        if process_bootstrap.recording_active():
            _log.debug("execscope: already recording (execscope run); the instrumentor stands aside")
            return
        if not include:
            _log.debug("execscope: EXECSCOPE_INCLUDE is not set; nothing to instrument")
            return
        from execscope.instrumentation import propagator

        propagator.install()  # the process's hybrid logical clock travels with its trace context
        tracer_provider = kwargs.get("tracer_provider")
        if tracer_provider is None:
            from opentelemetry import trace

            tracer_provider = trace.get_tracer_provider()
        sinks: list[NodeSink] = []
        spool_path = kwargs.get("spool") or os.environ.get(ENV_SPOOL)
        if spool_path:
            from execscope.instrumentation.export.spool import Spool

            sinks.append(Spool(spool_path).write_nodes)
        cpg_spans = kwargs.get("cpg_spans")
        if cpg_spans is None:
            cpg_spans = (os.environ.get(ENV_CPG_SPANS) or "1").strip().lower() not in ("0", "false", "no", "off")
        if cpg_spans:
            from execscope import __version__
            from execscope.instrumentation.export.cpg_spans import CpgSpanSink

            sinks.append(CpgSpanSink(tracer_provider, __version__))
        instrument(include, exclude=list(kwargs.get("exclude") or split_globs(os.environ.get(ENV_EXCLUDE))),
                   level=kwargs.get("level") or os.environ.get(ENV_LEVEL) or "functions",
                   tracer_provider=tracer_provider, node_sink=_fan_out(sinks))

    def _uninstrument(self, **kwargs: Any) -> None:
        uninstrument()


def _fan_out(sinks: list[NodeSink]) -> NodeSink | None:
    """One node sink calling each of ``sinks`` (None for none); each sink's own failure is its own."""
    if len(sinks) <= 1:
        return sinks[0] if sinks else None

    def sink(nodes: ModuleNodes) -> bool:
        ok = True
        for each in sinks:
            try:
                ok = bool(each(nodes)) and ok
            except Exception as exc:  # a failing sink must not keep the others from their rows
                _log.warning("execscope: node rows of %s not published: %s", nodes.module, exc)
                ok = False
        return ok

    return sink
