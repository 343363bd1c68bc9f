"""Recording set up from the environment, in every process `execscope run` starts.

``execscope run`` puts ``execscope/bootstrap`` on ``PYTHONPATH``; its ``sitecustomize`` calls
:func:`start_from_environment` in the program and in every Python child it starts (subprocesses,
multiprocessing workers of any start method, pytest-xdist workers), because they inherit the
environment:

``EXECSCOPE_SPOOL``    spool directory (required; its presence turns recording on)
``EXECSCOPE_INCLUDE``  comma-separated module globs to rewrite
``EXECSCOPE_EXCLUDE``  comma-separated module globs to leave alone
``EXECSCOPE_LEVEL``    functions | branches | statements
``EXECSCOPE_SERVICE``  ``service.name`` of the resource
``EXECSCOPE_FLUSH_MS`` batch delay in milliseconds (bounds what a crash can lose; default 500)
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import Any

ENV_SPOOL = "EXECSCOPE_SPOOL"
ENV_INCLUDE = "EXECSCOPE_INCLUDE"
ENV_EXCLUDE = "EXECSCOPE_EXCLUDE"
ENV_LEVEL = "EXECSCOPE_LEVEL"
ENV_SERVICE = "EXECSCOPE_SERVICE"
ENV_FLUSH_MS = "EXECSCOPE_FLUSH_MS"
MAX_EVENTS_PER_SPAN = 65536

_provider: Any = None


def split_globs(value: str | None) -> list[str]:
    return [g.strip() for g in (value or "").split(",") if g.strip()]


def make_tracer_provider(service: str, exporter: Any, flush_ms: int = 500) -> Any:
    """A TracerProvider that keeps statement-level event volumes and batches into ``exporter``."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        span_limits=SpanLimits(max_events=MAX_EVENTS_PER_SPAN, max_span_attributes=512),
        shutdown_on_exit=True,
    )
    provider.add_span_processor(BatchSpanProcessor(
        exporter, max_queue_size=1 << 17, schedule_delay_millis=flush_ms, max_export_batch_size=4096))
    return provider


def start_from_environment() -> bool:
    """Configure recording from the environment; returns False when not asked to record."""
    global _provider
    spool_path = os.environ.get(ENV_SPOOL)
    include = split_globs(os.environ.get(ENV_INCLUDE))
    if not spool_path or not include or _provider is not None:
        return False
    from opentelemetry import trace

    from execscope.instrumentation import instrument, runtime
    from execscope.instrumentation.spool import Spool
    from execscope.instrumentation.spool_exporter import SpoolSpanExporter

    spool = Spool(spool_path)
    service = os.environ.get(ENV_SERVICE) or "execscope"
    flush_ms = int(os.environ.get(ENV_FLUSH_MS) or 500)
    _provider = make_tracer_provider(service, SpoolSpanExporter(spool), flush_ms)
    trace.set_tracer_provider(_provider)
    instrument(include, exclude=split_globs(os.environ.get(ENV_EXCLUDE)),
               level=os.environ.get(ENV_LEVEL) or "functions", tracer_provider=_provider,
               node_sink=spool.write_nodes)
    _flush_forked_multiprocessing_children()
    if "--multiprocessing-fork" in getattr(sys, "orig_argv", sys.argv):
        runtime.set_root_end_hook(_flush_soon)  # spawned worker: may be terminated at any time
    atexit.register(_flush)
    return True


def _flush_soon() -> None:
    if _provider is not None:
        try:
            _provider.force_flush(1000)
        except Exception:
            pass


def _flush() -> None:
    if _provider is not None:
        try:
            _provider.force_flush(5000)
        except Exception:
            pass


def _flush_forked_multiprocessing_children() -> None:
    from execscope.instrumentation import runtime

    # A forked multiprocessing child ends with os._exit(), skipping atexit; its finalizers still run.
    # Process._bootstrap clears finalizers after the fork, then runs the after-fork callbacks, so the
    # finalizer is registered from one of those (multiprocessing is only touched if already loaded).
    def _register(_: object) -> None:
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            mp_util.Finalize(None, _flush, exitpriority=-100)

    def _after_fork_in_child() -> None:
        runtime.set_root_end_hook(_flush_soon)  # forked children are often ended without atexit
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            mp_util.register_after_fork(sys.modules[__name__], _register)

    os.register_at_fork(after_in_child=_after_fork_in_child)
