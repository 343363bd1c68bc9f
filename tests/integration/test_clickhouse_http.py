"""The loopback ClickHouse HTTP interface (tests/infra/clickhouse_http.py) speaks what a server speaks:
to clickhouse-connect (each compression it negotiates, sessions, bound parameters, settings, query
ids, summaries) and on the wire (query in the URL and data in the body, chunked bodies, the three
ways to authenticate, the error format, GET being read-only)."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import threading
import time
import uuid
from urllib.parse import urlencode, urlsplit

import clickhouse_connect
import pytest

from tests.integration.clickhouse_server import ClickHouseServer


def _request(server: ClickHouseServer, params: dict[str, str], body: bytes | None = None, method: str = "POST",
             headers: dict[str, str] | None = None, auth: str = "basic") -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP request; ``auth``: basic, headers, params or none."""
    headers = dict(headers or {})
    params = dict(params)
    if auth == "basic":
        headers["Authorization"] = "Basic " + base64.b64encode(f"{server.user}:{server.password}".encode()).decode()
    elif auth == "headers":
        headers.update({"X-ClickHouse-User": server.user, "X-ClickHouse-Key": server.password})
    elif auth == "params":
        params.update({"user": server.user, "password": server.password})
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(method, "/?" + urlencode(params), body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.fixture
def database(clickhouse_server: ClickHouseServer) -> str:
    name = f"proto_{uuid.uuid4().hex[:8]}"
    status, _, body = _request(clickhouse_server, {}, f"CREATE DATABASE {name}".encode())
    assert status == 200, body
    status, _, body = _request(clickhouse_server, {"database": name},
                               b"CREATE TABLE t (id UInt32, s String) ENGINE = MergeTree ORDER BY id "
                               b"SETTINGS non_replicated_deduplication_window = 100")
    assert status == 200, body
    return name


@pytest.mark.parametrize("compress", [True, "zstd", "gzip", False])
def test_clickhouse_connect_round_trips_with_each_compression(clickhouse_server: ClickHouseServer, database: str,
                                                            compress: bool | str) -> None:
    client = clickhouse_connect.get_client(dsn=clickhouse_server.dsn(database), compress=compress)
    try:
        rows = [[i, f"row {i} é\t'\\"] for i in range(5000)]
        summary = client.insert("t", rows, column_names=["id", "s"], settings={"insert_deduplication_token": "a"})
        assert summary.written_rows == 5000
        client.insert("t", rows, column_names=["id", "s"], settings={"insert_deduplication_token": "a"})  # retried
        result = client.query("SELECT id, s FROM t WHERE id >= {low:UInt32} ORDER BY id", parameters={"low": 4998})
        assert result.result_rows == [(4998, "row 4998 é\t'\\"), (4999, "row 4999 é\t'\\")]
        assert client.command("SELECT count() FROM t") == 5000  # the retry was dropped
        assert result.summary["query_id"] and int(result.summary["read_rows"]) >= 2
        raw = client.raw_query("SELECT id FROM t ORDER BY id LIMIT 2", fmt="RowBinaryWithNamesAndTypes")
        assert raw.startswith(b"\x01\x02id\x06UInt32") and raw.endswith(b"\x00\x00\x00\x00\x01\x00\x00\x00")
        with pytest.raises(clickhouse_connect.driver.exceptions.DatabaseError, match="max rows: 10"):
            client.query("SELECT number FROM numbers(100)", settings={"max_result_rows": 10})
    finally:
        client.close()


def test_a_response_is_compressed_only_when_asked_and_enabled(clickhouse_server: ClickHouseServer) -> None:
    query = {"query": "SELECT 'x' FROM numbers(1000) FORMAT TabSeparated"}
    status, headers, body = _request(clickhouse_server, query, method="GET", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and "content-encoding" not in headers and body == b"x\n" * 1000
    status, headers, body = _request(clickhouse_server, {**query, "enable_http_compression": "1"}, method="GET",
                                     headers={"Accept-Encoding": "gzip, deflate, lz4"})
    assert status == 200 and headers["content-encoding"] == "lz4"  # the server's preference, not the list's
    status, headers, body = _request(clickhouse_server, {**query, "enable_http_compression": "1"}, method="GET",
                                     headers={"Accept-Encoding": "gzip"})
    assert headers["content-encoding"] == "gzip" and gzip.decompress(body) == b"x\n" * 1000
    assert headers["x-clickhouse-format"] == "TabSeparated" and headers["x-clickhouse-timezone"]


def test_query_in_the_url_with_data_in_a_compressed_chunked_body(clickhouse_server: ClickHouseServer,
                                                                 database: str) -> None:
    url = urlsplit(clickhouse_server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    data = gzip.compress(b"1\tone\n2\ttwo\n")
    params = urlencode({"database": database, "query": "INSERT INTO t (id, s) FORMAT TabSeparated",
                        "query_id": "my-insert"})
    conn.putrequest("POST", "/?" + params)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Content-Encoding", "gzip")
    conn.putheader("X-ClickHouse-User", clickhouse_server.user)
    conn.putheader("X-ClickHouse-Key", clickhouse_server.password)
    conn.endheaders()
    for part in (data[:7], data[7:]):
        conn.send(b"%x\r\n%s\r\n" % (len(part), part))
    conn.send(b"0\r\n\r\n")
    response = conn.getresponse()
    assert response.status == 200, response.read()
    summary = json.loads(response.getheader("X-ClickHouse-Summary"))
    assert summary["written_rows"] == "2" and response.getheader("X-ClickHouse-Query-Id") == "my-insert"
    response.read()
    conn.close()
    # the query's start in the URL, its end in the body; a body with both the INSERT and its data
    start = {"database": database, "query": "SELECT s FROM t WHERE", "param_id": "1"}
    status, _, body = _request(clickhouse_server, start, b"id = {id:UInt32}", headers={}, auth="params")
    assert status == 200 and body == b"one\n"
    status, _, body = _request(clickhouse_server, {"database": database},
                               b"INSERT INTO t FORMAT JSONEachRow\n{\"id\": 3, \"s\": \"three\"}\n", auth="headers")
    assert status == 200, body
    status, _, body = _request(clickhouse_server, {"database": database, "param_id": "3",
                                                   "query": "SELECT s FROM t WHERE id = {id:UInt32}"}, method="GET")
    assert (status, body) == (200, b"three\n")


def test_errors_authentication_and_read_only_get_as_on_a_server(clickhouse_server: ClickHouseServer,
                                                                database: str) -> None:
    status, headers, body = _request(clickhouse_server, {"database": database}, b"SELECT * FROM missing")
    assert status == 404 and headers["x-clickhouse-exception-code"] == "60"
    assert body.decode().startswith("Code: 60. DB::Exception: ") and "(UNKNOWN_TABLE) (version " in body.decode()
    status, headers, body = _request(clickhouse_server, {}, b"SELEC 1")
    assert status == 400 and headers["x-clickhouse-exception-code"] == "62"
    status, headers, body = _request(clickhouse_server, {"no_such_setting": "1"}, b"SELECT 1")
    assert status == 404 and headers["x-clickhouse-exception-code"] == "115"  # UNKNOWN_SETTING
    wrong = _request(ClickHouseServer(clickhouse_server.url, clickhouse_server.user, "wrong"), {}, b"SELECT 1")
    assert wrong[0] == 403 and wrong[1]["x-clickhouse-exception-code"] == "516"
    assert wrong[2].decode().startswith(f"Code: 516. DB::Exception: {clickhouse_server.user}: Authentication failed: "
                                        "password is incorrect, or there is no user with such name. "
                                        "(AUTHENTICATION_FAILED)")
    mixed = _request(clickhouse_server, {"user": "x"}, b"SELECT 1", auth="headers")
    assert mixed[0] == 403 and b"not allowed to use X-ClickHouse HTTP headers and authentication via parameters" in \
        mixed[2]
    status, headers, body = _request(clickhouse_server, {"database": database,
                                                         "query": "INSERT INTO t VALUES (9, 'x')"}, method="GET")
    assert status == 500 and headers["x-clickhouse-exception-code"] == "164"  # READONLY: a GET only reads
    status, _, body = _request(clickhouse_server, {}, b"", method="POST")
    assert status == 400 and b"Empty query" in body


def test_sessions_keep_their_settings_and_serve_one_query_at_a_time(clickhouse_server: ClickHouseServer) -> None:
    client = clickhouse_connect.get_client(dsn=clickhouse_server.dsn(""), session_id=f"s-{uuid.uuid4()}")
    other = clickhouse_connect.get_client(dsn=clickhouse_server.dsn(""))
    try:
        client.command("SET max_threads = 3")
        setting = "SELECT value FROM system.settings WHERE name = 'max_threads'"
        assert client.command(setting) == 3
        assert other.command(setting) != 3  # another session does not see it
        assert client.command("SELECT value FROM system.settings WHERE name = 'max_threads'",
                              settings={"max_threads": 2}) == 2  # a URL setting for one query
        assert client.command(setting) == 3
        session = client.get_client_setting("session_id")
        for _attempt in range(3):  # a probe that takes the session first makes the slow query the refused one
            results: list[tuple[int, dict[str, str], bytes]] = []
            slow = threading.Thread(target=lambda out=results: out.append(_request(
                clickhouse_server, {"session_id": session}, b"SELECT sleepEachRow(0.1) FROM numbers(10)")))
            slow.start()
            time.sleep(0.2 * (_attempt + 1))  # the slow query's head start
            probes = []
            while slow.is_alive() and 500 not in probes:
                probe = _request(clickhouse_server, {"session_id": session}, b"SELECT 1")
                probes.append(probe[0])
            slow.join()
            if results[0][0] == 200:
                break
        assert results[0][0] == 200 and probes[-1] == 500, (results, probes)
        assert probe[1]["x-clickhouse-exception-code"] == "373"  # SESSION_IS_LOCKED
        assert b"is locked by a concurrent client" in probe[2]
        status, headers, _ = _request(clickhouse_server, {"session_id": "never-made", "session_check": "1"},
                                      b"SELECT 1")
        assert headers["x-clickhouse-exception-code"] == "372"  # SESSION_NOT_FOUND
    finally:
        client.close()
        other.close()
