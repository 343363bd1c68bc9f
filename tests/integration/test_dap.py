"""`execscope dap` driven by Microsoft's DAP test client (`@vscode/debugadapter-testsupport`, npm) over
stdio, on a fixture recorded with the real `execscope run --level statements`: loops, recursion, a
caught and an uncaught exception, a generator, two threads and a child process. The client script
(tests/dap/dap_client_test.js) checks stops, stacks and values one by one; this test records the
fixture, installs the client with `npm ci` when tests/dap/node_modules is missing, and runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_run_cli import cli

DAP_DIR = Path(__file__).resolve().parents[1] / "dap"


def _node_client() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the DAP client test (@vscode/debugadapter-testsupport)")
    if not (DAP_DIR / "node_modules" / "@vscode" / "debugadapter-testsupport").is_dir():
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=DAP_DIR, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return node


def _execscope_script() -> str:
    script = Path(sys.executable).parent / "execscope"
    assert script.exists(), f"the execscope console script is not installed next to {sys.executable}"
    return str(script)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    work = tmp_path_factory.mktemp("dap")
    program = work / "shopfx.py"
    shutil.copy(DAP_DIR / "fixture_app.py", program)
    store = f"chdb://{work / 'db'}"
    run = cli("run", "--store", store, "--include", "shopfx", "--level", "statements", "--", "python", "shopfx.py",
              cwd=work, check=False)
    assert run.returncode == 1 and "RuntimeError: uncaught at the end" in run.stderr, run.stderr
    assert "(30, 24, [3, 2, 1], -1, 6, 'shop', [3, 60], [3, 6], 0)" in run.stdout
    traces = json.loads(cli("traces", "--store", store, "--format", "json", cwd=work).stdout)
    main = [t for t in traces if t["root"] == "shopfx" and t["errors"] == 1]
    child = [t for t in traces if t["root"] == "shopfx.main"]
    assert len(main) == 1 and len(child) == 1, traces
    # The file changes after recording: the adapter must serve the recorded text.
    program.write_text("# edited after recording\n" + program.read_text())
    return {"STORE": store, "TRACE": main[0]["trace_id"], "CHILD_TRACE": child[0]["trace_id"],
            "FILE": str(program), "WORK": str(work)}


def test_vscode_debugadapter_testsupport_drives_execscope_dap(recorded: dict[str, str]) -> None:
    node = _node_client()
    env = {**os.environ, "EXECSCOPE": _execscope_script(), **recorded}
    done = subprocess.run([node, "dap_client_test.js"], cwd=DAP_DIR, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, f"DAP client failed:\n{done.stdout}\n{done.stderr}"
    assert "all checks passed" in done.stdout


def test_dap_over_tcp_answers_a_malformed_message_and_goes_on(recorded: dict[str, str]) -> None:
    import socket

    proc = subprocess.Popen([_execscope_script(), "dap", "--port", "0", "--store", recorded["STORE"]],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline() if proc.stderr else ""
        assert "listening on 127.0.0.1:" in line, line
        port = int(line.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
            stream = sock.makefile("rwb")

            def send(raw: bytes) -> None:
                stream.write(b"Content-Length: %d\r\n\r\n" % len(raw) + raw)
                stream.flush()

            def read() -> dict:
                length = 0
                while True:
                    header = stream.readline().strip()
                    if not header:
                        break
                    length = int(header.split(b":")[1])
                return json.loads(stream.read(length))

            send(b"{not json")
            bad = read()
            assert bad["success"] is False and "malformed message" in bad["message"]
            send(json.dumps({"seq": 1, "type": "request", "command": "initialize", "arguments": {}}).encode())
            assert read()["body"]["supportsStepBack"] is True
            send(json.dumps({"seq": 2, "type": "request", "command": "launch",
                             "arguments": {"trace": "latest", "store": "chdb:///nonexistent/dir/that/cannot/exist"}}
                            ).encode())
            failed = read()
            assert failed["success"] is False and failed["message"]
            send(json.dumps({"seq": 3, "type": "request", "command": "stackTrace", "arguments": {"threadId": 1}}
                            ).encode())
            assert "launch first" in read()["message"]
            send(json.dumps({"seq": 4, "type": "request", "command": "disconnect", "arguments": {}}).encode())
            assert read()["success"] is True
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_breakpoints_as_query_names_and_in_the_terminal_cinema(recorded: dict[str, str]) -> None:
    import asyncio

    from execscope.cinema_tui import CinemaApp
    from execscope.queries.cinema import open_cinema
    from execscope.storage.store import open_store

    work = Path(recorded["WORK"])
    out = cli("query", "breakpoint-hits", "--store", recorded["STORE"], "-p", f"trace={recorded['TRACE']}",
              "-p", "spec=call Cart.total in loop", "--format", "json", cwd=work).stdout
    calls = json.loads(out)
    assert [(c["kind"], c["function"], c["line"]) for c in calls] == [("call", "shopfx.Cart.total", 14)] * 2
    assert [json.loads(c["locals"])["self"] for c in calls][0] != json.loads(calls[1]["locals"])["self"]
    hits = json.loads(cli("query", "breakpoint-hits", "--store", recorded["STORE"], "-p", f"trace={recorded['TRACE']}",
                          "-p", "spec=shopfx.py:17", "-p", "condition=p > 10", "--format", "json", cwd=work).stdout)
    assert [(json.loads(h["locals"])["p"], json.loads(h["locals"])["t"]) for h in hits] == [("20", "10"), ("30", "30")]
    bad = cli("query", "breakpoint-hits", "--store", recorded["STORE"], "-p", f"trace={recorded['TRACE']}",
              "-p", "spec=call Cart.total in nowhere", cwd=work, check=False)
    assert bad.returncode != 0 and "unknown construct 'nowhere'" in bad.stderr

    async def drive() -> list[int]:
        with open_store(recorded["STORE"]) as store:
            app = CinemaApp(open_cinema(store, recorded["TRACE"]), 0)
            seen = []
            async with app.run_test() as pilot:
                await pilot.press("b")
                await pilot.press(*"shopfx.py:17 if p > 10", "enter")
                for key in ("c", "c", "C"):
                    await pilot.press(key)
                    seen.append(app.index)
            return seen

    seen = asyncio.run(drive())
    assert seen == [hits[0]["position"], hits[1]["position"], hits[0]["position"]]


class _DapSocket:
    """DAP framing over one TCP connection (what an editor sends to `execscope dap --port`)."""

    def __init__(self, port: int) -> None:
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.stream = self.sock.makefile("rwb")
        self.seq = 0

    def request(self, command: str, **arguments: object) -> dict:
        self.seq += 1
        body = json.dumps({"seq": self.seq, "type": "request", "command": command, "arguments": arguments}).encode()
        self.stream.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.stream.flush()
        while True:
            message = self.read()
            assert message is not None, f"the server closed the connection instead of answering {command}"
            if message.get("type") == "response":
                return message

    def read(self) -> dict | None:
        length = 0
        while True:
            header = self.stream.readline()
            if not header:
                return None
            if not header.strip():
                break
            length = int(header.split(b":")[1])
        return json.loads(self.stream.read(length))

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


def test_dap_refuses_a_non_loopback_port_without_a_token(recorded: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EXECSCOPE_TOKEN"}
    done = subprocess.run([_execscope_script(), "dap", "--port", "0", "--host", "0.0.0.0", "--store",
                           recorded["STORE"]], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and "refusing to listen on 0.0.0.0 without a token" in done.stderr, done.stderr
    short = subprocess.run([_execscope_script(), "dap", "--port", "0", "--host", "0.0.0.0", "--token", "short",
                            "--store", recorded["STORE"]], capture_output=True, text=True, timeout=120, env=env)
    assert short.returncode == 2 and "at least 16 characters" in short.stderr, short.stderr


def test_dap_with_a_token_refuses_a_client_without_it(recorded: dict[str, str]) -> None:
    token = "a-test-token-of-32-characters-xx"
    proc = subprocess.Popen([_execscope_script(), "dap", "--port", "0", "--host", "0.0.0.0", "--store",
                             recorded["STORE"]], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "EXECSCOPE_TOKEN": token})
    try:
        line = proc.stderr.readline() if proc.stderr else ""
        assert "listening on 0.0.0.0:" in line, line
        port = int(line.rsplit(":", 1)[1])
        # no token: initialize is answered, launch is refused and the connection ends
        client = _DapSocket(port)
        assert client.request("initialize")["body"]["supportsStepBack"] is True
        refused = client.request("launch", trace="latest")
        assert refused["success"] is False and "unauthorized" in refused["message"]
        assert client.read() is None
        client.close()
        # a wrong token, and a request before any launch: refused the same way
        client = _DapSocket(port)
        assert client.request("launch", trace="latest", token="x" * 32)["success"] is False
        assert client.read() is None
        client.close()
        client = _DapSocket(port)
        early = client.request("stackTrace", threadId=1)
        assert early["success"] is False and "before an authenticated launch" in early["message"]
        assert client.read() is None
        client.close()
        # the token in the launch arguments (a field of the editor's launch configuration)
        client = _DapSocket(port)
        client.request("initialize")
        launched = client.request("launch", trace=recorded["TRACE"], token=token)
        assert launched["success"] is True, launched
        client.request("configurationDone")
        frames = client.request("stackTrace", threadId=1)
        assert frames["success"] is True and frames["body"]["stackFrames"], frames
        assert client.request("disconnect")["success"] is True
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
