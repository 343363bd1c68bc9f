"""One real Kafka broker per test session (tests/infra/kafka.sh), shared by the Kafka tests.

Every Kafka test module marks itself ``pytest.mark.xdist_group("kafka")`` (pytest runs with
``--dist loadgroup``), so one xdist worker runs them all and only that worker starts the broker.
The tests are skipped, with the reason shown, only when ``java`` or ``mvn`` is missing.

An external broker: ``EXECSCOPE_TEST_KAFKA=HOST:PORT`` names a running broker to use instead (its
owner starts and stops it; tests/infra/pythons.sh runs the suite in a chroot that way, the broker on
the host). The tests that stop and restart the broker need a way to ask its owner:
``EXECSCOPE_TEST_KAFKA_CONTROL=DIR``, a directory where a request file ``NAME.req`` holding ``stop``,
``start`` or ``status`` is answered by the owner running ``tests/infra/kafka.sh ACTION`` on its
broker and writing ``NAME.out``, ``NAME.err`` and, last, ``NAME.rc`` (the exit code). Without it those
tests are skipped, saying why.

Besides PLAINTEXT (``bootstrap``) the broker has a SASL_SSL and an SSL listener with a certificate
from a CA of its own (``tls_dir``: ``ca.pem``, ``user``, ``password``; see tests/infra/kafka.sh). An
external broker names them with ``EXECSCOPE_TEST_KAFKA_SASL_SSL=HOST:PORT``,
``EXECSCOPE_TEST_KAFKA_SSL=HOST:PORT`` and ``EXECSCOPE_TEST_KAFKA_TLS_DIR=DIR``; without them the tests
of secured transports are skipped, saying why.

Several xdist workers may share a broker (an external one; or any, whenever the group above does not
hold: with pytest 9.2 and pytest-xdist 3.8, ``--dist loadgroup`` no longer groups, pytest-xdist
issue 1386, and each worker then starts a broker of its own). So each test holds a shared lock on the
broker (a file lock named after its address), and a test that stops it first takes the lock
exclusively (:meth:`Broker.claim_for_restart`): no other test uses the broker while it is down.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

KAFKA_SH = Path(__file__).resolve().parents[1] / "infra" / "kafka.sh"
START_TIMEOUT_S = 900  # the first run fetches the jars from Maven Central
ENV_EXTERNAL = "EXECSCOPE_TEST_KAFKA"
ENV_CONTROL = "EXECSCOPE_TEST_KAFKA_CONTROL"
ENV_SASL_SSL = "EXECSCOPE_TEST_KAFKA_SASL_SSL"
ENV_SSL = "EXECSCOPE_TEST_KAFKA_SSL"
ENV_TLS_DIR = "EXECSCOPE_TEST_KAFKA_TLS_DIR"


@dataclass
class Broker:
    """The session's broker: started here in ``directory``, or external (``directory`` None), then
    stopped and started through its owner's ``control`` directory when there is one."""

    bootstrap: str
    directory: Path | None = None
    control: Path | None = None
    sasl_ssl: str = ""  # HOST:PORT of the SASL_SSL listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)
    ssl: str = ""  # HOST:PORT of the SSL listener
    tls_dir: Path | None = None  # ca.pem (the CA that signed the broker's certificate), user, password
    _lock_fd: int | None = field(default=None, repr=False)  # the running test's lock on the broker

    def require_tls(self) -> None:
        """Skip, saying why, when this broker has no secured listeners known here."""
        if not (self.sasl_ssl and self.ssl and self.tls_dir and (self.tls_dir / "ca.pem").is_file()):
            pytest.skip(f"the broker at {self.bootstrap} is external and {ENV_SASL_SSL}, {ENV_SSL} and "
                        f"{ENV_TLS_DIR} do not name its secured listeners")

    @property
    def ca_file(self) -> Path:
        assert self.tls_dir is not None
        return self.tls_dir / "ca.pem"

    @property
    def sasl_user(self) -> str:
        assert self.tls_dir is not None
        return (self.tls_dir / "user").read_text().strip()

    @property
    def sasl_password(self) -> str:
        assert self.tls_dir is not None
        return (self.tls_dir / "password").read_text().strip()

    @property
    def restartable(self) -> bool:
        return self.directory is not None or self.control is not None

    @property
    def lock_path(self) -> Path:
        return Path(tempfile.gettempdir()) / f"execscope-kafka-{self.bootstrap.replace(':', '-')}.lock"

    def claim_for_restart(self) -> None:
        """For a test that stops and restarts the broker: skip it when that cannot be done from here;
        else wait until no other test (of another xdist worker) uses the broker, and keep it for the
        rest of this test."""
        if not self.restartable:
            pytest.skip(f"the broker at {self.bootstrap} is external ({ENV_EXTERNAL}) and no {ENV_CONTROL} "
                        "lets a test stop and restart it")
        assert self._lock_fd is not None, "use the kafka_broker fixture"
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # from this test's shared lock

    def _run(self, action: str) -> subprocess.CompletedProcess[str]:
        if self.directory is not None:
            return subprocess.run(["bash", str(KAFKA_SH), action, str(self.directory)], capture_output=True,
                                  text=True, timeout=START_TIMEOUT_S)
        if self.control is None:
            raise RuntimeError(f"the broker at {self.bootstrap} is external ({ENV_EXTERNAL}): cannot {action} it "
                               f"without {ENV_CONTROL}")
        name = self.control / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        request = name.with_suffix(".req")
        request.with_suffix(".tmp").write_text(action)
        request.with_suffix(".tmp").rename(request)  # the owner never reads half a request
        rc_file = name.with_suffix(".rc")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not rc_file.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no answer to {action} in {self.control} within {START_TIMEOUT_S} s")
            time.sleep(0.05)
        result = subprocess.CompletedProcess([action], int(rc_file.read_text()),
                                             name.with_suffix(".out").read_text(), name.with_suffix(".err").read_text())
        for suffix in (".rc", ".out", ".err"):
            name.with_suffix(suffix).unlink(missing_ok=True)
        return result

    def _call(self, action: str) -> str:
        proc = self._run(action)
        if proc.returncode != 0:
            raise RuntimeError(f"kafka.sh {action} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return proc.stdout

    def stop(self) -> None:
        self._call("stop")

    def start(self) -> None:
        out = self._call("start")
        assert f"bootstrap={self.bootstrap}" in out, out  # same port and data after a restart
        self.wait_ready()

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Wait until a new topic takes a message. A (re)started broker accepts connections (and
        kafka.sh start returns) before it leads partitions; on a loaded machine that takes seconds, and
        a test would meanwhile see NotLeaderForPartition and read an empty topic."""
        from kafka import KafkaProducer

        topic = f"ready-{uuid.uuid4().hex[:10]}"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                producer = KafkaProducer(bootstrap_servers=self.bootstrap, max_block_ms=10_000)
                try:
                    producer.send(topic, b"ready").get(timeout=30)
                    return
                finally:
                    producer.close(timeout=5)
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the broker at {self.bootstrap} did not take a message within "
                                       f"{timeout_s} s after its restart: {exc!r}") from exc
                time.sleep(0.5)

    def status(self) -> str:
        """kafka.sh status's output (``bootstrap=HOST:PORT`` first, then the secured listeners), or ""
        when it is not running."""
        proc = self._run("status")
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def running(self) -> bool:
        if self.restartable:
            return bool(self.status())
        host, _, port = self.bootstrap.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=5):
                return True
        except OSError:
            return False


def missing_tools() -> list[str]:
    return [tool for tool in ("java", "mvn") if shutil.which(tool) is None]


def start_broker(directory: Path) -> Broker:
    proc = subprocess.run(["bash", str(KAFKA_SH), "start", str(directory)], capture_output=True, text=True,
                          timeout=START_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"tests/infra/kafka.sh start failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    lines = dict(x.split("=", 1) for x in proc.stdout.splitlines() if "=" in x)
    missing = [k for k in ("bootstrap", "sasl_ssl", "ssl", "tls_dir") if not lines.get(k)]
    if missing:
        raise RuntimeError(f"kafka.sh printed no {', '.join(missing)} line: {proc.stdout!r}")
    return Broker(lines["bootstrap"], directory, sasl_ssl=lines["sasl_ssl"], ssl=lines["ssl"],
                  tls_dir=Path(lines["tls_dir"]))


def external_broker() -> Broker | None:
    """The broker named by EXECSCOPE_TEST_KAFKA (and its EXECSCOPE_TEST_KAFKA_CONTROL), if any."""
    bootstrap = os.environ.get(ENV_EXTERNAL, "").strip()
    if not bootstrap:
        return None
    control = os.environ.get(ENV_CONTROL, "").strip()
    if control and not Path(control).is_dir():
        raise RuntimeError(f"{ENV_CONTROL}={control} is not a directory")
    tls_dir = os.environ.get(ENV_TLS_DIR, "").strip()
    return Broker(bootstrap, control=Path(control) if control else None, sasl_ssl=os.environ.get(ENV_SASL_SSL, ""),
                  ssl=os.environ.get(ENV_SSL, ""), tls_dir=Path(tls_dir) if tls_dir else None)


@pytest.fixture
def kafka_broker(kafka_session_broker: Broker) -> Iterator[Broker]:
    """The session's broker, shared with other tests (and workers) until this test claims it."""
    broker = kafka_session_broker
    fd = os.open(broker.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        broker._lock_fd = fd
        yield broker
    finally:
        broker._lock_fd = None
        os.close(fd)


@pytest.fixture(scope="session")
def kafka_session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    external = external_broker()
    if external is not None:
        if not external.running():
            raise RuntimeError(f"no broker answers at {ENV_EXTERNAL}={external.bootstrap}")
        external.wait_ready()
        yield external  # its owner stops it
        return
    missing = missing_tools()
    if missing:
        pytest.skip(f"Kafka integration tests need {' and '.join(missing)} on PATH (a real broker is started "
                    "from Maven Central jars by tests/infra/kafka.sh)")
    broker = start_broker(tmp_path_factory.mktemp("kafka"))
    try:
        broker.wait_ready()  # a fresh broker, too, answers before it leads new partitions
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def topic() -> str:
    """A fresh topic name per test (the broker is shared)."""
    return f"spans-{uuid.uuid4().hex[:10]}"
