"""Shared helpers: run source plain and rewritten, record into an in-memory exporter."""

from __future__ import annotations

import ast
import contextlib
import io
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from execscope.instrumentation.capture import runtime
from execscope.instrumentation.capture.ids import PrivateIdGenerator
from execscope.instrumentation.capture.runtime import LEVELS
from execscope.instrumentation.rewrite.rewriter import rewrite_source

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def recorder() -> Iterator[InMemorySpanExporter]:
    """Activates the runtime on a fresh provider; yields the exporter holding finished spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_events=100000), id_generator=PrivateIdGenerator())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    runtime.activate(runtime.Recorder(provider), 3)
    exporter.provider = provider  # type: ignore[attr-defined]
    try:
        yield exporter
    finally:
        runtime.deactivate()
        provider.shutdown()


def load_rewritten(source: str, level: str = "functions", name: str = "sample",
                   file: str = "/virtual/sample.py") -> types.ModuleType:
    """Rewrite dedented ``source`` and execute it as a fresh module named ``name``."""
    source = textwrap.dedent(source)
    tree, _nodes, stats = rewrite_source(source, name, file, LEVELS[level])
    assert stats.unmatched == [], stats.unmatched
    module = types.ModuleType(name)
    module.__file__ = file
    sys.modules[name] = module
    try:
        exec(compile(tree, file, "exec", dont_inherit=True), module.__dict__)
    finally:
        sys.modules.pop(name, None)
    return module


def load_plain(source: str, name: str = "sample", file: str = "/virtual/sample.py") -> types.ModuleType:
    module = types.ModuleType(name)
    module.__file__ = file
    sys.modules[name] = module
    try:
        exec(compile(textwrap.dedent(source), file, "exec", dont_inherit=True), module.__dict__)
    finally:
        sys.modules.pop(name, None)
    return module


def rewritten_text(source: str, level: str, name: str = "m") -> str:
    tree, _nodes, stats = rewrite_source(textwrap.dedent(source), name, "m.py", LEVELS[level])
    assert stats.unmatched == []
    return ast.unparse(tree)


@contextlib.contextmanager
def captured_stdout() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield buf
