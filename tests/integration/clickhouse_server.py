"""Store addresses for the store-facing tests: the embedded engine (``chdb://``) and a ClickHouse server
(``http://``), the latter served by the loopback ClickHouse HTTP interface over chDB
(tests/infra/clickhouse_http.py), one server process per test session (per xdist worker), started
only when a test asks for an ``http://`` address.

* ``store_kind``: ``"chdb"`` or ``"http"``; a test using ``new_store`` runs once for each.
* ``new_store(name)``: the address of a new, empty store (its own database on the server).
* ``clickhouse_server``: the running server (url, user, password, ``dsn(database)``).

An external server: ``EXECSCOPE_TEST_CLICKHOUSE=http://user:pass@host:port`` names one to use instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

SERVER = Path(__file__).resolve().parents[1] / "infra" / "clickhouse_http.py"
ENV_EXTERNAL = "EXECSCOPE_TEST_CLICKHOUSE"
START_TIMEOUT_S = 60
USER, PASSWORD = "execscope", "s3cret:pw@x"  # characters a DSN must carry escaped


@dataclass(frozen=True)
class ClickHouseServer:
    url: str  # http://host:port
    user: str
    password: str

    def dsn(self, database: str) -> str:
        from urllib.parse import quote

        url = urlsplit(self.url)
        return f"{url.scheme}://{quote(self.user, safe='')}:{quote(self.password, safe='')}@{url.netloc}/{database}"


def start_server(directory: Path, user: str = USER, password: str = PASSWORD,
                 *extra: str) -> tuple[subprocess.Popen[str], str]:
    """Start a server process on a free loopback port; returns it and its url (``url=`` on its stdout).
    ``extra``: more arguments of tests/infra/clickhouse_http.py (``--tls-cert``, ``--tls-key``)."""
    proc = subprocess.Popen([sys.executable, str(SERVER), "--path", str(directory / "data"), "--user", user,
                             "--password", password, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT_S
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the server prints its url once the engine is up
    if not line.startswith("url=") or time.monotonic() > deadline:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise RuntimeError(f"the ClickHouse HTTP test server did not start: {line!r} {err[-2000:]}")
    return proc, line.strip()[len("url="):]


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    external = os.environ.get(ENV_EXTERNAL)
    if external:
        parts = urlsplit(external)
        yield ClickHouseServer(f"{parts.scheme}://{parts.hostname}:{parts.port}", parts.username or "default",
                               parts.password or "")
        return
    proc, url = start_server(tmp_path_factory.mktemp("clickhouse-server"))
    try:
        yield ClickHouseServer(url, USER, PASSWORD)
    finally:
        stop_server(proc)


@pytest.fixture(params=["chdb", "http"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_store(request: pytest.FixtureRequest, store_kind: str, tmp_path: Path) -> Callable[[str], str]:
    """``new_store(name)``: the address of a new empty store of this test's kind (``chdb://`` under
    tmp_path, or a database of its own on the session's server, created by the store when opened)."""
    if store_kind == "chdb":
        return lambda name="db": f"chdb://{tmp_path / name}"
    server: ClickHouseServer = request.getfixturevalue("clickhouse_server")
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return lambda name="db": server.dsn(f"{prefix}_{name.replace('-', '_').replace('/', '_')}")
