"""One real Kafka broker per test session (tests/infra/kafka.sh), shared by the Kafka tests.

Every Kafka test module marks itself ``pytest.mark.xdist_group("kafka")`` (pytest runs with
``--dist loadgroup``), so one xdist worker runs them all and only that worker starts the broker.
The tests are skipped, with the reason shown, only when ``java`` or ``mvn`` is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

KAFKA_SH = Path(__file__).resolve().parents[1] / "infra" / "kafka.sh"
START_TIMEOUT_S = 900  # the first run fetches the jars from Maven Central


@dataclass
class Broker:
    bootstrap: str
    directory: Path

    def _call(self, action: str) -> str:
        proc = subprocess.run(["bash", str(KAFKA_SH), action, str(self.directory)], capture_output=True, text=True,
                              timeout=START_TIMEOUT_S)
        if proc.returncode != 0:
            raise RuntimeError(f"kafka.sh {action} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return proc.stdout

    def stop(self) -> None:
        self._call("stop")

    def start(self) -> None:
        out = self._call("start")
        assert f"bootstrap={self.bootstrap}" in out, out  # same port and data after a restart

    def running(self) -> bool:
        proc = subprocess.run(["bash", str(KAFKA_SH), "status", str(self.directory)], capture_output=True, text=True)
        return proc.returncode == 0


def missing_tools() -> list[str]:
    return [tool for tool in ("java", "mvn") if shutil.which(tool) is None]


def start_broker(directory: Path) -> Broker:
    proc = subprocess.run(["bash", str(KAFKA_SH), "start", str(directory)], capture_output=True, text=True,
                          timeout=START_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"tests/infra/kafka.sh start failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = next((x for x in proc.stdout.splitlines() if x.startswith("bootstrap=")), "")
    if not line:
        raise RuntimeError(f"kafka.sh printed no bootstrap= line: {proc.stdout!r}")
    return Broker(line.split("=", 1)[1], directory)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    missing = missing_tools()
    if missing:
        pytest.skip(f"Kafka integration tests need {' and '.join(missing)} on PATH (a real broker is started "
                    "from Maven Central jars by tests/infra/kafka.sh)")
    broker = start_broker(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def topic() -> str:
    """A fresh topic name per test (the broker is shared)."""
    return f"spans-{uuid.uuid4().hex[:10]}"
