"""The store client: one small interface over the embedded engine (chDB) and a ClickHouse server.

Addresses (``--store`` / ``EXECSCOPE_STORE``):

* ``chdb:///abs/path`` or a plain path: the embedded engine in that directory (default
  ``./.execscope/db``). One process owns a directory at a time; execscope takes an advisory lock
  (``<dir>/execscope.lock``, holding the owner's pid) before the engine does, so a second owner gets
  :class:`StoreLockedError` naming the holder instead of the engine's opaque error.
* ``http(s)://user:pass@host:8123/db[?option=value...]``: a ClickHouse server through clickhouse-connect
  (``https`` is TLS on any port; query parameters are clickhouse-connect options such as ``ca_cert``).
  No lock: a server has many users. The database is created when missing, and a server's errors are
  reported in the engine's own words, as the embedded store reports them.

The embedded engine is chDB, built for CPython up to 3.14 (:data:`CHDB_NEWEST_PYTHON`). Where it
cannot load (not installed, or no build for this Python: on 3.15 its loader ends the process instead
of raising), :func:`embedded_engine_problem` says so in one sentence naming what works instead (a
server store, or the Kafka exporter), and nothing imports chDB. Recording needs no store in the
recorded process, so ``execscope run --exporter kafka`` and the instrumentation work without chDB.

Query, insert and command are separate calls. Parameters are always bound by the server
(``{name:Type}`` placeholders), never formatted into SQL. Not thread-safe: one user at a time.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib.util
import logging
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from execscope.storage.migrations import INSERT_INDEX_SETTINGS

DEFAULT_STORE = "./.execscope/db"
ENV_STORE = "EXECSCOPE_STORE"
# The newest Python that chDB (the embedded engine) has a build for. On a newer one, chDB is tried in
# a child process before this one imports it: without a build for the running Python, chDB's
# loader prints a pybind11 message and exits the process, which no except clause can catch.
CHDB_NEWEST_PYTHON = (3, 14)


class StoreError(RuntimeError):
    """Any store failure worth one clear line to the user."""


class StoreLockedError(StoreError):
    pass


class StoreVersionError(StoreError):
    pass


class EmbeddedEngineUnavailable(StoreError):
    """The embedded engine (chDB) cannot load in this interpreter; the message says what works."""


_ALTERNATIVES = ("a ClickHouse server store (--store http://user:pass@host:8123/db) or recording to Kafka "
                 "(execscope run --exporter kafka --kafka HOST:PORT, then `execscope collect` into a store)")
_engine_problem: list[str | None] = []  # the answer of embedded_engine_problem, once known


def embedded_engine_problem() -> str | None:
    """Why the embedded store (chdb://) cannot be used by this interpreter, in one sentence that
    names what works instead; None when it can. Never imports chDB into this process; answered once
    per process (on a Python newer than :data:`CHDB_NEWEST_PYTHON`, by importing chDB in a child)."""
    if not _engine_problem:
        _engine_problem.append(_find_engine_problem())
    return _engine_problem[0]


def _find_engine_problem() -> str | None:
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    newest = ".".join(map(str, CHDB_NEWEST_PYTHON))
    too_new = sys.version_info[:2] > CHDB_NEWEST_PYTHON
    no_build = (f"the embedded store (chdb://) needs Python <= {newest} (chDB has no build for Python {version}); "
                f"on Python {version} use {_ALTERNATIVES}")
    try:
        spec = importlib.util.find_spec("chdb")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        if too_new:
            return no_build
        return ("the embedded store (chdb://) needs the chdb package, which is not installed "
                f"(pip install 'chdb>=3.0,<5'); without it use {_ALTERNATIVES}")
    if too_new:
        try:
            probe = subprocess.run([sys.executable, "-c", "import chdb"], stdin=subprocess.DEVNULL,
                                   capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired):
            return no_build
        if probe.returncode != 0:
            return no_build
    return None


def require_embedded_engine() -> None:
    """Raise :class:`EmbeddedEngineUnavailable` when the embedded store cannot be used here."""
    problem = embedded_engine_problem()
    if problem:
        raise EmbeddedEngineUnavailable(problem)


@dataclass(frozen=True)
class StoreAddress:
    kind: str          # "chdb" or "http"
    path: str = ""     # chdb directory (absolute)
    url: str = ""      # server DSN

    def __str__(self) -> str:
        return f"chdb://{self.path}" if self.kind == "chdb" else _redact_password(self.url)


def _redact_password(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@", 1)
    return url


def resolve_address(dsn: str | None = None) -> StoreAddress:
    """Turn ``--store`` / ``EXECSCOPE_STORE`` / the default into an address. Raises StoreError."""
    value = dsn or os.environ.get(ENV_STORE) or DEFAULT_STORE
    if value.startswith(("http://", "https://", "clickhouse://")):
        return StoreAddress("http", url=value)
    if value.startswith("chdb://"):
        value = value[len("chdb://"):]
    elif "://" in value:
        raise StoreError(f"unsupported store address {value!r}: use chdb:///path or http(s)://host:8123/db")
    if not value:
        raise StoreError("empty chdb store path")
    return StoreAddress("chdb", path=str(Path(value).expanduser().resolve()))


@dataclass
class QueryResult:
    column_names: list[str]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.column_names, row)) for row in self.rows]


class Store:
    """An open store. Use :func:`open_store`; close with :meth:`close` (idempotent)."""

    def __init__(self, address: StoreAddress, client: Any, lock_fd: int | None) -> None:
        self.address = address
        self._client = client
        self._lock_fd = lock_fd
        self._closed = False

    def query(self, sql: str, parameters: dict[str, Any] | None = None,
              settings: dict[str, Any] | None = None) -> QueryResult:
        try:
            result = self._client.query(sql, parameters=parameters, settings=settings)
        except Exception as exc:
            raise StoreError(_engine_message(exc)) from exc
        return QueryResult(list(result.column_names), [tuple(r) for r in result.result_rows])

    def raw(self, sql: str, parameters: dict[str, Any] | None = None, fmt: str = "RowBinary") -> bytes:
        """The result in one ClickHouse output format, unparsed (for bulk arrays)."""
        try:
            return bytes(self._client.raw_query(sql, parameters=parameters, fmt=fmt))
        except Exception as exc:
            raise StoreError(_engine_message(exc)) from exc

    def command(self, sql: str, parameters: dict[str, Any] | None = None,
                settings: dict[str, Any] | None = None) -> Any:
        try:
            return self._client.command(sql, parameters=parameters, settings=settings)
        except Exception as exc:
            raise StoreError(_engine_message(exc)) from exc

    def insert_columns(self, table: str, columns: Sequence[Sequence[Any]], column_names: Sequence[str],
                       dedup_token: str | None = None) -> None:
        """Insert column-oriented data; with ``dedup_token`` a retried insert adds nothing. On the
        embedded engine the maps' bloom filters are left to the merges, as on its other insert paths
        (:data:`.migrations.INDEXES_BUILT_BY_MERGES`); a server's inserts build every index (its
        version may not know the setting)."""
        settings: dict[str, Any] = dict(INSERT_INDEX_SETTINGS) if self.address.kind == "chdb" else {}
        if dedup_token:
            settings["insert_deduplication_token"] = dedup_token
            settings["deduplicate_blocks_in_dependent_materialized_views"] = 1
        try:
            self._client.insert(table, list(columns), column_names=list(column_names),
                                column_oriented=True, settings=settings)
        except Exception as exc:
            raise StoreError(_engine_message(exc)) from exc

    def read_only(self, settings: dict[str, Any] | None = None) -> Store:
        """A second session on this store in which the engine refuses every write, DDL statement and
        setting change (ClickHouse ``readonly = 1``, set for the whole session after ``settings``, so
        limits given there, such as ``max_result_rows``, cannot be lifted by a query either). For
        statements from elsewhere (an agent's SQL). Close it before this store."""
        import clickhouse_connect

        fixed = {**(settings or {}), "readonly": 1}  # last: once read-only, nothing else may be set
        try:
            if self.address.kind == "chdb":
                client = clickhouse_connect.get_client(dsn=f"chdb://{self.address.path}", settings=fixed)
            else:
                client = connect_server(self.address.url, settings=fixed)
        except Exception as exc:
            raise StoreError(f"cannot open a read-only session on {self.address}: {_engine_message(exc)}") from exc
        return Store(self.address, client, None)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._client.close()
        finally:
            if self._lock_fd is not None:
                try:
                    os.close(self._lock_fd)
                except OSError:
                    pass

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SERVER_RESPONSE = "server response: "
_FOR_URL = re.compile(r"\s*\(for url [^)]*\)\s*$")
_VERSION = re.compile(r"\s*\(version [0-9.]+[^)]*\)\s*$")


# what urllib3 says when no answer came (clickhouse-connect wraps it in a long retry message)
_TRANSPORT = (re.compile(r"\[SSL: [A-Z_]+\] ([^(']+)"), re.compile(r"\[Errno -?\d+\] ([^\"')]+)"),
              re.compile(r"(Read timed out|timed out)"))


def _engine_message(exc: Exception) -> str:
    """The engine's own words, the same for both paths: ``Code: N. DB::Exception: ... (NAME)``.
    clickhouse-connect wraps a server's answer ("Received ClickHouse exception, code: N, server
    response: ... (version V) (for url ...)"); the wrapping and the version are dropped. A server that
    did not answer is said in a few words (``Connection refused``, ``certificate verify failed: ...``)."""
    text = str(exc).strip()
    if "Code: " not in text and ("HTTPConnectionPool" in text or "HTTPSConnectionPool" in text):
        for pattern in _TRANSPORT:
            if found := pattern.search(text):
                return found.group(1).strip().rstrip(".")
    at = text.find(_SERVER_RESPONSE)
    if at >= 0 and "Code: " in text[at:]:
        text = _FOR_URL.sub("", text[at + len(_SERVER_RESPONSE):])
    first = text.splitlines()[0] if text else type(exc).__name__
    return _VERSION.sub("", first)[:2000]


_UNKNOWN_DATABASE = 81  # ClickHouse's error code


def _server_client(url: str, create_database: bool) -> Any:
    """A clickhouse-connect client for a server store; with ``create_database``, the DSN's database is
    created first when the server does not have it (as the embedded store creates its directory)."""
    try:
        return connect_server(url)
    except Exception as exc:
        database = unquote(urlparse(url).path.lstrip("/").split("/")[0])
        if not create_database or not database or getattr(exc, "code", None) != _UNKNOWN_DATABASE:
            raise
    bare = urlparse(url)._replace(path="").geturl()
    with contextlib.closing(connect_server(bare)) as admin:
        admin.command(f"CREATE DATABASE IF NOT EXISTS {_quote_identifier(database)}")
    return connect_server(url)


# clickhouse-connect logs a warning before raising on a transport error; with no logging configured
# Python would print it to stderr next to our one-line error. Our error says it: the library's
# records still reach the handlers of an application that configures logging.
logging.getLogger("clickhouse_connect").addHandler(logging.NullHandler())


class _DataFrameMeta(type):
    """``pandas.DataFrame`` as seen before pandas is imported: nothing is an instance of it until
    then; calling it or reading its attributes imports pandas and uses the real class."""

    def __instancecheck__(cls, obj: object) -> bool:
        pandas = sys.modules.get("pandas")
        return pandas is not None and isinstance(obj, pandas.DataFrame)

    def __subclasscheck__(cls, sub: type) -> bool:
        pandas = sys.modules.get("pandas")
        return pandas is not None and issubclass(sub, pandas.DataFrame)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        import pandas

        return pandas.DataFrame(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        import pandas

        return getattr(pandas.DataFrame, name)


class _DataFrameUntilImported(metaclass=_DataFrameMeta):
    pass


class _PandasOnFirstUse:
    """clickhouse-connect's ``options.pd``: pandas, imported on first use, except that asking
    whether something is a DataFrame imports nothing (see :func:`_defer_pandas`)."""

    def __getattr__(self, name: str) -> Any:
        if name == "DataFrame" and "pandas" not in sys.modules:
            return _DataFrameUntilImported
        import pandas

        return getattr(pandas, name)


def _defer_pandas() -> None:
    """clickhouse-connect (1.x) imports pandas on its first insert, to ask whether the data is a
    DataFrame: ~0.3 s of CPU in every process that stores (each `execscope run`: its migrations or
    its first drain), though the store never inserts or reads DataFrames. Its lazily resolved
    ``options.pd`` gets :class:`_PandasOnFirstUse` instead: the same answers (nothing is a
    DataFrame before pandas is imported), with pandas imported only when something uses it
    (``query_df`` still works). Left alone when pandas is imported already or not installed, or
    the library resolves it otherwise."""
    if "pandas" in sys.modules:
        return
    try:
        from clickhouse_connect.driver import options
    except ImportError:
        return
    names = vars(options)
    if "pd" in names or not callable(names.get("_resolve_pandas")) or not callable(names.get("_pd_time_test")):
        return
    if importlib.util.find_spec("pandas") is None:
        return
    options.pd = _PandasOnFirstUse()
    options.pd_time_test = options._pd_time_test  # set with pd by the library


def connect_server(url: str, settings: dict[str, Any] | None = None) -> Any:
    """A clickhouse-connect client for a server address. The scheme decides TLS: clickhouse-connect
    (1.12) takes host, port, user, password, database and options from a DSN but not its scheme, so an
    ``https://`` address on a port other than 443/8443 would go out as plain HTTP."""
    import clickhouse_connect

    _defer_pandas()
    interface = "https" if url.startswith("https://") else "http"
    return clickhouse_connect.get_client(dsn=url, interface=interface, settings=settings)


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _lock(directory: Path) -> int:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"store directory {directory} cannot be created: {exc.strerror}") from exc
    if not os.access(directory, os.W_OK):
        raise StoreError(f"store directory {directory} is not writable")
    path = directory / "execscope.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"store lock {path} cannot be opened: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = ""
        try:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
        except OSError:
            pass
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            who = f" by process {holder}" if holder else ""
            raise StoreLockedError(
                f"store chdb://{directory} is locked{who}: one process owns an embedded store at a time "
                "(wait for it to finish, or use another --store)") from exc
        raise StoreError(f"store lock {path}: {exc.strerror}") from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def lock_store(dsn: str | None = None) -> int | None:
    """Take the embedded store's lock now (cheap: no engine is loaded), for :func:`open_store`'s
    ``lock_fd``; None for a server store. Raises :class:`StoreLockedError` / :class:`StoreError`."""
    address = resolve_address(dsn)
    return _lock(Path(address.path)) if address.kind == "chdb" else None


def open_store(dsn: str | None = None, *, migrate: bool = True, lock_fd: int | None = None) -> Store:
    """Open (and by default create/upgrade) the store at ``dsn``; ``lock_fd``: its lock, already
    taken by :func:`lock_store` (the store then owns it, and closes it on failure too).

    Raises :class:`StoreLockedError` when another process owns the embedded store,
    :class:`StoreVersionError` when the store was written by a newer execscope, :class:`StoreError`
    for anything else (unwritable directory, unreachable server, missing engine).
    """
    try:
        address = resolve_address(dsn)
        import clickhouse_connect

        _defer_pandas()
    except (ImportError, StoreError) as exc:
        if lock_fd is not None:
            os.close(lock_fd)
        if isinstance(exc, StoreError):
            raise
        raise StoreError("clickhouse-connect is not installed: pip install clickhouse-connect") from exc
    if address.kind == "chdb":
        try:
            require_embedded_engine()  # before anything imports chDB
        except EmbeddedEngineUnavailable:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        if lock_fd is None:
            lock_fd = _lock(Path(address.path))
        try:
            client = clickhouse_connect.get_client(dsn=f"chdb://{address.path}")
        except Exception as exc:
            os.close(lock_fd)
            raise StoreError(f"cannot open embedded store {address}: {_engine_message(exc)}") from exc
    else:
        try:
            client = _server_client(address.url, create_database=migrate)
        except Exception as exc:
            raise StoreError(f"cannot reach store {address}: {_engine_message(exc)}") from exc
    store = Store(address, client, lock_fd)
    if migrate:
        from execscope.storage.migrations import migrate as run_migrations

        try:
            run_migrations(store)
        except BaseException:
            store.close()
            raise
    return store
