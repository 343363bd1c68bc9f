"""Without chDB: the embedded store says once why it cannot be used, and recording still works.

Two ways chDB fails, simulated in child processes:
- not installed: a ``sitecustomize`` puts a finder before every other that refuses ``chdb``;
- no build for this Python (as on 3.15): a ``chdb`` package whose import prints a pybind11 loader
  message and exits the process, as the real one does, with :data:`CHDB_NEWEST_PYTHON` lowered
  below the running Python by a ``sitecustomize``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from execscope.storage.store import CHDB_NEWEST_PYTHON
from tests.integration.kafka_broker import Broker

EXECSCOPE = [sys.executable, "-m", "execscope"]
LOADER_MESSAGE = "pybind11 non-limited-api: Failed to load library `pybind11nonlimitedapi_chdb` (simulated)"

BLOCKER = '''
import importlib.abc


class _NoChdb(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "chdb" or name.startswith("chdb."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None


import sys

sys.meta_path.insert(0, _NoChdb())
'''

FATAL_CHDB = f'''
import os
import sys

sys.stderr.write({LOADER_MESSAGE!r} + "\\n")
sys.stderr.flush()
os._exit(1)
'''

OLDER_NEWEST = '''
import execscope.storage.store as store

store.CHDB_NEWEST_PYTHON = (3, 9)  # the running Python is newer than any chDB build
'''

WORK = '''
def square(x):
    return x * x


def total(n):
    return sum([square(i) for i in range(n)])
'''

MAIN = '''
import sys

from calc.work import total

if __name__ == "__main__":
    result = total(7)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("chdb", "clickhouse_connect"))
    print("total", result, "loaded", loaded)
'''


def execscope(*args: str, cwd: Path, pythonpath: list[Path], timeout: int = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath)}
    env.pop("EXECSCOPE_STORE", None)
    return subprocess.run([*EXECSCOPE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def not_installed(tmp_path: Path) -> Path:
    site = tmp_path / "no-chdb"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    return site


@pytest.fixture
def no_build(tmp_path: Path) -> Path:
    """A chDB that ends the process on import, and a Python newer than chDB's newest."""
    site = tmp_path / "chdb-without-build"
    (site / "chdb").mkdir(parents=True)
    (site / "chdb" / "__init__.py").write_text(FATAL_CHDB)
    (site / "sitecustomize.py").write_text(OLDER_NEWEST)
    return site


@pytest.fixture
def app(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "calc").mkdir(parents=True)
    (root / "calc" / "__init__.py").write_text("")
    (root / "calc" / "work.py").write_text(textwrap.dedent(WORK))
    (root / "calc" / "main.py").write_text(textwrap.dedent(MAIN))
    return root


def one_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a failed command (no traceback, no loader message)."""
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "pybind11" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: the embedded store (chdb://) needs "), proc.stderr
    assert proc.stderr.count("embedded store") == 1, proc.stderr
    return lines[0]


def says_what_works(message: str) -> None:
    assert "--store http://" in message and "execscope run --exporter kafka" in message, message


def test_store_commands_without_chdb_installed(app: Path, not_installed: Path) -> None:
    for args in (["traces"], ["sql", "SELECT 1"], ["storage", "migrate"]):
        message = one_error(execscope(*args, "--store", f"chdb://{app / 'db'}", cwd=app,
                                      pythonpath=[not_installed, app]))
        if sys.version_info[:2] > CHDB_NEWEST_PYTHON:
            assert "needs Python <= 3.14 (chDB has no build for Python" in message, message
        else:
            assert "needs the chdb package, which is not installed" in message, message
        says_what_works(message)
    assert not (app / "db").exists()  # refused before the store directory is made


def test_python_without_a_chdb_build_gets_one_clear_message(app: Path, no_build: Path) -> None:
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    message = one_error(execscope("sql", "SELECT 1", "--store", f"chdb://{app / 'db'}", cwd=app,
                                  pythonpath=[no_build, app]))
    assert f"needs Python <= 3.9 (chDB has no build for Python {version})" in message, message
    says_what_works(message)
    # execscope run on the default (embedded) store refuses before the program starts
    proc = execscope("run", "--include", "calc.work", "--", sys.executable, "-m", "calc.main", cwd=app,
                     pythonpath=[no_build, app])
    assert "total" not in proc.stdout, proc.stdout
    assert f"needs Python <= 3.9 (chDB has no build for Python {version})" in one_error(proc)


@pytest.mark.xdist_group("kafka")
def test_recording_to_kafka_needs_no_chdb(app: Path, no_build: Path, kafka_broker: Broker, topic: str) -> None:
    """The recorded program, its recording and the Kafka exporter never import chDB (here, importing it
    would end the process)."""
    proc = execscope("run", "--adaptive", "0", "--exporter", "kafka", "--kafka", kafka_broker.bootstrap,
                     "--topic", topic, "--include", "calc.work", "--", sys.executable, "-m", "calc.main",
                     cwd=app, pythonpath=[no_build, app])
    assert proc.returncode == 0, proc.stderr
    assert "total 91 loaded []" in proc.stdout, proc.stdout
    assert "pybind11" not in proc.stderr, proc.stderr
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    names = sorted(s.name for m in consumer for rs in ExportTraceServiceRequest.FromString(m.value).resource_spans
                   for ss in rs.scope_spans for s in ss.spans)
    consumer.close()
    assert names == ["calc.work.square"] * 7 + ["calc.work.total"], names
