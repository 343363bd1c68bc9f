"""A ClickHouse HTTP interface on loopback, over the real engine in chDB: the server path's test double.

There is no ClickHouse server package on these machines, so the store's ``http://`` path is tested
against this: a real HTTP server speaking the protocol clickhouse-connect (and curl) speak to
``clickhouse-server`` on port 8123, executing every statement on the chDB engine (the same
ClickHouse code as the server). What it implements, as the server does (``src/Server/HTTPHandler.cpp``):

* the query in the POST body, in the ``query`` URL parameter, or both (the parameter, a line break,
  then the body); an ``INSERT ... FORMAT fmt`` takes its data from the body after the query (ingested
  with ``INSERT ... FROM INFILE``, so any input format the engine reads works);
* ``param_NAME`` bound parameters (``{NAME:Type}`` placeholders, bound by the engine), ``database``
  (or the ``X-ClickHouse-Database`` header), ``default_format`` (or ``X-ClickHouse-Format``), and
  every other parameter that is not reserved as a setting for that query (an unknown one is the
  engine's ``UNKNOWN_SETTING``); a GET runs with ``readonly = 2`` like the server's;
* ``session_id`` (``SET`` and ``USE`` persist in the session; one query at a time per session,
  ``SESSION_IS_LOCKED`` otherwise; ``session_timeout``, ``session_check``, ``close_session``);
  ``query_id`` (or ``X-ClickHouse-Query-Id``; generated when absent);
* request bodies compressed with ``Content-Encoding`` gzip, deflate, zstd, lz4, xz, bz2 (and br
  when brotli is installed), and responses compressed the same way when ``enable_http_compression=1``
  and ``Accept-Encoding`` allows it (the server's preference order: zstd, br, lz4, gzip, deflate, xz,
  bz2); chunked request bodies;
* the response headers clients read: ``X-ClickHouse-Query-Id``, ``X-ClickHouse-Format``,
  ``X-ClickHouse-Timezone``, ``X-ClickHouse-Summary`` (rows and bytes read and written, elapsed),
  ``X-ClickHouse-Server-Display-Name``; ``GET /ping`` answers ``Ok.``;
* users and passwords from ``X-ClickHouse-User``/``X-ClickHouse-Key``, HTTP basic auth or the
  ``user``/``password`` parameters (mixing them is refused); a wrong password is refused as the
  server refuses it (403, code 516 ``AUTHENTICATION_FAILED``);
* errors as the server reports them: the status of ``exceptionCodeToHTTPStatus``, the
  ``X-ClickHouse-Exception-Code`` header and the body ``Code: N. DB::Exception: ... (NAME) (version V)``.

Not implemented, and said so with ``NOT_IMPLEMENTED`` (501): ClickHouse's internal block compression
(``compress=1`` / ``decompress=1``; clickhouse-connect uses HTTP ``Content-Encoding`` instead),
external data and form-encoded queries (``multipart/form-data``), and temporary tables that outlive a
request (each request runs on its own engine connection; a session replays its ``SET``/``USE`` state).

One engine per process (chDB's rule), so the server runs in a process of its own::

    python tests/infra/clickhouse_http.py --path /tmp/chdb-server --port 8123 --password secret
    # prints: url=http://127.0.0.1:8123 (then serves until SIGTERM / Ctrl-C)
    python tests/infra/clickhouse_http.py --path /tmp/chdb-server --tls-cert cert.pem --tls-key key.pem
    # prints: url=https://127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import base64
import bz2
import gzip
import json
import lzma
import os
import re
import shutil
import signal
import ssl
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# --- the parts of ClickHouse's protocol this server reproduces -------------------------------------

# HTTP parameters that are neither settings nor query parameters (HTTPHandler's reserved_param_names,
# plus the ones it reads itself).
RESERVED_PARAMS = frozenset({"compress", "decompress", "user", "password", "quota_key", "query_id", "stacktrace",
                             "buffer_size", "wait_end_of_query", "session_id", "session_timeout", "session_check",
                             "client_protocol_version", "close_session", "query", "database", "default_format"})

# exceptionCodeToHTTPStatus: the status each error is answered with (500 otherwise), by error name;
# the codes are the engine's own (errorCodeToName), looked up when the server starts.
STATUS_OF_NAMES = {
    401: ("REQUIRED_PASSWORD",),
    403: ("UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "SET_NON_GRANTED_ROLE", "ACCESS_DENIED"),
    400: ("BAD_ARGUMENTS", "CANNOT_COMPILE_REGEXP", "CANNOT_PARSE_TEXT", "CANNOT_PARSE_ESCAPE_SEQUENCE",
          "CANNOT_PARSE_QUOTED_STRING", "CANNOT_PARSE_DATE", "CANNOT_PARSE_DATETIME", "CANNOT_PARSE_NUMBER",
          "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING", "CANNOT_PARSE_IPV4", "CANNOT_PARSE_IPV6",
          "CANNOT_PARSE_INPUT_ASSERTION_FAILED", "CANNOT_PARSE_UUID", "DUPLICATE_COLUMN", "ILLEGAL_COLUMN",
          "UNKNOWN_ELEMENT_IN_AST", "UNKNOWN_TYPE_OF_AST_NODE", "THERE_IS_NO_COLUMN", "TOO_DEEP_AST", "TOO_BIG_AST",
          "UNEXPECTED_AST_STRUCTURE", "SYNTAX_ERROR", "INCORRECT_DATA", "TYPE_MISMATCH",
          "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE"),
    404: ("UNKNOWN_TABLE", "UNKNOWN_FUNCTION", "UNKNOWN_IDENTIFIER", "UNKNOWN_TYPE", "UNKNOWN_STORAGE",
          "UNKNOWN_DATABASE", "UNKNOWN_SETTING", "UNKNOWN_DIRECTION_OF_SORTING", "UNKNOWN_AGGREGATE_FUNCTION",
          "UNKNOWN_FORMAT", "UNKNOWN_DATABASE_ENGINE", "UNKNOWN_TYPE_OF_QUERY", "UNKNOWN_ROLE"),
    413: ("QUERY_IS_TOO_LARGE",),
    501: ("NOT_IMPLEMENTED",),
    503: ("SOCKET_TIMEOUT", "CANNOT_OPEN_FILE", "CANNOT_SCHEDULE_TASK"),
    411: ("HTTP_LENGTH_REQUIRED",),
    408: ("TIMEOUT_EXCEEDED",),
    415: ("UNSUPPORTED_MEDIA_TYPE",),
}
# the codes this server raises itself (the rest come from the engine, with their names)
BAD_ARGUMENTS, CANNOT_DECOMPRESS, NOT_IMPLEMENTED, SYNTAX_ERROR = 36, 271, 48, 62
UNKNOWN_SETTING, UNKNOWN_COMPRESSION_METHOD, SESSION_NOT_FOUND, SESSION_IS_LOCKED = 115, 89, 372, 373
HTTP_LENGTH_REQUIRED, AUTHENTICATION_FAILED = 381, 516

_CODE_RE = re.compile(r"Code: (\d+)\.")
# An INSERT whose data follows its FORMAT clause (group 1: the statement up to the format name,
# group 2: the format): the data starts after the whitespace that ends the line.
_INSERT_FORMAT_RE = re.compile(rb"\A(\s*INSERT\s.*?\bFORMAT\s+([A-Za-z0-9_]+))[ \t]*(?:\r?\n)?",
                               re.IGNORECASE | re.DOTALL)
_INSERT_SETTINGS_RE = re.compile(rb"\sSETTINGS\s", re.IGNORECASE)
_TRAILING_FORMAT_RE = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*\Z", re.IGNORECASE)
_STATE_STATEMENT_RE = re.compile(r"\A\s*(SET|USE)\s", re.IGNORECASE)
_NO_RESULT_RE = re.compile(r"\A\s*(INSERT|CREATE|ALTER|DROP|RENAME|TRUNCATE|SET|USE|OPTIMIZE|SYSTEM|GRANT|REVOKE|"
                           r"DETACH|ATTACH|KILL|DELETE|UPDATE|EXCHANGE|UNDROP)\b", re.IGNORECASE)
_READ_ONLY_RE = re.compile(r"\A\s*(\(\s*)*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS|CHECK)\b", re.IGNORECASE)

CONTENT_TYPES = {"TabSeparated": "text/tab-separated-values; charset=UTF-8",
                 "TSV": "text/tab-separated-values; charset=UTF-8",
                 "TabSeparatedWithNames": "text/tab-separated-values; charset=UTF-8; header=present",
                 "CSV": "text/csv; charset=UTF-8; header=absent",
                 "CSVWithNames": "text/csv; charset=UTF-8; header=present",
                 "JSON": "application/json; charset=UTF-8", "JSONCompact": "application/json; charset=UTF-8",
                 "JSONEachRow": "application/x-ndjson; charset=UTF-8"}


class ClickHouseError(Exception):
    """An error answered the way the server answers it. ``message`` is the engine's whole text
    (``Code: N. DB::Exception: ... (NAME)``) or, for errors of this server, the part after
    ``DB::Exception:`` (the server adds the code and the name)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _engine_error(exc: Exception) -> ClickHouseError:
    """The engine's exception as the server would send it (chDB's text is the server's)."""
    text = str(exc).strip()
    start = text.find("Code: ")
    text = text[start:] if start >= 0 else text
    match = _CODE_RE.match(text)
    if match:
        return ClickHouseError(int(match.group(1)), text)
    return ClickHouseError(1002, text or type(exc).__name__)


# --- compression (the server's HTTP Content-Encoding methods) ---------------------------------------

def _zstd() -> Any:
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python 3.14+
    except ImportError:
        from backports import zstd  # type: ignore[import-not-found,no-redef]  # clickhouse-connect's dependency
    return zstd


def _lz4_frame() -> Any:
    import lz4.frame

    return lz4.frame


def _brotli() -> Any | None:
    try:
        import brotli  # type: ignore[import-not-found]
    except ImportError:
        return None
    return brotli


_DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.decompress, "x-gzip": gzip.decompress, "deflate": zlib.decompress,
    "zstd": lambda data: _zstd().decompress(data), "lz4": lambda data: _lz4_frame().decompress(data),
    "xz": lzma.decompress, "bz2": bz2.decompress, "br": lambda data: _require_brotli().decompress(data),
}
_ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "zstd": lambda data: _zstd().compress(data), "br": lambda data: _require_brotli().compress(data),
    "lz4": lambda data: _lz4_frame().compress(data), "gzip": gzip.compress, "deflate": zlib.compress,
    "xz": lzma.compress, "bz2": bz2.compress,
}
_PREFERENCE = ("zstd", "br", "lz4", "gzip", "deflate", "xz", "bz2")  # chooseHTTPCompressionMethod's order


def _require_brotli() -> Any:
    brotli = _brotli()
    if brotli is None:
        raise ClickHouseError(NOT_IMPLEMENTED, "Content-Encoding br needs the brotli package on this test server")
    return brotli


def choose_response_encoding(accept_encoding: str) -> str | None:
    """The encoding the server picks from an ``Accept-Encoding`` list (substring match, as it does)."""
    for name in _PREFERENCE:
        if name in accept_encoding and (name != "br" or _brotli() is not None):
            return name
    return None


def decode_body(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if not encoding or encoding == "identity" or not body:
        return body
    decoder = _DECODERS.get(encoding)
    if decoder is None:
        raise ClickHouseError(UNKNOWN_COMPRESSION_METHOD, f"Unknown compression method: '{encoding}'")
    try:
        return decoder(body)
    except ClickHouseError:
        raise
    except Exception as exc:
        raise ClickHouseError(CANNOT_DECOMPRESS, f"Cannot decompress the request body ({encoding}): {exc}") from exc


# --- sessions and users ------------------------------------------------------------------------------

@dataclass
class Session:
    """An HTTP session's state: its ``SET`` and ``USE`` statements that succeeded, replayed in order on
    the connection of each of its queries (before the URL's database and settings, which win)."""

    statements: list[str] = field(default_factory=list)
    timeout_s: float = 60.0
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Request:
    """One HTTP request as the handler sees it, already authenticated and decompressed."""

    method: str
    params: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]


# --- the engine side -------------------------------------------------------------------------------

class Engine:
    """The chDB engine at ``path`` and how one HTTP query runs on it. Thread-safe: each query runs on a
    connection of its own (chDB allows many connections to the one engine of a process; settings and
    the current database are per connection), so URL settings never leak into other queries."""

    def __init__(self, path: str) -> None:
        import chdb

        self._chdb = chdb
        self.dsn = f"file:{path}"
        self._root = chdb.connect(self.dsn)  # keeps the engine loaded between requests
        version, tz = self._root.query("SELECT version(), timezone()", "TabSeparated").bytes().decode().split("\t")
        self.version, self.timezone = version.strip(), tz.strip()
        names = self._root.query("SELECT number, errorCodeToName(number) FROM numbers(2000) "
                                 "WHERE errorCodeToName(number) != ''", "JSONCompactEachRow").bytes().splitlines()
        self.error_names: dict[int, str] = {int(code): name for code, name in map(json.loads, names)}
        codes = {name: code for code, name in self.error_names.items()}
        self.status_of_code = {codes[name]: status for status, names_ in STATUS_OF_NAMES.items()
                               for name in names_ if name in codes}
        self._tmp = tempfile.mkdtemp(prefix="ch-http-insert-")

    def close(self) -> None:
        try:
            self._root.close()
        except Exception:
            pass
        shutil.rmtree(self._tmp, ignore_errors=True)

    def execute(self, sql: bytes, settings: list[tuple[str, str]], params: dict[str, str], database: str | None,
                default_format: str, session: Session | None,
                read_only_method: bool = False) -> tuple[bytes, str | None, dict]:
        """Run one statement; returns (result bytes, output format or None, summary). ``read_only_method``:
        a GET, which runs with ``readonly = 2`` unless the session is read-only already (as on the server)."""
        conn = self._chdb.connect(self.dsn)
        try:
            def run(statement: str, fmt: str = "TabSeparated", query_params: dict[str, str] | None = None) -> Any:
                try:
                    return conn.query(statement, fmt, params=query_params or {})
                except Exception as exc:
                    raise _engine_error(exc) from exc

            for statement in session.statements if session else ():  # the session's SET and USE, in order
                run(statement)
            if database:
                run(f"USE {_quote_identifier(database)}")
            if read_only_method and run("SELECT getSetting('readonly')").bytes().strip() == b"0":
                run("SET readonly = 2")
            # readonly last: the server checks all URL settings against the settings before them
            applied = [kv for kv in settings if kv[0] != "readonly"] + [kv for kv in settings if kv[0] == "readonly"]
            for key, value in applied:
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                    raise ClickHouseError(UNKNOWN_SETTING, f"Unknown setting '{key}'")
                run(f"SET {key} = {_quote_string(value)}")
            text, path = self._statement(sql)
            try:
                started = time.perf_counter_ns()
                result = run(text, default_format, params)
                elapsed = time.perf_counter_ns() - started
            finally:
                if path:
                    os.unlink(path)
            if session is not None and _STATE_STATEMENT_RE.match(text):  # it stays in the session
                session.statements.append(text)
            body = result.bytes() or b""
            summary = _summary(result, elapsed, inserted=path is not None)
            fmt = self._output_format(text, default_format, path is not None)
            return body, fmt, summary
        finally:
            conn.close()

    def _statement(self, sql: bytes) -> tuple[str, str | None]:
        """The statement to run and, for an INSERT with data, the file holding its data."""
        match = _INSERT_FORMAT_RE.match(sql)
        if not match:
            try:
                return sql.decode(), None
            except UnicodeDecodeError as exc:
                raise ClickHouseError(SYNTAX_ERROR, "Syntax error: the query is not valid UTF-8") from exc
        head, fmt = match.group(1), match.group(2)
        payload = sql[match.end():]
        fd, path = tempfile.mkstemp(dir=self._tmp, suffix=".data")
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
        statement = head[: match.start(2)].rstrip()
        statement = statement[: -len("FORMAT")].rstrip() if statement.upper().endswith(b"FORMAT") else statement
        infile = f" FROM INFILE {_quote_string(path)}".encode()
        settings_at = _INSERT_SETTINGS_RE.search(statement)
        if settings_at:  # INSERT INTO t (...) FROM INFILE '...' SETTINGS ... FORMAT fmt
            statement = statement[: settings_at.start()] + infile + statement[settings_at.start():]
        else:
            statement += infile
        try:
            return (statement + b" FORMAT " + fmt).decode(), path
        except UnicodeDecodeError as exc:
            os.unlink(path)
            raise ClickHouseError(SYNTAX_ERROR, "Syntax error: the query is not valid UTF-8") from exc

    @staticmethod
    def _output_format(text: str, default_format: str, inserted: bool) -> str | None:
        if inserted or _NO_RESULT_RE.match(text):
            return None
        match = _TRAILING_FORMAT_RE.search(text)
        return match.group(1) if match else default_format


def _summary(result: Any, elapsed_ns: int, inserted: bool) -> dict[str, str]:
    try:
        rows, size = int(result.rows_read()), int(result.bytes_read())
    except Exception:
        rows, size = 0, 0
    written = (rows, size) if inserted else (0, 0)
    read = (0, 0) if inserted else (rows, size)
    return {"read_rows": str(read[0]), "read_bytes": str(read[1]), "written_rows": str(written[0]),
            "written_bytes": str(written[1]), "total_rows_to_read": str(read[0]), "result_rows": "0",
            "result_bytes": "0", "elapsed_ns": str(elapsed_ns)}


def _quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


# --- the HTTP side ----------------------------------------------------------------------------------

class ClickHouseHTTPServer(ThreadingHTTPServer):
    """The server: ``users`` maps user names to passwords (default: ``default`` with no password)."""

    daemon_threads = True

    def __init__(self, path: str, host: str = "127.0.0.1", port: int = 0, users: dict[str, str] | None = None,
                 display_name: str = "execscope-test-clickhouse", tls: ssl.SSLContext | None = None) -> None:
        """``tls``: serve HTTPS with this server-side context (the server's ``https_port``)."""
        self.engine = Engine(path)
        self.users = dict(users) if users is not None else {"default": ""}
        self.display_name = display_name
        self.sessions: dict[str, Session] = {}
        self.sessions_lock = threading.Lock()
        self.tls = tls
        super().__init__((host, port), _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.tls is not None:  # the handshake runs on the first read, in the request's thread
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):  # a refused handshake is the client's
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def server_close(self) -> None:
        super().server_close()
        self.engine.close()

    # one request, independent of the socket: what the handler calls
    def handle_query(self, request: Request) -> Response:
        query_id = (_param(request.params, "query_id") or request.headers.get("x-clickhouse-query-id")
                    or str(uuid.uuid4()))
        headers = {"X-ClickHouse-Server-Display-Name": self.display_name, "X-ClickHouse-Query-Id": query_id}
        session: Session | None = None
        try:
            self._authenticate(request)
            if _flag(request.params, "compress") or _flag(request.params, "decompress"):
                raise ClickHouseError(NOT_IMPLEMENTED, "ClickHouse's internal block compression (compress=1, "
                                      "decompress=1) is not implemented by this test server: use HTTP Content-Encoding")
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                raise ClickHouseError(NOT_IMPLEMENTED, "external data and form-encoded queries (multipart/form-data) "
                                      "are not implemented by this test server")
            session = self._session(request.params)
            if session is not None and not session.lock.acquire(blocking=False):
                sid = _param(request.params, "session_id")
                session = None
                raise ClickHouseError(SESSION_IS_LOCKED, f"Session {sid} is locked by a concurrent client")
            try:
                return self._run(request, session, headers)
            finally:
                if session is not None:
                    session.last_used = time.monotonic()
                    session.lock.release()
                    if _flag(request.params, "close_session"):
                        with self.sessions_lock:
                            self.sessions.pop(_param(request.params, "session_id") or "", None)
        except ClickHouseError as exc:
            return self.error_response(exc, headers)

    def error_response(self, exc: ClickHouseError, headers: dict[str, str]) -> Response:
        """The server's error answer: its status for the code, the code in a header, and the text
        ``Code: N. DB::Exception: message. (NAME) (version V)``."""
        text = exc.message
        if not text.startswith("Code: "):
            name = self.engine.error_names.get(exc.code, "UNKNOWN_EXCEPTION")
            text = f"Code: {exc.code}. DB::Exception: {text.rstrip('.')}. ({name})"
        if "(version " not in text:
            text = f"{text} (version {self.engine.version})"
        headers = {**headers, "X-ClickHouse-Exception-Code": str(exc.code),
                   "Content-Type": "text/plain; charset=UTF-8"}
        return Response(self.engine.status_of_code.get(exc.code, 500), (text + "\n").encode(), headers)

    def _run(self, request: Request, session: Session | None, headers: dict[str, str]) -> Response:
        params = request.params
        query = _param(params, "query")
        sql = (query.encode() + b"\n" + request.body) if query else request.body
        if not sql.strip():
            raise ClickHouseError(SYNTAX_ERROR, "Empty query")
        settings = [(k, v) for k, v in params if k not in RESERVED_PARAMS and not k.startswith("param_") and k]
        query_params = {k[len("param_"):]: v for k, v in params if k.startswith("param_")}
        database = request.headers.get("x-clickhouse-database") or _param(params, "database") or None
        default_format = (request.headers.get("x-clickhouse-format") or _param(params, "default_format")
                          or "TabSeparated")
        body, fmt, summary = self.engine.execute(sql, settings, query_params, database, default_format, session,
                                                 read_only_method=request.method == "GET")
        headers["X-ClickHouse-Summary"] = json.dumps(summary, separators=(",", ":"))
        headers["X-ClickHouse-Timezone"] = self.engine.timezone
        if fmt:
            headers["X-ClickHouse-Format"] = fmt
            headers["Content-Type"] = CONTENT_TYPES.get(fmt, "application/octet-stream")
        else:
            headers["Content-Type"] = "text/plain; charset=UTF-8"
        enabled = dict(settings).get("enable_http_compression", "0") in ("1", "true", "True")
        encoding = choose_response_encoding(request.headers.get("accept-encoding", "")) if enabled else None
        if encoding and body:
            body = _ENCODERS[encoding](body)
            headers["Content-Encoding"] = encoding
        return Response(200, body, headers)

    def _authenticate(self, request: Request) -> None:
        user = request.headers.get("x-clickhouse-user", "")
        password = request.headers.get("x-clickhouse-key", "")
        authorization = request.headers.get("authorization", "")
        in_params = any(k in ("user", "password") for k, _ in request.params)
        if user or password:
            if authorization:
                raise ClickHouseError(AUTHENTICATION_FAILED, "Invalid authentication: it is not allowed to use "
                                      "X-ClickHouse HTTP headers and Authorization HTTP header simultaneously")
            if in_params:
                raise ClickHouseError(AUTHENTICATION_FAILED, "Invalid authentication: it is not allowed to use "
                                      "X-ClickHouse HTTP headers and authentication via parameters simultaneously")
        elif authorization:
            if in_params:
                raise ClickHouseError(AUTHENTICATION_FAILED, "Invalid authentication: it is not allowed to use "
                                      "Authorization HTTP header and authentication via parameters simultaneously")
            scheme, _, info = authorization.partition(" ")
            if scheme.lower() != "basic":
                raise ClickHouseError(AUTHENTICATION_FAILED,
                                      f"Invalid authentication: '{scheme}' HTTP Authorization scheme is not supported")
            try:
                user, _, password = base64.b64decode(info.strip()).decode().partition(":")
            except Exception as exc:
                raise ClickHouseError(AUTHENTICATION_FAILED,
                                      "Invalid authentication: malformed Basic credentials") from exc
        else:
            user = _param(request.params, "user") or "default"
            password = _param(request.params, "password") or ""
        if not user:
            raise ClickHouseError(AUTHENTICATION_FAILED, "Got an empty user name")
        if self.users.get(user) != password:
            raise ClickHouseError(AUTHENTICATION_FAILED, f"{user}: Authentication failed: password is incorrect, or "
                                  "there is no user with such name")

    def _session(self, params: list[tuple[str, str]]) -> Session | None:
        sid = _param(params, "session_id")
        if not sid:
            return None
        now = time.monotonic()
        with self.sessions_lock:
            for key in [k for k, s in self.sessions.items() if now - s.last_used > s.timeout_s and not s.lock.locked()]:
                del self.sessions[key]
            session = self.sessions.get(sid)
            if session is None:
                if _flag(params, "session_check"):
                    raise ClickHouseError(SESSION_NOT_FOUND, f"Session {sid} not found")
                try:
                    timeout = float(_param(params, "session_timeout") or 60)
                except ValueError as exc:
                    raise ClickHouseError(BAD_ARGUMENTS, "Invalid session timeout: "
                                              f"'{_param(params, 'session_timeout')}'") from exc
                session = self.sessions[sid] = Session(timeout_s=timeout)
            return session


def _param(params: list[tuple[str, str]], name: str) -> str | None:
    for key, value in params:
        if key == name:
            return value
    return None


def _flag(params: list[tuple[str, str]], name: str) -> bool:
    return (_param(params, name) or "0").lower() in ("1", "true")


class _Handler(BaseHTTPRequestHandler):
    server: ClickHouseHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, as clickhouse-connect's pool expects
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall between them

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if os.environ.get("EXECSCOPE_CH_HTTP_LOG"):
            super().log_message(format, *args)

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        if url.path.rstrip("/") == "/ping" or (method in ("GET", "HEAD") and url.path == "/" and not url.query):
            self._send(Response(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"}), method)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            raw = self._read_body(headers, method)
            body = decode_body(raw, headers.get("content-encoding", ""))
        except ClickHouseError as exc:
            self._send(self.server.error_response(exc, {}), method)
            return
        params = parse_qsl(url.query, keep_blank_values=True)
        response = self.server.handle_query(Request("GET" if method == "HEAD" else method, params, headers, body))
        self._send(response, method)

    def _read_body(self, headers: dict[str, str], method: str) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        if "content-length" in headers:
            return self.rfile.read(int(headers["content-length"]))
        if method == "POST":
            raise ClickHouseError(HTTP_LENGTH_REQUIRED, "The Transfer-Encoding is not chunked and there is no "
                                  "Content-Length header for POST request")
        return b""

    def _send(self, response: Response, method: str) -> None:
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Connection", "Keep-Alive")
        self.send_header("Keep-Alive", "timeout=30")
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(response.body)


# --- by hand, or from a test fixture ----------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A ClickHouse HTTP interface on loopback over chDB (tests).")
    parser.add_argument("--path", required=True, help="the chDB data directory")
    parser.add_argument("--host", default="127.0.0.1", help="loopback only (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--user", default="default")
    parser.add_argument("--password", default="", help="the user's password (default: none)")
    parser.add_argument("--tls-cert", default=None, help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", default=None, help="the certificate's private key (PEM)")
    args = parser.parse_args(argv)
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        parser.error("this test server listens on loopback only")
    tls = None
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    server = ClickHouseHTTPServer(args.path, args.host, args.port, users={args.user: args.password}, tls=tls)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"url={server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
