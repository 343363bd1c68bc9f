"""The ecosystem's own entry points: `opentelemetry-instrument` and instrument() from code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

BIN = Path(sys.executable).parent


def test_opentelemetry_instrument_records_next_to_other_instrumentations(tmp_path: Path) -> None:
    (tmp_path / "oiapp.py").write_text(textwrap.dedent('''
        def work(x, api_key="k"):
            if x > 1:
                return x + 1
            return 0
        print("result", work(41))
    '''))
    env = {**os.environ, "EXECSCOPE_INCLUDE": "oiapp", "EXECSCOPE_LEVEL": "branches",
           "OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
           "OTEL_SERVICE_NAME": "oi-test", "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([str(BIN / "opentelemetry-instrument"), sys.executable, "-c", "import oiapp"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "result 42" in proc.stdout
    decoder = json.JSONDecoder()
    text = proc.stdout[proc.stdout.index("{"):]
    spans = []
    while text.strip():
        obj, end = decoder.raw_decode(text)
        spans.append(obj)
        text = text[end:].lstrip()
    work = next(s for s in spans if s["name"] == "oiapp.work")
    assert work["attributes"]["execscope.node_id"] == "oiapp:work"
    assert work["attributes"]["execscope.arg.x"] == "41"
    assert work["attributes"]["execscope.arg.api_key"] == "<redacted>"
    assert work["resource"]["attributes"]["service.name"] == "oi-test"
    assert [e["attributes"]["execscope.node_id"] for e in work["events"]] == ["oiapp:work:if#0.true"]


def test_disabled_by_otel_python_disabled_instrumentations(tmp_path: Path) -> None:
    (tmp_path / "oiapp.py").write_text("def work():\n    return 1\nwork()\n")
    env = {**os.environ, "EXECSCOPE_INCLUDE": "oiapp", "OTEL_TRACES_EXPORTER": "console",
           "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", "PYTHONPATH": str(tmp_path),
           "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "execscope"}
    proc = subprocess.run([str(BIN / "opentelemetry-instrument"), sys.executable, "-c", "import oiapp"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "oiapp.work" not in proc.stdout


def test_otel_python_context_selects_the_execscope_runtime_context(tmp_path: Path) -> None:
    # the opentelemetry_context entry point: the recorded call is current from the very first import
    code = ("from opentelemetry import context; rc = context._RUNTIME_CONTEXT; "
            "t = context.attach(context.set_value('k', 1)); v = context.get_value('k'); context.detach(t); "
            "print(type(rc).__module__, type(rc).__name__, v, context.get_value('k'))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OTEL_PYTHON_CONTEXT": "execscope"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["execscope.instrumentation.capture.otel_context", "ExecscopeRuntimeContext",
                                   "1", "None"]


def test_node_rows_travel_as_one_carrier_span_unless_turned_off(tmp_path: Path) -> None:
    (tmp_path / "oiapp.py").write_text("def work():\n    return 1\nwork()\n")
    env = {**os.environ, "EXECSCOPE_INCLUDE": "oiapp", "OTEL_TRACES_EXPORTER": "console",
           "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", "PYTHONPATH": str(tmp_path)}
    names = []
    for switch in ("", "0"):
        proc = subprocess.run([str(BIN / "opentelemetry-instrument"), sys.executable, "-c", "import oiapp"],
                              cwd=tmp_path, env={**env, "EXECSCOPE_CPG_SPANS": switch}, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        decoder, text, spans = json.JSONDecoder(), proc.stdout[proc.stdout.index("{"):], []
        while text.strip():
            obj, end = decoder.raw_decode(text)
            spans.append(obj)
            text = text[end:].lstrip()
        names.append(sorted(s["name"] for s in spans))
        carrier = [s for s in spans if s["name"] == "execscope.cpg"]
        if carrier:
            assert carrier[0]["attributes"]["execscope.cpg.module"] == "oiapp" and carrier[0]["parent_id"] is None
    assert names == [["execscope.cpg", "oiapp.work"], ["oiapp.work"]]
