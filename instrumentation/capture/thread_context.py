"""Causal chains across threads: work a recorded call hands to a thread records as that call's child.

A new thread starts with an empty context, so without this every call it makes would begin a trace
of its own, cut off from the call that started it. :func:`install` makes ``threading.Thread.start``
and ``concurrent.futures.ThreadPoolExecutor.submit`` carry two values into the thread (or pool
task): execscope's current call and the OpenTelemetry context, both as they were when the thread was
started (the task submitted), so its calls join that trace (under a test's or a request's span even
when the code starting the thread is not recorded, as OpenTelemetry's threading instrumentation
does). Nothing else of the context moves, and nothing changes when neither a recorded call nor a
valid OTel span is current (the thread runs exactly as before). asyncio needs nothing: a task copies
the context it is created in.

Idempotent; :func:`uninstall` restores the originals. Never raises into the program: if the values
cannot be captured, the thread runs unchanged.
"""

from __future__ import annotations

import contextvars
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from execscope.instrumentation import post_import
from execscope.instrumentation.capture.runtime import current_frame, set_current_frame, sync_current_frame

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

_installed = False
_original_start: Callable[..., Any] | None = None
_original_submit: Callable[..., Any] | None = None


def _in_context(fn: Callable[..., Any], frame: Any, otel_context: Any) -> Callable[..., Any]:
    def run_in_context(*args: Any, **kwargs: Any) -> Any:
        from opentelemetry import context

        previous = current_frame()
        set_current_frame(frame)  # through the active core: it may cache the current frame
        otel_token = context.attach(otel_context) if otel_context is not None else None
        try:
            return fn(*args, **kwargs)
        finally:
            if otel_token is not None:
                try:
                    context.detach(otel_token)
                except Exception:
                    pass
            set_current_frame(previous)

    run_in_context.__wrapped__ = fn  # type: ignore[attr-defined]
    return run_in_context


def _capture() -> tuple[Any, Any] | None:
    """(current call, OTel context) to carry into a new thread; None when there is neither a
    recorded call nor a valid OTel span (a test's, a request's) to continue there."""
    frame = current_frame()
    try:
        from opentelemetry import context, trace

        ctx = context.get_current()
        if frame is None and not trace.get_current_span(ctx).get_span_context().is_valid:
            return None
        return frame, ctx
    except Exception:
        return None if frame is None else (frame, None)


def _start(self: threading.Thread, *args: Any, **kwargs: Any) -> Any:
    assert _original_start is not None
    try:
        captured = _capture()
        if captured is not None:
            self.run = _in_context(self.run, *captured)  # type: ignore[method-assign]
    except Exception:
        pass
    return _original_start(self, *args, **kwargs)


def _submit(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    assert _original_submit is not None
    try:
        captured = _capture()
        if captured is not None:
            fn = _in_context(fn, *captured)
    except Exception:
        pass
    return _original_submit(self, fn, *args, **kwargs)


# Contexts copied for asyncio tasks and callbacks must see the current frame, which a core may keep
# outside the ContextVar for synchronous calls: ``contextvars.copy_context`` (asyncio's Handle and
# Runner use it) and ``BaseEventLoop.create_task`` (Task copies in C) write it there first.
_original_copy: Callable[..., Any] | None = None
_original_create_task: Callable[..., Any] | None = None


def _copy_context() -> contextvars.Context:
    assert _original_copy is not None
    try:
        sync_current_frame()
    except Exception:
        pass
    return _original_copy()


def _create_task(self: Any, *args: Any, **kwargs: Any) -> Any:
    assert _original_create_task is not None
    try:
        sync_current_frame()
    except Exception:
        pass
    return _original_create_task(self, *args, **kwargs)


def _patch_asyncio(base_events: Any) -> None:
    global _original_create_task
    if _installed and _original_create_task is None:
        _original_create_task = base_events.BaseEventLoop.create_task
        base_events.BaseEventLoop.create_task = _create_task


def _patch_thread_pool(thread_module: Any) -> None:
    global _original_submit
    if _installed and _original_submit is None:
        _original_submit = thread_module.ThreadPoolExecutor.submit
        thread_module.ThreadPoolExecutor.submit = _submit


def install() -> None:
    """``threading`` now; ``concurrent.futures.thread`` and ``asyncio.base_events`` now if imported,
    else when they are (see :mod:`..post_import`: most programs never load them, and a recording
    process starts faster without)."""
    global _installed, _original_start, _original_copy
    _installed = True
    if _original_start is None:
        _original_start = threading.Thread.start
        threading.Thread.start = _start  # type: ignore[method-assign]
    if _original_copy is None:
        _original_copy = contextvars.copy_context
        contextvars.copy_context = _copy_context
    post_import.when_imported("concurrent.futures.thread", _patch_thread_pool)
    post_import.when_imported("asyncio.base_events", _patch_asyncio)


def uninstall() -> None:
    global _installed, _original_start, _original_submit, _original_copy, _original_create_task
    _installed = False  # a hook still waiting for its module then patches nothing
    if _original_start is not None:
        threading.Thread.start = _original_start  # type: ignore[method-assign]
        _original_start = None
    thread_module = sys.modules.get("concurrent.futures.thread")
    if _original_submit is not None and thread_module is not None:
        thread_module.ThreadPoolExecutor.submit = _original_submit
        _original_submit = None
    if _original_copy is not None:
        contextvars.copy_context = _original_copy
        _original_copy = None
    base_events = sys.modules.get("asyncio.base_events")
    if _original_create_task is not None and base_events is not None:
        base_events.BaseEventLoop.create_task = _original_create_task
        _original_create_task = None
