"""Span and trace ids drawn from a private random generator.

The OpenTelemetry SDK's default ``RandomIdGenerator`` draws from the global ``random`` module, so
recording a program that seeds ``random`` would change the numbers it sees. execscope's providers
and its fast capture core use this instead. Reseeded from ``os.urandom`` in forked children, so a
parent and its child never hand out the same ids.
"""

from __future__ import annotations

import os
import random

from opentelemetry.sdk.trace.id_generator import IdGenerator


class PrivateIdGenerator(IdGenerator):
    """An ``IdGenerator`` with its own ``random.Random``; thread-safe (CPython's is)."""

    def __init__(self) -> None:
        self._rng = random.Random()
        self.getrandbits = self._rng.getrandbits
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._rng.seed(os.urandom(16))

    def generate_span_id(self) -> int:
        return self._rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._rng.getrandbits(128) or 1


PROCESS_IDS = PrivateIdGenerator()
"""The generator of this process (used by the fast capture core)."""
