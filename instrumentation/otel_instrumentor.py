"""execscope as an OpenTelemetry instrumentor (``opentelemetry_instrumentor`` entry point).

``opentelemetry-instrument python app.py`` loads it with the application's other instrumentations
once the SDK is configured; with ``EXECSCOPE_INCLUDE`` set it rewrites and records the matching
modules through the configured TracerProvider, so spans go wherever the user's OTel configuration
sends them. Without ``EXECSCOPE_INCLUDE`` it does nothing (and says so at debug level).

Environment: ``EXECSCOPE_INCLUDE`` / ``EXECSCOPE_EXCLUDE`` (comma-separated globs),
``EXECSCOPE_LEVEL`` (functions | branches | statements), ``EXECSCOPE_SPOOL`` (optional: also publish
node rows there for ``cpg_nodes``). Disable like any instrumentor:
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=execscope``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from execscope.instrumentation import instrument, uninstrument
from execscope.instrumentation.process_bootstrap import (
    ENV_EXCLUDE,
    ENV_INCLUDE,
    ENV_LEVEL,
    ENV_SPOOL,
    split_globs,
)

_log = logging.getLogger("execscope")


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
        node_sink = None
        spool_path = kwargs.get("spool") or os.environ.get(ENV_SPOOL)
        if spool_path:
            from execscope.instrumentation.export.spool import Spool

            node_sink = Spool(spool_path).write_nodes
        instrument(include, exclude=list(kwargs.get("exclude") or split_globs(os.environ.get(ENV_EXCLUDE))),
                   level=kwargs.get("level") or os.environ.get(ENV_LEVEL) or "functions",
                   tracer_provider=kwargs.get("tracer_provider"), node_sink=node_sink)

    def _uninstrument(self, **kwargs: Any) -> None:
        uninstrument()
