"""A span per test while `execscope run` records a pytest session (entry point ``pytest11``).

Inactive (no hooks run) unless the process is recording (``EXECSCOPE_SPOOL`` set by `execscope run`).
Each test becomes the parent of everything the test calls, so one test is one trace: its span is
named ``test <nodeid>`` and carries ``test.case.name`` and ``test.case.result.status``
(pass / fail / skipped), the OpenTelemetry semantic conventions for tests.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest


def _recording() -> bool:
    return bool(os.environ.get("EXECSCOPE_SPOOL"))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, None]:
    if not _recording():
        yield
        return
    from opentelemetry import trace

    tracer = trace.get_tracer("execscope.pytest")
    attributes = {"test.case.name": item.nodeid, "code.function.name": item.name,
                  "code.file.path": str(getattr(item, "path", "") or "")}
    with tracer.start_as_current_span(f"test {item.nodeid}", attributes=attributes) as span:
        yield
        status = item.stash.get(_STASH, "pass")
        span.set_attribute("test.case.result.status", status)
        if status == "fail":
            span.set_status(trace.Status(trace.StatusCode.ERROR, "test failed"))


_STASH = pytest.StashKey[str]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    if not _recording():
        return
    report = outcome.get_result()
    if report.failed:
        item.stash[_STASH] = "fail"
    elif report.skipped and item.stash.get(_STASH, "pass") != "fail":
        item.stash[_STASH] = "skipped"
