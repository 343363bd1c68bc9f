"""Bounded answers about recordings, for coding agents (the MCP server's tools are thin wrappers of
these functions).

Every answer is a JSON-able dict that is bounded (rows, characters per value, bytes in all) and says
what it left out: ``left_out`` is a sentence ('' when nothing was). Frames, failures and chains name
cinema positions (``frame``), the number ``execscope cinema TRACE --at N``, :func:`frames` and
:func:`state_at` take. ``sql`` runs with the engine's ``readonly`` setting: a write is refused by
ClickHouse itself, not by parsing the statement.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Sequence
from typing import Any

from execscope.storage.store import Store

MAX_VALUE_CHARS = 300
MAX_ANSWER_BYTES = 60_000
MAX_FRAMES = 500
MAX_ROWS = 1000
SCAN_FRAMES = 100_000
"""Frames scanned for a function filter before giving up (said in ``left_out``)."""
SQL_MAX_ROWS = 1000
SQL_MAX_BYTES = 1_000_000
SQL_TIMEOUT_S = 20


def _cell(value: Any) -> Any:
    from execscope.output import jsonable

    value = jsonable(value)
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return value[: MAX_VALUE_CHARS - 1] + "…"
    if isinstance(value, dict):
        return {k: _cell(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cell(v) for v in value]
    return value


def bounded(key: str, items: Sequence[Any], limit: int, hint: str = "", **extra: Any) -> dict[str, Any]:
    """``{key: items[:limit] (values cut to MAX_VALUE_CHARS), 'returned', 'left_out', **extra}``, cut
    further to MAX_ANSWER_BYTES. Callers ask the store for ``limit + 1`` rows: one more than ``limit``
    means there are more (how many is not counted)."""
    shown = [_cell(i) for i in items[:limit]]
    answer: dict[str, Any] = {key: shown, "returned": len(shown), **{k: _cell(v) for k, v in extra.items()}}
    cut = 0
    while shown and len(json.dumps(answer, default=str)) > MAX_ANSWER_BYTES:
        n = max(1, len(shown) // 4)
        del shown[-n:]
        cut += n
        answer["returned"] = len(shown)
    notes = []
    if cut:
        notes.append(f"{cut} {key} cut to keep the answer under {MAX_ANSWER_BYTES} bytes")
    if len(items) > limit:
        notes.append(f"more {key} than {limit} exist")
    if notes and hint:
        notes.append(hint)
    answer["left_out"] = "; ".join(notes)
    return answer


def _rows(column_names: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(column_names, r)) for r in rows]


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_time(text: str, now: _dt.datetime | None = None) -> _dt.datetime | None:
    """'' -> None; '15m', '2h', '3d', '1w' -> that long ago (UTC); else an ISO 8601 date/time (UTC when
    it names no zone). Raises ValueError."""
    if not text or not text.strip():
        return None
    now = now or _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
    m = _RELATIVE.match(text)
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return now - _dt.timedelta(seconds=float(m.group(1)) * unit)
    try:
        value = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time: give an ISO 8601 time (2026-12-05T10:00) or an age "
                         "(15m, 2h, 3d)") from None
    if value.tzinfo is not None:
        value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return value


SEARCHED_TRACES = 10_000
LIST_TRACES_SQL = """
WITH recent AS (SELECT TraceId FROM otel_traces_trace_id_ts
                WHERE End >= {since:DateTime64(9)} AND Start <= {until:DateTime64(9)}
                GROUP BY TraceId ORDER BY max(End) DESC LIMIT {searched:UInt32}),
     spans AS (SELECT TraceId, SpanId, ParentSpanId, SpanName, Timestamp, Duration, StatusCode, ServiceName
               FROM otel_traces WHERE TraceId IN recent),
     ids AS (SELECT TraceId, groupArray(SpanId) AS span_ids FROM spans GROUP BY TraceId)
SELECT s.TraceId AS trace_id,
       argMin(s.SpanName, (NOT (s.ParentSpanId = '' OR NOT has(ids.span_ids, s.ParentSpanId)), s.Timestamp)) AS root,
       count() AS spans, countIf(s.StatusCode = 'STATUS_CODE_ERROR') AS errors, min(s.Timestamp) AS start,
       round((max(toUnixTimestamp64Nano(s.Timestamp) + s.Duration) - min(toUnixTimestamp64Nano(s.Timestamp))) / 1e6, 3)
           AS duration_ms,
       any(s.ServiceName) AS service
FROM spans AS s INNER JOIN ids ON ids.TraceId = s.TraceId
GROUP BY s.TraceId
HAVING (NOT {errors_only:UInt8} OR errors > 0)
   AND ({root:String} = '' OR positionCaseInsensitiveUTF8(root, {root:String}) > 0)
   AND start >= {since:DateTime64(9)} AND start <= {until:DateTime64(9)}
ORDER BY start DESC
LIMIT {limit:UInt32} + 1
"""


def list_traces(store: Store, errors_only: bool = False, root: str = "", since: str = "", until: str = "",
                limit: int = 20) -> dict[str, Any]:
    """Recorded traces, newest first: trace_id, root (span name), spans, errors, start, duration_ms,
    service. ``root``: substring of the root span's name; ``since``/``until``: ISO time or '15m', '2h'."""
    limit = max(1, min(limit, MAX_ROWS))
    lo = parse_time(since) or _dt.datetime(1970, 1, 1)
    hi = parse_time(until) or _dt.datetime(2262, 1, 1)
    result = store.query(LIST_TRACES_SQL, parameters={
        "since": lo, "until": hi, "errors_only": int(errors_only), "root": root, "limit": limit,
        "searched": SEARCHED_TRACES})
    rows = _rows(result.column_names, result.rows)
    return bounded("traces", rows, limit, hint="raise limit, or narrow with root/since/until",
                   searched=f"the newest {SEARCHED_TRACES} traces in the time range")


FAILURES_SQL = """
WITH ex AS (
    SELECT TraceId, SpanId, Seq, Timestamp, SpanName, LineNumber, Attributes['exception.type'] AS type,
           Attributes['exception.message'] AS message, Attributes['exception.escaped'] != 'false' AS escaped
    FROM execscope_events
    WHERE EventName = 'exception' AND ({trace:String} = '' OR TraceId = {trace:String})
),
parents AS (SELECT TraceId, SpanId, ParentSpanId FROM otel_traces WHERE TraceId IN (SELECT TraceId FROM ex)),
passed_up AS (  -- the same exception seen again in the caller: not where it was raised
    SELECT ex.TraceId AS TraceId, p.ParentSpanId AS SpanId, ex.type AS type, ex.message AS message
    FROM ex INNER JOIN parents AS p ON p.TraceId = ex.TraceId AND p.SpanId = ex.SpanId
),
raised AS (
    SELECT 'raised' AS what, ex.TraceId AS trace_id, ex.Seq AS seq, ex.Timestamp AS timestamp,
           ex.SpanName AS function, ex.LineNumber AS line, ex.type AS type, ex.message AS message,
           ex.escaped AS escaped, ex.SpanId AS span_id
    FROM ex LEFT ANTI JOIN passed_up AS u
        ON u.TraceId = ex.TraceId AND u.SpanId = ex.SpanId AND u.type = ex.type AND u.message = ex.message
),
caught AS (
    SELECT 'caught' AS what, e.TraceId AS trace_id, e.Seq AS seq, e.Timestamp AS timestamp, e.SpanName AS function,
           n.line AS line, n.code AS type, '' AS message, false AS escaped, e.SpanId AS span_id
    FROM execscope_events AS e
    INNER JOIN (SELECT node_id, any(code) AS code, any(line) AS line FROM cpg_nodes WHERE kind = 'except'
                GROUP BY node_id) AS n ON n.node_id = e.NodeId
    WHERE e.EventName = 'execscope.branch' AND {caught:UInt8} AND ({trace:String} = '' OR e.TraceId = {trace:String})
)
SELECT * FROM (SELECT * FROM raised UNION ALL SELECT * FROM caught)
WHERE NOT (what = 'raised' AND (type IN ('SystemExit', 'GeneratorExit', 'StopIteration', 'StopAsyncIteration')))
ORDER BY timestamp DESC, seq DESC
LIMIT {limit:UInt32} + 1
"""
POSITIONED_TRACES = 10


class _Positions:
    """Cinema positions of recorded events, one cinema index per trace (at most POSITIONED_TRACES)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.films: dict[str, Any] = {}
        self.skipped = 0

    def of(self, trace: str, seq: int, ts_ns: int = 0) -> int | None:
        from execscope.queries.cinema import open_cinema

        film = self.films.get(trace)
        if film is None:
            if len(self.films) >= POSITIONED_TRACES:
                self.skipped += 1
                return None
            try:
                film = self.films[trace] = open_cinema(self.store, trace)
            except LookupError:
                return None
        if not film.multi:
            pos = film.position_of(seq)
            return int(pos) if pos < film.total else None
        # several processes: keys are (timestamp ns, seq, return flag); ts_ns may be cut to microseconds
        pos, keys = film.position_of((ts_ns, seq, 0)), film._index.keys
        for i in range(pos, min(pos + 64, film.total)):
            if keys[i][1] == seq and ts_ns <= keys[i][0] < ts_ns + 1000 and keys[i][2] == 0:
                return i
        return None


def _ns(ts: Any) -> int:
    """Nanoseconds since the epoch of a naive UTC datetime from the store (microsecond precision: only
    used to place an event of a trace spanning several processes)."""
    if not isinstance(ts, _dt.datetime):
        return 0
    delta = ts.replace(tzinfo=_dt.timezone.utc) - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def find_failures(store: Store, trace: str = "", include_caught: bool = True, limit: int = 20) -> dict[str, Any]:
    """Exceptions, newest first: where each was raised first (``what`` 'raised': type, message,
    function, line; ``escaped`` false when the frame that raised it caught it) and the handlers that
    caught one (``what`` 'caught': the ``except`` clause as ``type``), each with its trace and cinema
    position ``frame``."""
    limit = max(1, min(limit, MAX_ROWS))
    result = store.query(FAILURES_SQL, parameters={"trace": trace.strip().lower(), "caught": int(include_caught),
                                                   "limit": limit})
    rows = _rows(result.column_names, result.rows)[: limit + 1]
    positions = _Positions(store)
    for row in rows[:limit]:
        row["escaped"] = bool(row["escaped"])
        row["frame"] = positions.of(row["trace_id"], row["seq"], _ns(row["timestamp"]))
    answer = bounded("failures", rows, limit, hint="raise limit or give a trace")
    if positions.skipped:
        answer["left_out"] = "; ".join(x for x in (answer["left_out"], f"frame positions of {positions.skipped} "
                                                   "rows beyond the first traces (give trace=...)") if x)
    return answer


def frames(store: Store, trace: str, at: int = 0, count: int = 50, function: str = "") -> dict[str, Any]:
    """A cinema window: frames from position ``at`` on (``count`` of them; ``function``: only frames of
    functions whose name contains it). Each frame: seq (its position), kind, function, file, line,
    source, depth, locals, and var/value (writes), value (returns) or exception."""
    from execscope.queries.cinema import open_cinema, public

    count = max(1, min(count, MAX_FRAMES))
    film = open_cinema(store, trace)
    if not 0 <= at < film.total:
        raise ValueError(f"at={at} is outside the trace (0..{film.total - 1})")
    out: list[dict[str, Any]] = []
    scanned = 0
    stop_reason = ""
    for frame in film.frames(at, film.total):
        scanned += 1
        if function and function not in frame["function"]:
            if scanned >= SCAN_FRAMES:
                stop_reason = (f"scanned {SCAN_FRAMES} frames from {at} for {function!r}; "
                               f"continue from {frame['seq'] + 1}")
                break
            continue
        out.append(public(frame))
        if len(out) > count:
            break
    answer = bounded("frames", out, count, hint=f"continue with at={out[count]['seq']}" if len(out) > count else "",
                     total=film.total)
    if len(out) > count:
        answer["left_out"] = f"more frames from position {out[count]['seq']} on (of {film.total})"
    elif stop_reason:
        answer["left_out"] = stop_reason
    return answer


def state_at(store: Store, trace: str, at: int) -> dict[str, Any]:
    """Variables of every call alive at position ``at`` (outermost first): depth, function, span_id,
    variable, value."""
    from execscope.queries.correlated import state_at as _state_at

    result = _state_at(store, trace=trace, at=at)
    return bounded("variables", _rows(result.column_names, result.rows), MAX_ROWS)


def value_history(store: Store, var: str, trace: str = "", function: str = "", limit: int = 100) -> dict[str, Any]:
    """Every value ``var`` took (in one trace / function when given), in order: trace_id, seq (the
    recording's sequence number), timestamp, function, line, variable, value, node_id, and ``frame``,
    the cinema position of the write."""
    from execscope.queries.correlated import value_history as _history

    limit = max(1, min(limit, MAX_ROWS))
    result = _history(store, var=var, trace=trace, function=function, limit=limit + 1)
    rows = _rows(result.column_names, result.rows)
    positions = _Positions(store)
    for row in rows[:limit]:
        row["frame"] = positions.of(row["trace_id"], row["seq"], _ns(row["timestamp"]))
    return bounded("values", rows, limit, hint="raise limit or give a trace")


def why(store: Store, trace: str, at: int | None = None, var: str | None = None, max_steps: int = 16
        ) -> dict[str, Any]:
    """The root-cause chain (see :mod:`execscope.queries.why`), as steps and as the text
    ``execscope explain`` prints."""
    from execscope.queries.why import why as _why

    chain = _why(store, trace, at=at, var=var or None, max_steps=max(1, min(max_steps, 200)))
    answer = chain.as_dict()
    answer["text"] = chain.text()
    answer["left_out"] = (f"{len(chain.left_out)} inputs not followed (raise max_steps): " + "; ".join(
        chain.left_out[:10])) if chain.left_out else ""
    return answer  # bounded by max_steps; each sentence and value was bounded when the chain was made


def hot_paths(store: Store, function: str = "", limit: int = 20) -> dict[str, Any]:
    """Without ``function``: functions by total time (executions, total/self/p95 ms, code). With it:
    the paths through that function (branch arms taken per call) ranked by p95 latency."""
    from execscope.queries import correlated

    limit = max(1, min(limit, MAX_ROWS))
    if function:
        result = correlated.slow_paths(store, function=function, limit=limit + 1)
        return bounded("paths", _rows(result.column_names, result.rows), limit, hint="raise limit")
    result = correlated.hot_nodes(store, limit=limit + 1)
    return bounded("functions", _rows(result.column_names, result.rows), limit, hint="raise limit")


def coverage(store: Store, function: str = "", module: str = "", limit: int = 50) -> dict[str, Any]:
    """Per function: CFG nodes and edges executed vs not (least covered first)."""
    from execscope.queries import correlated

    limit = max(1, min(limit, MAX_ROWS))
    result = correlated.coverage(store, function=function, module=module, limit=limit + 1)
    return bounded("functions", _rows(result.column_names, result.rows), limit, hint="raise limit or give a module")


MAX_GRAPH_EDGES = 400


def function_graph(store: Store, function: str, kinds: Sequence[str] = ("CFG", "REACHING_DEF")) -> dict[str, Any]:
    """One function's control flow and data flow as text: its nodes (line, kind, code) and edges
    (``src -> dst  KIND label``) of the newest stored code version."""
    from execscope.queries.graph import load_function_graph

    wanted = tuple(k.strip().upper() for k in kinds if k.strip())
    unknown = set(wanted) - {"CFG", "CDG", "REACHING_DEF", "PHI", "CALL", "AST"}
    if unknown:
        raise ValueError(f"unknown edge kinds {sorted(unknown)}: use CFG, CDG, REACHING_DEF, PHI, CALL, AST")
    graph = load_function_graph(store, function, kinds=wanted or ("CFG",))
    prefix = function + ":"

    def short(node_id: str) -> str:
        return node_id[len(prefix):] if node_id.startswith(prefix) else node_id

    nodes = sorted(graph.nodes.items(), key=lambda kv: (int(kv[1].get("line") or 0), kv[0]))  # type: ignore[call-overload]
    lines = [f"{function} (code version {graph.code_version})", "nodes:"]
    lines += [f"  L{info.get('line', '')} {short(node_id)} [{info.get('kind', '')}] {info.get('code', '')}".rstrip()
              for node_id, info in nodes]
    lines.append("edges:")
    shown = graph.edges[:MAX_GRAPH_EDGES]
    lines += [f"  {short(src)} -> {short(dst)}  {kind}{' ' + label if label else ''}"
              for src, dst, kind, label in shown]
    left = len(graph.edges) - len(shown)
    return {"function": function, "code_version": graph.code_version, "kinds": list(wanted),
            "nodes": len(graph.nodes), "edges": len(graph.edges), "text": "\n".join(lines),
            "left_out": f"{left} more edges not shown (ask for fewer kinds)" if left else ""}


MAX_SOURCE_LINES = 200


def source(store: Store, node_id: str, code_version: str = "", context: int = 0) -> dict[str, Any]:
    """The code of a node (a function, a statement, ...) as it was recorded: its lines from the stored
    source of ``code_version`` (the newest version holding the node when not given), with ``context``
    lines around it."""
    rows = store.query(
        "SELECT code_version, kind, file, line, end_line FROM cpg_nodes WHERE node_id = {n:String} "
        "AND ({v:String} = '' OR code_version = {v:String}) ORDER BY inserted_at DESC LIMIT 1",
        parameters={"n": node_id, "v": code_version}).rows
    if not rows:
        raise LookupError(f"no node {node_id!r} in the store" + (f" at code version {code_version}" if code_version
                                                                  else ""))
    version, kind, file, line, end_line = rows[0]
    text_rows = store.query("SELECT any(source) FROM cpg_sources WHERE code_version = {v:String}",
                            parameters={"v": version}).rows
    text = text_rows[0][0] if text_rows and text_rows[0][0] else ""
    if not text:
        raise LookupError(f"the source of code version {version} is not stored")
    all_lines = text.splitlines()
    context = max(0, min(context, 50))
    first = max(1, line - context)
    last = min(len(all_lines), max(end_line, line) + context)
    cut = last - first + 1 > MAX_SOURCE_LINES
    if cut:
        last = first + MAX_SOURCE_LINES - 1
    width = len(str(last))
    body = "\n".join(f"{n:>{width}}  {all_lines[n - 1]}" for n in range(first, last + 1))
    return {"node_id": node_id, "kind": kind, "file": file, "code_version": version, "line": line,
            "end_line": end_line, "source": body,
            "left_out": f"lines {last + 1}..{max(end_line, line) + context} not shown" if cut else ""}


def sql(store: Store, query: str, max_rows: int = 200) -> dict[str, Any]:
    """One read-only statement. The engine enforces it, not a parser: the statement runs in a session of
    its own with ClickHouse's ``readonly = 1`` (writes, DDL and setting changes are refused) and with
    ``max_result_rows`` / ``max_result_bytes`` (the result stops there) and ``max_execution_time``
    fixed for that session; at most ``max_rows`` rows and MAX_ANSWER_BYTES come back."""
    max_rows = max(1, min(max_rows, SQL_MAX_ROWS))
    limits = {"max_result_rows": SQL_MAX_ROWS + 1, "max_result_bytes": SQL_MAX_BYTES, "result_overflow_mode": "break",
              "max_execution_time": SQL_TIMEOUT_S}
    with store.read_only(limits) as session:
        result = session.query(query)
    rows = _rows(result.column_names, result.rows)
    return bounded("rows", rows, max_rows, hint="add LIMIT or aggregate, or raise max_rows",
                   columns=list(result.column_names))
