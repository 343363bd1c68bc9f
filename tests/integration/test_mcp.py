"""``execscope mcp`` through the MCP SDK's own clients: in process (``mcp.Client`` on the server object)
and as a subprocess over stdio (``stdio_client`` + ``ClientSession``). The tool list and schemas, and
every tool's answer value by value on a recorded fixture program (``tax_app``: a wrong value passed
through two calls); a write through ``sql`` is refused by the engine."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, ClientSession, StdioServerParameters, stdio_client

from execscope.mcp_server import build_server
from tests.integration.test_explain import APPS, TAX
from tests.integration.test_run_cli import cli

TOOLS = {"list_traces", "find_failures", "frames", "state_at", "value_history", "why", "hot_paths", "coverage",
         "function_graph", "source", "sql"}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    root = tmp_path_factory.mktemp("mcp")
    shutil.copy(APPS / "tax_app.py", root / "tax_app.py")
    store = f"chdb://{root / 'db'}"
    run = cli("run", "--include", "tax_app", "--level", "statements", "--store", store, "--", "python", "tax_app.py",
              cwd=root, check=False)
    assert run.returncode == 1, run.stderr
    (trace,) = json.loads(cli("traces", "--store", store, "--format", "json", cwd=root).stdout)
    return root, store, trace["trace_id"]


def in_process(store: str, body: Callable[[Client], Awaitable[Any]]) -> Any:
    server = build_server(store, idle_close=None)

    async def main() -> Any:
        async with Client(server) as client:
            return await body(client)

    try:
        return anyio.run(main)
    finally:
        server.holder.close()  # type: ignore[attr-defined]


def call(store: str, name: str, **args: Any) -> dict[str, Any]:
    async def body(client: Client) -> Any:
        result = await client.call_tool(name, args)
        assert not result.is_error, result.content
        text = json.loads(result.content[0].text)  # type: ignore[union-attr]
        assert text == result.structured_content  # the same answer as text and as structured content
        return result.structured_content

    answer: dict[str, Any] = in_process(store, body)
    return answer


def error(store: str, name: str, **args: Any) -> str:
    async def body(client: Client) -> Any:
        result = await client.call_tool(name, args)
        assert result.is_error
        return result.content[0].text  # type: ignore[union-attr]

    message: str = in_process(store, body)
    return message


def test_tools_and_their_schemas(recorded: tuple[Path, str, str]) -> None:
    _root, store, _trace = recorded

    async def body(client: Client) -> Any:
        return (await client.list_tools()).tools

    tools = {t.name: t for t in in_process(store, body)}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.annotations is not None
        assert (tool.annotations.read_only_hint, tool.annotations.destructive_hint,
                tool.annotations.idempotent_hint, tool.annotations.open_world_hint) == (True, False, True, False)
        assert tool.description and tool.input_schema["type"] == "object"
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
    schema = tools["why"].input_schema
    assert schema["required"] == ["trace"]
    assert set(schema["properties"]) == {"trace", "at", "var", "max_steps"}
    assert schema["properties"]["max_steps"] == {"default": 16, "maximum": 200, "minimum": 1, "title": "Max Steps",
                                                 "type": "integer"}
    assert tools["frames"].input_schema["properties"]["count"]["maximum"] == 500
    assert tools["sql"].input_schema["required"] == ["query"]
    assert "readonly" in tools["sql"].description
    assert set(tools["list_traces"].input_schema["properties"]) == {"errors_only", "root", "since", "until", "limit"}
    assert tools["function_graph"].input_schema["properties"]["kinds"]["default"] == ["CFG", "REACHING_DEF"]


def test_list_traces_and_failures(recorded: tuple[Path, str, str]) -> None:
    _root, store, trace = recorded
    answer = call(store, "list_traces", errors_only=True, root="tax", since="1h")
    (row,) = answer["traces"]
    assert (row["trace_id"], row["root"], row["spans"], row["errors"]) == (trace, "tax_app", 6, 3)
    assert answer["returned"] == 1 and answer["left_out"] == ""
    assert call(store, "list_traces", root="nothing-like-it")["traces"] == []
    assert call(store, "list_traces", until="1h")["traces"] == []  # recorded less than an hour ago
    failures = call(store, "find_failures")
    (failure,) = failures["failures"]
    assert {k: failure[k] for k in ("what", "trace_id", "function", "line", "type", "message")} == {
        "what": "raised", "trace_id": trace, "function": "tax_app.check", "line": 23, "type": "ValueError",
        "message": "total 262.5 is over the card limit"}
    frame = call(store, "frames", trace=trace, at=failure["frame"], count=1)["frames"][0]
    assert (frame["kind"], frame["exception"], frame["line"]) == ("exception",
                                                                  "ValueError: total 262.5 is over the card limit", 23)


def test_a_bad_time_is_an_error_saying_so(recorded: tuple[Path, str, str]) -> None:
    _root, store, _trace = recorded
    assert error(store, "list_traces", since="yesterday-ish").endswith(
        "'yesterday-ish' is not a time: give an ISO 8601 time (2026-12-05T10:00) or an age (15m, 2h, 3d)")


def test_frames_state_and_history(recorded: tuple[Path, str, str]) -> None:
    _root, store, trace = recorded
    window = call(store, "frames", trace=trace, function="add_tax", count=10)
    got = [(f["kind"], f["line"], f["locals"], f.get("var"), f.get("value")) for f in window["frames"]]
    assert got == [("call", 12, {"amount": "12.5", "rate": "20"}, None, None),
                   ("line", 13, {"amount": "12.5", "rate": "20"}, None, None),
                   ("assign", 13, {"amount": "12.5", "rate": "20", "tax": "250.0"}, "tax", "250.0"),
                   ("line", 14, {"amount": "12.5", "rate": "20", "tax": "250.0"}, None, None),
                   ("return", 14, {"amount": "12.5", "rate": "20", "tax": "250.0"}, None, "262.5")]
    assert window["total"] == 37 and window["left_out"] == ""
    first = window["frames"][2]["seq"]
    two = call(store, "frames", trace=trace, at=0, count=2)
    assert [f["seq"] for f in two["frames"]] == [0, 1] and two["left_out"] == "more frames from position 2 on (of 37)"
    state = call(store, "state_at", trace=trace, at=first)
    assert [(v["function"], v["variable"], v["value"]) for v in state["variables"]] == [
        ("tax_app", "TAX_TABLE", "{'food': '7', 'books': '7', 'default': '20'}"),
        ("tax_app.main", "rate", "20"),
        ("tax_app.price_line", "amount", "12.5"), ("tax_app.price_line", "rate", "20"),
        ("tax_app.add_tax", "amount", "12.5"), ("tax_app.add_tax", "rate", "20"), ("tax_app.add_tax", "tax", "250.0")]
    history = call(store, "value_history", var="rate", trace=trace)
    assert [(v["function"], v["line"], v["value"]) for v in history["values"]] == [("tax_app.main", 28, "20")]
    assert "outside the trace (0..36)" in error(store, "frames", trace=trace, at=37)
    assert "no recorded frames for trace" in error(store, "frames", trace="0" * 32)


def test_why_is_the_chain_explain_prints(recorded: tuple[Path, str, str]) -> None:
    root, store, trace = recorded
    answer = call(store, "why", trace=trace)
    expected = TAX.replace("TRACE", trace)
    assert answer["text"] == expected
    assert answer["text"] == cli("explain", trace, "--store", store, cwd=root).stdout
    assert answer["subject"] == expected.splitlines()[0]
    sentences = [line.split(". ", 1)[1].strip() for line in expected.splitlines()[1:]]
    assert [s["text"] for s in answer["steps"]] == sentences
    assert answer["left_out"] == ""
    short = call(store, "why", trace=trace, max_steps=3)
    assert len(short["steps"]) == 3 and short["left_out"].startswith("1 inputs not followed (raise max_steps): ")


def test_hot_paths_coverage_graph_and_source(recorded: tuple[Path, str, str]) -> None:
    _root, store, trace = recorded
    hot = call(store, "hot_paths", limit=3)
    assert hot["returned"] == 3 and hot["left_out"] == "more functions than 3 exist; raise limit"
    assert hot["functions"][0]["node_id"] == "tax_app:<module>"
    assert all(f["executions"] == 1 for f in hot["functions"])
    paths = call(store, "hot_paths", function="tax_app:add_tax")["paths"]
    assert [(p["path"], p["calls"], p["example_trace"]) for p in paths] == [("(no branch)", 1, trace)]
    cov = {f["function"]: (f["nodes"], f["nodes_hit"], f["edges"], f["edges_hit"])
           for f in call(store, "coverage", module="tax_app")["functions"]}
    assert cov == {"tax_app:check": (5, 3, 4, 2), "tax_app:<module>": (10, 9, 9, 8), "tax_app:add_tax": (2, 2, 1, 1),
                   "tax_app:main": (3, 3, 2, 2), "tax_app:price_line": (1, 1, 0, 0), "tax_app:tax_rate": (2, 2, 1, 1)}
    graph = call(store, "function_graph", function="tax_app:add_tax")
    version = graph["code_version"]
    assert graph["text"].splitlines() == [
        f"tax_app:add_tax (code version {version})", "nodes:",
        "  L12 tax_app:add_tax [function] def add_tax(amount, rate):",
        "  L12 tax_app:add_tax.entry [entry]", "  L12 tax_app:add_tax.exit [exit]",
        "  L13 assign#0 [assign] tax = amount * rate", "  L13 target#0 [target] tax",
        "  L14 return#0 [return] return amount + tax", "edges:",
        "  tax_app:add_tax.entry -> assign#0  CFG", "  assign#0 -> tax_app:add_tax.exit  CFG exception",
        "  assign#0 -> return#0  CFG", "  return#0 -> tax_app:add_tax.exit  CFG exception",
        "  return#0 -> tax_app:add_tax.exit  CFG return", "  tax_app:add_tax -> assign#0  REACHING_DEF amount",
        "  tax_app:add_tax -> assign#0  REACHING_DEF rate", "  tax_app:add_tax -> return#0  REACHING_DEF amount",
        "  target#0 -> return#0  REACHING_DEF tax"]
    assert (graph["nodes"], graph["edges"], graph["left_out"]) == (6, 9, "")
    assert "unknown edge kinds ['DFG']" in error(store, "function_graph", function="tax_app:add_tax", kinds=["DFG"])
    src = call(store, "source", node_id="tax_app:add_tax", context=1)
    assert src["source"].splitlines() == ["11  ", "12  def add_tax(amount, rate):", "13      tax = amount * rate",
                                          "14      return amount + tax", "15  "]
    assert (src["kind"], src["line"], src["end_line"], src["code_version"]) == ("function", 12, 14, version)
    assert "no node 'tax_app:nope'" in error(store, "source", node_id="tax_app:nope")


def test_sql_is_read_only_by_the_engine_and_bounded(recorded: tuple[Path, str, str]) -> None:
    _root, store, trace = recorded
    answer = call(store, "sql", query="SELECT SpanName, count() AS n FROM otel_traces GROUP BY SpanName ORDER BY 1")
    assert answer["columns"] == ["SpanName", "n"]
    assert answer["rows"] == [{"SpanName": n, "n": 1} for n in ("tax_app", "tax_app.add_tax", "tax_app.check",
                                                                  "tax_app.main", "tax_app.price_line",
                                                                  "tax_app.tax_rate")]
    for write in ("INSERT INTO cpg_sources (code_version, module, file, source) VALUES ('x', 'x', 'x', 'x')",
                  "ALTER TABLE otel_traces DELETE WHERE 1", "DROP TABLE cpg_sources",
                  "CREATE TABLE mcp_probe (a UInt8) ENGINE = Memory"):
        assert "Cannot execute query in readonly mode. (READONLY)" in error(store, "sql", query=write), write
    lifted = error(store, "sql", query="SELECT number FROM system.numbers SETTINGS readonly = 0")
    assert "Cannot modify 'readonly' setting in readonly mode" in lifted
    unlimited = error(store, "sql", query="SELECT 1 SETTINGS max_result_rows = 0")
    assert "Cannot modify 'max_result_rows' setting in readonly mode" in unlimited
    # the store was not changed, and the tools' own session is not read-only
    assert call(store, "sql", query="SELECT count() AS n FROM cpg_sources WHERE code_version = 'x'")["rows"] == [
        {"n": 0}]
    endless = call(store, "sql", query="SELECT number FROM system.numbers", max_rows=5)
    assert endless["rows"] == [{"number": i} for i in range(5)]
    assert endless["left_out"] == "more rows than 5 exist; add LIMIT or aggregate, or raise max_rows"
    big = call(store, "sql", query="SELECT repeat('x', 1000) AS s FROM numbers(1000)", max_rows=1000)
    assert 0 < big["returned"] < 1000 and "cut to keep the answer under 60000 bytes" in big["left_out"]
    assert all(len(r["s"]) == 300 for r in big["rows"])  # each value cut to 300 characters
    assert call(store, "frames", trace=trace, count=1)["returned"] == 1


def test_stdio_subprocess_through_the_sdk_client(recorded: tuple[Path, str, str]) -> None:
    """`execscope mcp` as an agent starts it; the embedded store is released while the server idles."""
    root, store, trace = recorded
    params = StdioServerParameters(command=sys.executable, args=["-m", "execscope", "mcp", "--store", store,
                                                                "--idle-close", "0.5"], cwd=str(root))

    async def main() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            init = await session.initialize()
            assert init.server_info.name == "execscope"
            names = {t.name for t in (await session.list_tools()).tools}
            assert names == TOOLS
            result = await session.call_tool("why", {"trace": trace})
            assert not result.is_error
            assert result.structured_content is not None
            assert result.structured_content["text"] == TAX.replace("TRACE", trace)
            refused = await session.call_tool("sql", {"query": "DROP TABLE otel_traces"})
            assert refused.is_error and "READONLY" in refused.content[0].text  # type: ignore[union-attr]
            await anyio.sleep(1.5)  # idle: the store is closed, so another process may open it
            listed = await anyio.to_thread.run_sync(
                lambda: cli("traces", "--store", store, "--format", "json", cwd=root))
            assert json.loads(listed.stdout)[0]["trace_id"] == trace
            again = await session.call_tool("list_traces", {})
            assert again.structured_content is not None and again.structured_content["returned"] == 1

    started = time.monotonic()
    anyio.run(main)
    assert time.monotonic() - started < 120


def test_streamable_http_transport(recorded: tuple[Path, str, str]) -> None:
    root, store, trace = recorded
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "execscope", "mcp", "--transport", "http", "--port", str(port),
                             "--store", store], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)

        async def main() -> Any:
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                names = {t.name for t in (await client.list_tools()).tools}
                failures = await client.call_tool("find_failures", {"trace": trace})
                return names, failures.structured_content

        names, failures = anyio.run(main)
        assert names == TOOLS
        assert [(f["function"], f["line"]) for f in failures["failures"]] == [("tax_app.check", 23)]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_http_transport_refuses_a_non_loopback_address_without_a_token(recorded: tuple[Path, str, str]) -> None:
    root, store, _trace = recorded
    env = {k: v for k, v in os.environ.items() if k != "EXECSCOPE_TOKEN"}
    done = subprocess.run([sys.executable, "-m", "execscope", "mcp", "--transport", "http", "--host", "0.0.0.0",
                           "--store", store], cwd=root, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and "refusing to listen on 0.0.0.0 without a token" in done.stderr, done.stderr


def test_http_transport_with_a_token_refuses_a_client_without_it(recorded: tuple[Path, str, str]) -> None:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    root, store, trace = recorded
    token = "a-test-token-of-32-characters-xx"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "execscope", "mcp", "--transport", "http", "--host", "0.0.0.0",
                             "--port", str(port), "--token", token, "--store", store], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                      "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                 "clientInfo": {"name": "t", "version": "0"}}}
        headers = {"Accept": "application/json, text/event-stream"}
        for sent in ({}, {"Authorization": "Bearer " + "x" * 32}, {"Authorization": token}):
            answer = httpx2.post(url, json=initialize, headers={**headers, **sent}, timeout=30)
            assert answer.status_code == 401 and "unauthorized" in answer.text, (sent, answer.status_code)

        async def main() -> Any:
            async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http:
                async with Client(streamable_http_client(url, http_client=http)) as client:
                    failures = await client.call_tool("find_failures", {"trace": trace})
                    return failures.structured_content

        failures = anyio.run(main)
        assert [(f["function"], f["line"]) for f in failures["failures"]] == [("tax_app.check", 23)]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
