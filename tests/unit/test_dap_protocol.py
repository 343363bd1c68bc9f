"""DAP framing: Content-Length frames in and out; a malformed frame is reported and reading goes on."""

from __future__ import annotations

import io
import json

import pytest

from execscope.dap.protocol import Connection, ProtocolError
from execscope.dap.session import CAPABILITIES, DapSession


def frame(obj: object) -> bytes:
    body = json.dumps(obj).encode() if not isinstance(obj, bytes) else obj
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def read_all(data: bytes) -> list[dict]:
    conn, out = Connection(io.BytesIO(data), io.BytesIO()), []
    while (m := conn.read()) is not None:
        out.append(m)
    return out


def test_frames_round_trip_and_malformed_frames_raise_then_reading_goes_on() -> None:
    out = io.BytesIO()
    Connection(io.BytesIO(), out).event("stopped", {"reason": "step", "text": "é"})
    assert read_all(out.getvalue())[0]["body"]["text"] == "é"
    conn = Connection(io.BytesIO(frame(b"{oops") + frame([1]) + frame({"type": "request"})), io.BytesIO())
    with pytest.raises(ProtocolError, match="not JSON"):
        conn.read()
    with pytest.raises(ProtocolError, match="not a JSON object"):
        conn.read()
    assert conn.read() == {"type": "request"}
    assert conn.read() is None


def test_session_answers_bad_input_and_goes_on() -> None:
    data = (frame(b"nope") + frame({"seq": 1, "type": "request", "command": "initialize"})
            + frame({"seq": 2, "type": "request", "command": "frobnicate"})
            + frame({"seq": 3, "type": "request", "command": "next", "arguments": {}})
            + frame({"seq": 4, "type": "event", "event": "x"})
            + frame({"seq": 5, "type": "request", "command": "disconnect"}))
    out = io.BytesIO()
    DapSession(io.BytesIO(data), out).serve()
    replies = read_all(out.getvalue())
    assert [r.get("success") for r in replies] == [False, True, False, False, False, True]
    assert replies[1]["body"] == CAPABILITIES
    assert "unknown request 'frobnicate'" in replies[2]["message"]
    assert "launch first" in replies[3]["message"]


def test_vscode_manifest_starts_execscope_dap_with_the_launch_attributes_the_session_reads() -> None:
    import inspect
    import subprocess
    import sys
    from pathlib import Path

    from execscope.dap import session

    root = Path(__file__).resolve().parents[2]
    manifest = json.loads((root / "dashboards" / "vscode" / "package.json").read_text())
    debugger = manifest["contributes"]["debuggers"][0]
    assert debugger["type"] == "execscope"
    # VS Code runs: runtime, runtimeArgs, <extension dir>/program, args
    command = [sys.executable, "-m", "execscope", *debugger["runtimeArgs"],
               str(root / "dashboards" / "vscode" / debugger["program"])]
    assert debugger["runtime"] == "execscope"
    done = subprocess.run(command, input=frame({"seq": 1, "type": "request", "command": "initialize"}),
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert read_all(done.stdout)[0]["body"]["supportsStepBack"] is True
    source = inspect.getsource(session.DapSession.on_launch) + inspect.getsource(session.DapSession._record)
    for name in debugger["configurationAttributes"]["launch"]["properties"]:
        assert f'"{name}"' in source, f"launch attribute {name} is not read by the session"
