"""The compile-time and capture side of execscope, one subpackage (wing) per concern.

* :mod:`.nodes`: parse and node IDs;
* :mod:`.rewrite`: the rewrite, the import hook, scripts run as ``__main__``;
* :mod:`.capture`: the runtime rewritten code calls, the capture cores, safe values, threads, the
  span processor;
* :mod:`.export`: OTLP encoding, the spool, the Kafka exporter;
* :mod:`.analysis`: CFG, CDG, SSA data flow, calls, metrics, CPG rows.

At this top level: :func:`instrument` / :func:`uninstrument`, the process bootstrap that
``execscope run`` starts in every process (:mod:`.process_bootstrap`) and the OpenTelemetry
instrumentor (:mod:`.otel_instrumentor`), which wire the wings together. This package never imports
the collector, the store, the queries or the dashboards.

Public API::

    from execscope.instrumentation import instrument, uninstrument
    instrument(include=["myapp", "myapp.*"], level="branches", tracer_provider=provider)

Modules matching ``include`` that are imported afterwards are rewritten and their calls recorded as
spans of ``tracer_provider`` (default: the global one), so they land wherever that provider's
processors export. Modules imported before ``instrument`` are not rewritten.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from execscope.instrumentation.rewrite.import_hook import InstrumentingFinder, NodeSink

__all__ = ["instrument", "uninstrument", "LEVELS"]
_log = logging.getLogger("execscope")


def __getattr__(name: str) -> Any:
    # The rewriter and the runtime load on first use: processes that only need a submodule (the
    # `execscope run` parent reads spool names and environment variables) start faster.
    if name == "LEVELS":
        from execscope.instrumentation.capture.runtime import LEVELS

        return LEVELS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def instrument(include: Sequence[str], *, exclude: Sequence[str] = (), level: str = "functions",
               tracer_provider: Any = None, node_sink: NodeSink | None = None, stdlib: bool = False,
               cache: bool = True) -> InstrumentingFinder:
    """Start rewriting and recording modules whose names match ``include`` (fnmatch globs).

    Idempotent: a second call replaces the first configuration. Raises ``ValueError`` for an unknown
    ``level``. ``node_sink`` receives every rewritten module's node rows (e.g. a spool writer).
    """
    from execscope.instrumentation.capture import runtime
    from execscope.instrumentation.capture.runtime import LEVELS
    from execscope.instrumentation.rewrite import import_hook
    from execscope.instrumentation.rewrite.import_hook import HookConfig

    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}: expected one of {', '.join(LEVELS)}")
    if tracer_provider is None:
        from opentelemetry import trace

        tracer_provider = trace.get_tracer_provider()
    from execscope import __version__

    config = HookConfig(include=tuple(include), exclude=tuple(exclude), level=LEVELS[level], stdlib=stdlib,
                        cache=cache)
    runtime.activate(runtime.Recorder(tracer_provider, scope_version=__version__), LEVELS[level])
    finder = import_hook.install(config, node_sink)
    early = sorted(name for name in list(sys.modules) if finder.wants(name))
    if early:
        _log.warning("execscope: already imported before instrument(), not rewritten: %s",
                     ", ".join(early[:10]))
    return finder


def uninstrument() -> None:
    """Stop rewriting new imports and stop recording. Idempotent."""
    from execscope.instrumentation.capture import runtime
    from execscope.instrumentation.rewrite import import_hook

    import_hook.uninstall()
    runtime.deactivate()
