"""The stock OpenTelemetry Collector (tests/infra/otelcol.sh) for the tests that put it in the loop.

The session fixture :func:`otelcol_binary` builds the collector once (ocb from the Go module proxy;
cached, ~2 minutes cold) and :class:`Collector` runs it with a configuration a test writes, on
loopback ports picked here. A failed build fails the tests; they are skipped, saying why, only when
``go`` is missing and no prebuilt binary is named by ``EXECSCOPE_TEST_OTELCOL`` (tests/infra/pythons.sh
hands the host's build into its chroot that way).

The collector logs as JSON lines (``service.telemetry.logs.encoding: json``), so the debug
exporter's output is read line by line: :meth:`Collector.debug_spans` sums its ``Traces`` entries,
:meth:`Collector.debug_span_ids` reads the span ids of its ``detailed`` output; its own metrics
(``otelcol_*``) are read from its Prometheus endpoint (:meth:`Collector.metric`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

OTELCOL_SH = Path(__file__).resolve().parents[1] / "infra" / "otelcol.sh"
BUILD_TIMEOUT_S = 1500
ENV_BINARY = "EXECSCOPE_TEST_OTELCOL"
_SPAN_ID = re.compile(r"^\s+ID\s+: ([0-9a-f]{16})$", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def otelcol_binary() -> Path:
    """The collector binary: ``EXECSCOPE_TEST_OTELCOL``, else built by tests/infra/otelcol.sh."""
    named = os.environ.get(ENV_BINARY, "").strip()
    if named:
        path = Path(named)
        if not os.access(path, os.X_OK):
            pytest.fail(f"{ENV_BINARY}={named} is not an executable collector")
        return path
    if shutil.which("go") is None:
        pytest.skip("go not found: the stock OpenTelemetry Collector is built with ocb from the Go module proxy "
                    f"(or name a built one in {ENV_BINARY})")
    proc = subprocess.run(["bash", str(OTELCOL_SH), "build"], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    if proc.returncode != 0:
        pytest.fail(f"tests/infra/otelcol.sh build failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


class Collector:
    """One running collector. ``config`` is its YAML (JSON is YAML) with ``service.telemetry`` set
    here: JSON logs at info, metrics on a loopback Prometheus port."""

    def __init__(self, binary: Path, config: dict[str, Any], directory: Path) -> None:
        self.metrics_port = free_port()
        service = config.setdefault("service", {})
        service["telemetry"] = {
            # unsampled: the debug exporter's output is counted from the log
            "logs": {"level": "info", "encoding": "json", "sampling": {"enabled": False}},
            "metrics": {"level": "detailed", "readers": [{"pull": {"exporter": {"prometheus": {
                "host": "127.0.0.1", "port": self.metrics_port}}}}]},
        }
        self.config_path = directory / "otelcol.json"
        self.config_path.write_text(json.dumps(config, indent=1))
        self.log_path = directory / "otelcol.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(binary), "--config", str(self.config_path)], stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while "Everything is ready" not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise AssertionError(f"the collector exited ({self.proc.returncode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the collector was not ready within {timeout_s} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def entries(self) -> list[dict[str, Any]]:
        """The collector's log entries (JSON lines; other lines are skipped)."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def debug_spans(self) -> int:
        """Spans the debug exporter has printed so far (its ``Traces`` entries' counts)."""
        return sum(int(e.get("spans", 0)) for e in self.entries() if e.get("msg") == "Traces")

    def debug_span_ids(self) -> list[str]:
        """Span ids in the debug exporter's ``detailed`` output, in order, repeats kept."""
        return [m for e in self.entries() for m in _SPAN_ID.findall(str(e.get("msg", "")))]

    def metrics_text(self) -> str:
        """The collector's own metrics, in the Prometheus text format ('' when unreachable)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
                return str(response.read().decode())
        except OSError:
            return ""

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include ``labels`` (0 when it has none)."""
        total = 0.0
        for line in self.metrics_text().splitlines():
            if not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, label_text = head.partition("{")
            if metric != name:
                continue
            found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', label_text))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(value)
        return total

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (the collector drains its batch processor and exporters), then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


def wait_for(condition: Any, timeout_s: float, what: str, collector: Collector | None = None,
             poll_s: float = 0.2) -> None:
    """Poll ``condition`` until true; else fail saying ``what``, with the collector's metrics and log."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            detail = ""
            if collector is not None:
                samples = [line for line in collector.metrics_text().splitlines()
                           if line.startswith("otelcol_") and ("span" in line or "record" in line)]
                detail = "\nmetrics:\n" + "\n".join(samples) + "\nlog:\n" + collector.log_tail()
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}{detail}")
        time.sleep(poll_s)

