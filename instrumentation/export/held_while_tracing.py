"""The program's own SDK spans held, not encoded, while it traces its own allocations.

The fast capture pauses while the program traces allocations with tracemalloc
(:func:`...capture.fast_capture._follow_tracemalloc`): what execscope allocates then would count in
what the program measures. Spans the program makes through the OpenTelemetry SDK (the pytest
plugin's test spans, say) are exported by the SDK's batch processor, from a thread of its own at
times of its own. An export inside the program's window encodes and writes, and on the first export
imports opentelemetry-proto: 0.3-1.3 MB that more-itertools' ``test_repeated_zero_cache_peek_has_bounded_memory``
saw retained (it allows 256 KiB), in 2 of 6 suite runs under a uniform statements plan.

So the SDK exporters hand each batch to a :class:`HeldWhileTracing` first: while tracing is on it
keeps the batch (references to spans that exist already: no copy, no encoding) and the exporter
reports success; the next export after tracing stops takes the held spans first, in order, and
``shutdown`` takes them whatever the tracing. At most :data:`MAX_HELD_SPANS` are held: beyond
that (a program tracing for its whole run, ``-X tracemalloc``), batches are exported as they come.
"""

from __future__ import annotations

import threading
from _tracemalloc import is_tracing  # the C module: ``tracemalloc`` itself is wrapped on import
from collections.abc import Sequence
from typing import Any

MAX_HELD_SPANS = 65536


class HeldWhileTracing:
    """Batches of SDK spans kept back while the program traces allocations. Thread-safe."""

    def __init__(self) -> None:
        self._held: list[Any] = []
        self._lock = threading.Lock()

    def take(self, spans: Sequence[Any], force: bool = False) -> list[Any] | None:
        """The spans to export now, the held ones first; None when ``spans`` were held instead
        (tracing on, fewer than :data:`MAX_HELD_SPANS` held, and not ``force``)."""
        with self._lock:
            if not force and is_tracing() and len(self._held) + len(spans) <= MAX_HELD_SPANS:
                self._held.extend(spans)
                return None
            if not self._held:
                return list(spans)
            out, self._held = self._held, []
            out.extend(spans)
            return out

    def __len__(self) -> int:
        return len(self._held)
