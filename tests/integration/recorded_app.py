"""One program recorded once per test session with the real ``execscope run --level statements``:
threads, recursion, an exception caught in the function that raised it and one that ends the
program. The dashboard and HTML-cinema tests read it (they share the xdist group ``recording``,
so one worker records it)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_run_cli import cli

APP = """\
import threading


def fact(n):
    if n <= 1:
        return 1
    r = n * fact(n - 1)
    return r


def risky(x):
    try:
        if x < 0:
            raise ValueError("neg")
        y = x * 2
    except ValueError:
        y = -1
    return y


def worker(k, out):
    s = 0
    for i in range(k):
        s += i
    out.append(s)


def explode(total):
    if total > 1000:
        return 0
    raise RuntimeError(f"total too large: {total}")


def main():
    a = fact(4)
    b = risky(5)
    c = risky(-2)
    out = []
    threads = [threading.Thread(target=worker, args=(k, out)) for k in (3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = a + b + c + sum(out)
    return explode(total)


if __name__ == "__main__":
    main()
"""


@dataclass(frozen=True)
class Recording:
    root: Path
    store: str
    trace: str


@pytest.fixture(scope="session")
def recorded_app(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    root = tmp_path_factory.mktemp("recorded_app")
    (root / "dash_app.py").write_text(APP)
    store = f"chdb://{root / 'db'}"
    proc = cli("run", "--include", "dash_app", "--level", "statements", "--store", store, "--",
               "python", "dash_app.py", cwd=root, check=False)
    assert proc.returncode == 1 and "RuntimeError: total too large: 42" in proc.stderr, proc.stderr
    traces = json.loads(cli("traces", "--store", store, "--format", "json", cwd=root).stdout)
    trace = next(t["trace_id"] for t in traces if t["root"] == "dash_app")
    return Recording(root, store, trace)
