"""The program's own SDK spans held, not encoded, while it traces its own allocations.

The fast capture pauses while the program traces allocations with tracemalloc
(:func:`...capture.fast_capture._follow_tracemalloc`): what execscope allocates then would count in
what the program measures. Spans the program makes through the OpenTelemetry SDK (the pytest
plugin's test spans, say) are exported by the SDK's batch processor, from a thread of its own at
times of its own. An export inside the program's window encodes and writes, and on the first export
imports opentelemetry-proto: 0.3-1.3 MB that more-itertools' ``test_repeated_zero_cache_peek_has_bounded_memory``
saw retained (it allows 256 KiB), in 2 of 6 suite runs under a uniform statements plan (the uniform
runs of ``tests/benchmarks/bench_planner.py more-itertools``; 3.1 MB in
``tests/unit/test_held_while_tracing.py``'s fresh interpreter).

So the SDK exporters hand each batch to a :class:`HeldWhileTracing` first: while tracing is on it
keeps the batch (references to spans that exist already: no copy, no encoding) and the exporter
reports success; the next export after tracing stops takes the held spans first, in order, and
``shutdown`` takes them whatever the tracing, and so does an export once the process exits. An
export under way when the program asks to start tracing is waited for (:func:`exporting`): one that
began just before had imported protobuf into the program's window in 1 of 3 suite runs. At most
:data:`MAX_HELD_SPANS` are held: beyond that (a program tracing for its whole run, ``-X
tracemalloc``), batches are exported as they come.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from opentelemetry.sdk.trace.export import SpanExportResult

from execscope.instrumentation.capture import fast_capture

MAX_HELD_SPANS = 65536

_busy: dict[int, int] = {}  # thread id -> exports under way in it
_idle = threading.Condition()


@contextlib.contextmanager
def exporting() -> Iterator[None]:
    """Around an export's encoding and writing: ``tracemalloc.start()`` waits for it to end
    (:func:`wait_idle`), as it waits for the capture worker's drain."""
    me = threading.get_ident()
    with _idle:
        _busy[me] = _busy.get(me, 0) + 1
    try:
        yield
    finally:
        with _idle:
            if _busy[me] == 1:
                del _busy[me]
            else:
                _busy[me] -= 1
            _idle.notify_all()


def wait_idle(timeout_s: float) -> bool:
    """Until no other thread is exporting (False after ``timeout_s``)."""
    me = threading.get_ident()
    with _idle:
        return _idle.wait_for(lambda: not (_busy.keys() - {me}), timeout_s)


fast_capture.add_idle_waiter(wait_idle)


class HeldWhileTracing:
    """Batches of SDK spans kept back while the program traces allocations. Thread-safe."""

    def __init__(self) -> None:
        self._held: list[Any] = []
        self._lock = threading.Lock()

    def take(self, spans: Sequence[Any], force: bool = False) -> list[Any] | None:
        """The spans to export now, the held ones first; None when ``spans`` were held instead
        (inside the program's allocation window, fewer than :data:`MAX_HELD_SPANS` held, and not
        ``force``)."""
        with self._lock:
            if (not force and fast_capture.allocation_window()
                    and len(self._held) + len(spans) <= MAX_HELD_SPANS):
                self._held.extend(spans)
                return None
            if not self._held:
                return list(spans)
            out, self._held = self._held, []
            out.extend(spans)
            return out

    def export(self, spans: Sequence[Any], write: Callable[[list[Any]], SpanExportResult]) -> SpanExportResult:
        """An exporter's ``export``: ``spans`` held (success), or written by ``write`` with the held
        ones first, as an export under way (:func:`exporting`)."""
        batch = self.take(spans)
        if batch is None:
            return SpanExportResult.SUCCESS
        with exporting():
            return write(batch)

    def __len__(self) -> int:
        return len(self._held)
