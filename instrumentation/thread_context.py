"""Causal chains across threads: work a recorded call hands to a thread records as that call's child.

A new thread starts with an empty context, so without this every call it makes would begin a trace
of its own, cut off from the call that started it. :func:`install` makes ``threading.Thread.start``
and ``concurrent.futures.ThreadPoolExecutor.submit`` carry two values into the thread (or pool
task): execscope's current call and the OpenTelemetry context, both as they were when the thread was
started (the task submitted). Nothing else of the context moves, and nothing changes when no
recorded call is running (the thread runs exactly as before). asyncio needs nothing: a task copies
the context it is created in.

Idempotent; :func:`uninstall` restores the originals. Never raises into the program: if the values
cannot be captured, the thread runs unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from execscope.instrumentation.runtime import current_frame, set_current_frame

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
    frame = current_frame()
    if frame is None:
        return None
    try:
        from opentelemetry import context

        return frame, context.get_current()
    except Exception:
        return frame, None


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


def install() -> None:
    global _original_start, _original_submit
    if _original_start is None:
        _original_start = threading.Thread.start
        threading.Thread.start = _start  # type: ignore[method-assign]
    if _original_submit is None:
        _original_submit = ThreadPoolExecutor.submit
        ThreadPoolExecutor.submit = _submit  # type: ignore[method-assign,assignment]


def uninstall() -> None:
    global _original_start, _original_submit
    if _original_start is not None:
        threading.Thread.start = _original_start  # type: ignore[method-assign]
        _original_start = None
    if _original_submit is not None:
        ThreadPoolExecutor.submit = _original_submit  # type: ignore[method-assign]
        _original_submit = None
