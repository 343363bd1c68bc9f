"""One trace from a recorded client through a real HTTP request to a recorded server, on both paths.

The client's recorded call makes a request with the ``requests`` instrumentation; the server (another
process, a real loopback socket) serves it through the WSGI instrumentation's middleware, then a
recorded handler. The client span must be a child of the recorded call (as stored), the
``traceparent`` the server receives must name that trace, and the server's spans, recorded ones
included, must continue it: under ``execscope run`` (fast core, read back from the store) and under
``opentelemetry-instrument`` (SDK core, console exporter).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.integration.test_run_cli import cli, sql

BIN = Path(sys.executable).parent

SERVER = '''
import os
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware


def handle(environ):
    return environ.get("HTTP_TRACEPARENT", "")


def app(environ, start_response):
    body = handle(environ).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def main(port_file):
    server = make_server("127.0.0.1", 0, OpenTelemetryMiddleware(app), handler_class=Quiet)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_port))
    os.replace(port_file + ".tmp", port_file)
    server.timeout = 60
    server.handle_request()  # one request, then a normal exit (its spans are flushed at exit)
    server.server_close()


if __name__ == "__main__":
    main(sys.argv[1])
'''

CLIENT = '''
import os
import subprocess
import sys
import time

import requests
from opentelemetry.instrumentation.requests import RequestsInstrumentor


def fetch(port):
    with requests.Session() as session:
        session.trust_env = False  # no proxy: the server is on the loopback
        return session.get(f"http://127.0.0.1:{port}/hello", timeout=60).text


def main(workdir):
    if not RequestsInstrumentor().is_instrumented_by_opentelemetry:  # opentelemetry-instrument did it
        RequestsInstrumentor().instrument()
    port_file = os.path.join(workdir, "port")
    with open(os.path.join(workdir, "server.out"), "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "svcapp.server", port_file], stdout=out)
        deadline = time.monotonic() + 120
        while not os.path.exists(port_file) and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.05)
        with open(port_file) as f:
            port = int(f.read())
        print("SERVER-SAW", fetch(port), file=sys.stderr)
        return server.wait(timeout=120)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
'''


@pytest.fixture
def svc(tmp_path: Path) -> Path:
    (tmp_path / "svcapp").mkdir()
    (tmp_path / "svcapp" / "__init__.py").write_text("")
    (tmp_path / "svcapp" / "server.py").write_text(textwrap.dedent(SERVER))
    (tmp_path / "svcapp" / "client.py").write_text(textwrap.dedent(CLIENT))
    return tmp_path


def _env(svc: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["PYTHONPATH"] = str(svc)
    return env


def _server_saw(stderr: str) -> str:
    line = next(ln for ln in stderr.splitlines() if ln.startswith("SERVER-SAW"))
    return line.split()[1]


def _check(spans: list[dict], server_saw: str) -> None:
    """``spans``: {name, kind, trace, span, parent} with hex ids ('' for no parent)."""
    by_name = {}
    for s in spans:
        by_name.setdefault(s["name"], []).append(s)
    (fetch,) = by_name["svcapp.client.fetch"]
    (main,) = by_name["svcapp.client.main"]
    (client,) = [s for s in spans if s["kind"] == "CLIENT"]
    (server,) = [s for s in spans if s["kind"] == "SERVER"]
    (app,) = by_name["svcapp.server.app"]
    (handle,) = by_name["svcapp.server.handle"]
    trace_id = fetch["trace"]
    assert fetch["parent"] == main["span"]
    # the client's own span is a child of the recorded call, as stored
    assert (client["trace"], client["parent"]) == (trace_id, fetch["span"])
    # the request carried that trace, sampled ...
    version, sent_trace, sent_parent, flags = server_saw.split("-")
    assert (version, sent_trace, sent_parent) == ("00", trace_id, client["span"]) and int(flags, 16) & 1
    # ... and the server's spans, its recorded calls included, continue it
    assert (server["trace"], server["parent"]) == (trace_id, client["span"])
    assert (app["trace"], app["parent"]) == (trace_id, server["span"])
    assert (handle["trace"], handle["parent"]) == (trace_id, app["span"])


@pytest.mark.slow
def test_execscope_run_one_trace_across_a_real_http_request(svc: Path) -> None:
    store = f"chdb://{svc / 'db'}"
    proc = cli("run", "--include", "svcapp*", "--store", store, "--", sys.executable, "-m", "svcapp.client",
               str(svc), cwd=svc, env=_env(svc), timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = sql("SELECT SpanName AS name, replaceOne(SpanKind, 'SPAN_KIND_', '') AS kind, TraceId AS trace, "
               "SpanId AS span, ParentSpanId AS parent FROM otel_traces", svc, store)
    _check(rows, _server_saw(proc.stderr))


def _console_spans(text: str) -> list[dict]:
    decoder = json.JSONDecoder()
    spans, i = [], text.find("{")
    while i >= 0:
        obj, end = decoder.raw_decode(text, i)
        spans.append({"name": obj["name"], "kind": obj["kind"].removeprefix("SpanKind."),
                      "trace": obj["context"]["trace_id"].removeprefix("0x"),
                      "span": obj["context"]["span_id"].removeprefix("0x"),
                      "parent": (obj["parent_id"] or "").removeprefix("0x")})
        i = text.find("{", end)
    return spans


@pytest.mark.slow
def test_opentelemetry_instrument_one_trace_across_a_real_http_request(svc: Path) -> None:
    env = {**_env(svc), "EXECSCOPE_INCLUDE": "svcapp*", "OTEL_TRACES_EXPORTER": "console",
           "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", "OTEL_SERVICE_NAME": "svc"}
    proc = subprocess.run([str(BIN / "opentelemetry-instrument"), sys.executable, "-m", "svcapp.client", str(svc)],
                          cwd=svc, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    spans = _console_spans(proc.stdout) + _console_spans((svc / "server.out").read_text())
    _check(spans, _server_saw(proc.stderr))
