"""Cinema frames: one recorded trace as the ordered sequence of what the program did, with the
variables of the running function at every step, loaded lazily in windows.

A frame is a call (span start), a statement (``line``), a branch arm taken, a value written
(``assign``), a return (span end) or an exception. Frames are ordered by the recording's sequence
numbers: within a process one counter orders every call, event and return of every thread exactly;
a trace spanning several processes is ordered by timestamp (one machine clock), ties by sequence.
``seq`` of a frame is its 0-based position in that order.

``locals`` of a frame maps each variable of the running function to the last value written to it up
to that point: the recorded arguments, then assignments in order. Values are the bounded, redacted
representations the recorder stored.

Nothing loads a whole trace: :class:`Cinema` reads windows of ``window`` frames (an ordered range
scan of the trace), the spans alive in the window, and each alive function's variables as they stood
at the window's start (one aggregate). Searches (next exception, next write of a variable, a line,
a text) run in ClickHouse and return a position. Every parameter is bound by the server.

Threading: a Cinema is not thread-safe; use one per viewer.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from execscope.storage.store import Store

FRAME_KINDS = ("call", "line", "branch", "assign", "return", "exception")

_TIMELINE = """
    SELECT 'call' AS kind, SpanId AS span_id, toUInt64OrZero(SpanAttributes['execscope.seq']) AS seq,
           Timestamp AS ts, NodeId AS node_id, toUInt32OrZero(SpanAttributes['code.line.number']) AS line,
           '' AS var, '' AS value
    FROM otel_traces WHERE TraceId = {trace:String} AND NodeId != ''
    UNION ALL
    SELECT 'return', SpanId, toUInt64OrZero(SpanAttributes['execscope.seq.end']),
           Timestamp + toIntervalNanosecond(Duration), NodeId, 0, '', SpanAttributes['execscope.return.value']
    FROM otel_traces WHERE TraceId = {trace:String} AND NodeId != '' AND StatusCode != 'STATUS_CODE_ERROR'
    UNION ALL
    SELECT multiIf(EventName = 'execscope.line', 'line', EventName = 'execscope.branch', 'branch',
                   EventName = 'execscope.assign', 'assign', 'exception'),
           SpanId, Seq, Timestamp, NodeId, LineNumber,
           if(EventName = 'exception', Attributes['exception.type'], VarName),
           if(EventName = 'exception', Attributes['exception.message'], VarValue)
    FROM execscope_events
    WHERE TraceId = {trace:String}
      AND EventName IN ('execscope.line', 'execscope.branch', 'execscope.assign', 'exception')
"""
_KEY = "(if({multi:UInt8}, toUnixTimestamp64Nano(ts), 0), seq, kind = 'return')"

WINDOW_SQL = f"""
SELECT kind, span_id, seq, ts, node_id, line, var, value, toUnixTimestamp64Nano(ts) AS ts_ns
FROM ({_TIMELINE}) ORDER BY {_KEY} LIMIT {{limit:UInt32}} OFFSET {{offset:UInt64}}
"""
COUNT_SQL = f"SELECT count() FROM ({_TIMELINE})"
POSITION_SQL = f"""
SELECT count() FROM ({_TIMELINE})
WHERE {_KEY} < ({{k0:UInt64}}, {{k1:UInt64}}, {{k2:UInt8}})
"""
SPANS_SQL = """
SELECT SpanId, ParentSpanId, NodeId, CodeVersion, SpanAttributes['code.function.name'],
       SpanAttributes['code.file.path'], toUInt32OrZero(SpanAttributes['code.line.number']),
       mapFilter((k, v) -> startsWith(k, 'execscope.arg.'), SpanAttributes),
       toUInt64OrZero(SpanAttributes['execscope.seq']) AS s0, toUInt64OrZero(SpanAttributes['execscope.seq.end']) AS s1,
       toUnixTimestamp64Nano(Timestamp) AS t0, toUnixTimestamp64Nano(Timestamp) + Duration AS t1,
       ResourceAttributes['process.pid']
FROM otel_traces
WHERE TraceId = {trace:String} AND NodeId != ''
  AND if({multi:UInt8}, t0 <= {hi_ts:UInt64} AND t1 >= {lo_ts:UInt64}, s0 <= {hi:UInt64} AND s1 >= {lo:UInt64})
"""
LOCALS_SQL = """
SELECT SpanId, VarName, argMax((VarValue, NodeId), (Timestamp, Seq))
FROM execscope_events
WHERE TraceId = {trace:String} AND EventName = 'execscope.assign' AND SpanId IN {spans:Array(String)}
  AND if({multi:UInt8}, (toUnixTimestamp64Nano(Timestamp), Seq) < ({lo_ts:UInt64}, {lo:UInt64}), Seq < {lo:UInt64})
GROUP BY SpanId, VarName, splitByChar(':', NodeId)[2]
"""

LAST_LINE_SQL = """
SELECT SpanId, argMax(LineNumber, (Timestamp, Seq)) FROM execscope_events
WHERE TraceId = {trace:String} AND EventName = 'execscope.line' AND SpanId IN {spans:Array(String)}
  AND if({multi:UInt8}, (toUnixTimestamp64Nano(Timestamp), Seq) < ({lo_ts:UInt64}, {lo:UInt64}), Seq < {lo:UInt64})
GROUP BY SpanId
"""


@dataclass(slots=True)
class _Span:
    span_id: str
    parent: str
    node_id: str
    code_version: str
    function: str
    file: str
    line: int
    args: dict[str, str]
    depth: int = 0


class TraceNotFound(LookupError):
    """No recorded frames for the trace id."""


class Cinema:
    """Random access to the frames of one trace (see the module docstring)."""

    def __init__(self, store: Store, trace_id: str, window: int = 1000, cached_windows: int = 8) -> None:
        self.store = store
        self.trace_id = trace_id.strip().lower()
        self.window = window
        pids = store.query("SELECT uniqExact(ResourceAttributes['process.pid']) FROM otel_traces "
                           "WHERE TraceId = {trace:String} AND NodeId != ''",
                           parameters={"trace": self.trace_id}).rows
        self.multi = 1 if pids and pids[0][0] > 1 else 0
        self._total: int | None = None
        self._windows: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        self._cached = cached_windows
        self._sources: dict[str, list[str] | None] = {}
        self._node_lines: dict[tuple[str, str], int] = {}

    def _params(self, **extra: Any) -> dict[str, Any]:
        return {"trace": self.trace_id, "multi": self.multi, **extra}

    # --- size and random access ------------------------------------------------------------------
    @property
    def total(self) -> int:
        if self._total is None:
            self._total = int(self.store.query(COUNT_SQL, parameters=self._params()).rows[0][0])
        return self._total

    def frame(self, index: int) -> dict[str, Any]:
        """Frame at ``index`` (0-based; negative counts from the end). Raises IndexError."""
        if index < 0:
            index += self.total
        if index < 0:
            raise IndexError(index)
        window = self._window(index // self.window)
        offset = index % self.window
        if offset >= len(window):
            raise IndexError(index)
        return window[offset]

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[dict[str, Any]]:
        """Frames ``start`` .. ``stop - 1`` in order, loading one window at a time."""
        stop = self.total if stop is None else min(stop, self.total)
        i = start
        while i < stop:
            window = self._window(i // self.window)
            if not window:
                return
            for f in window[i % self.window: i % self.window + (stop - i)]:
                yield f
                i += 1

    # --- navigation (positions computed by the server) -------------------------------------------
    def _key(self, f: dict[str, Any]) -> tuple[int, int, int]:
        return (f["_ts_ns"] if self.multi else 0, f["_seq"], 1 if f["kind"] == "return" else 0)

    def position_of(self, key: tuple[int, int, int]) -> int:
        rows = self.store.query(POSITION_SQL, parameters=self._params(k0=key[0], k1=key[1], k2=key[2])).rows
        return int(rows[0][0])

    def find(self, index: int, forward: bool = True, *, kind: str | None = None, var: str | None = None,
             line: int | None = None, text: str | None = None, span: str | None = None) -> int | None:
        """Position of the nearest frame after (before) ``index`` matching every given condition:
        ``kind``, a write of variable ``var``, source ``line``, ``text`` (in the value, variable or
        the node's code, case-insensitive) or belonging to ``span``. None when there is none."""
        here = self.frame(index)
        k = self._key(here)
        conditions = [f"{_KEY} {'>' if forward else '<'} ({{k0:UInt64}}, {{k1:UInt64}}, {{k2:UInt8}})"]
        params = self._params(k0=k[0], k1=k[1], k2=k[2])
        if kind is not None:
            conditions.append("t.kind = {kind:String}")
            params["kind"] = kind
        if var is not None:
            conditions.append("t.kind = 'assign' AND t.var = {var:String}")
            params["var"] = var
        if line is not None:
            conditions.append("t.line = {line:UInt32} AND t.kind IN ('line', 'call')")
            params["line"] = line
        if span is not None:
            conditions.append("t.span_id = {span:String}")
            params["span"] = span
        join = ""
        if text is not None:
            join = ("LEFT JOIN (SELECT node_id, any(code) AS code FROM cpg_nodes GROUP BY node_id) AS n "
                    "ON n.node_id = t.node_id")
            conditions.append("(positionCaseInsensitiveUTF8(t.value, {text:String}) > 0 OR "
                              "positionCaseInsensitiveUTF8(t.var, {text:String}) > 0 OR "
                              "positionCaseInsensitiveUTF8(n.code, {text:String}) > 0)")
            params["text"] = text
        order = "ASC" if forward else "DESC"
        # the joined subquery has only node_id and code: the timeline's other names stay unambiguous
        sql = (f"SELECT seq, toUnixTimestamp64Nano(ts), kind = 'return' FROM ({_TIMELINE}) AS t {join} "
               f"WHERE {' AND '.join(conditions)} ORDER BY {_KEY} {order} LIMIT 1")
        rows = self.store.query(sql, parameters=params).rows
        if not rows:
            return None
        seq, ts_ns, is_return = rows[0]
        return self.position_of((ts_ns if self.multi else 0, seq, int(is_return)))

    def step_over(self, index: int, forward: bool = True) -> int | None:
        """Next (previous) frame of the same call, skipping callees; at the call's end, its caller's."""
        here = self.frame(index)
        found = self.find(index, forward, span=here["span_id"])
        if found is not None:
            return found
        return self.step_out(index, forward)

    def step_out(self, index: int, forward: bool = True) -> int | None:
        """The frame right after this call returns (forward) or the call itself (backward)."""
        here = self.frame(index)
        if forward:
            end = self.find(index, True, span=here["span_id"], kind="return")
            if end is None:
                end = self.find(index, True, span=here["span_id"], kind="exception")
            if end is None:
                return None
            return end + 1 if end + 1 < self.total else end
        start = self.find(index, False, span=here["span_id"], kind="call")
        if start is None:
            return None
        return start - 1 if start > 0 else start

    # --- loading -----------------------------------------------------------------------------------
    def _window(self, n: int) -> list[dict[str, Any]]:
        cached = self._windows.get(n)
        if cached is not None:
            self._windows.move_to_end(n)
            return cached
        rows = self.store.query(WINDOW_SQL, parameters=self._params(limit=self.window,
                                                                     offset=n * self.window)).rows
        frames = self._build(rows, n * self.window)
        self._windows[n] = frames
        if len(self._windows) > self._cached:
            self._windows.popitem(last=False)
        return frames

    def _build(self, rows: list[tuple[Any, ...]], first_index: int) -> list[dict[str, Any]]:
        if not rows:
            return []
        seqs = [r[2] for r in rows]
        ts = [r[8] for r in rows]
        lo, hi = min(seqs), max(seqs)
        spans = self._spans(lo, hi, min(ts), max(ts))
        live = list(spans)
        initial: dict[str, dict[str, str]] = {sid: dict(s.args) for sid, s in spans.items()}
        if live:
            for span_id, name, (value, target) in self.store.query(LOCALS_SQL, parameters=self._params(
                    spans=live, lo=rows[0][2], lo_ts=rows[0][8])).rows:
                owner = spans[span_id].node_id if span_id in spans else ""
                initial.setdefault(span_id, {})[variable_label(owner, target, name)] = value
        self._load_node_lines(rows, spans)
        out: list[dict[str, Any]] = []
        last_line: dict[str, int] = {}
        if live:  # where each alive call stood when the window starts (a return shows that line)
            last_line.update(self.store.query(LAST_LINE_SQL, parameters=self._params(
                spans=live, lo=rows[0][2], lo_ts=rows[0][8])).rows)
        for i, (kind, span_id, seq, ts_value, node_id, line, var, value, ts_ns) in enumerate(rows):
            span = spans.get(span_id)
            local = initial.setdefault(span_id, {})
            if kind == "call" and span is not None:
                local.clear()
                local.update(span.args)
            elif kind == "assign":
                var = variable_label(span.node_id if span is not None else "", node_id, var)
                local[var] = value
            version = span.code_version if span is not None else ""
            if not line:
                line = (last_line.get(span_id, 0) if kind == "return" else
                        self._node_lines.get((version, node_id), 0) or last_line.get(span_id, 0))
            if kind in ("line", "call"):
                last_line[span_id] = line
            frame: dict[str, Any] = {
                "seq": first_index + i,
                "timestamp": ts_value.isoformat() if hasattr(ts_value, "isoformat") else str(ts_value),
                "node_id": node_id,
                "kind": kind,
                "function": span.function if span is not None else "",
                "file": span.file if span is not None else "",
                "line": line,
                "source": self._source_line(version, span.file if span is not None else "", line),
                "depth": span.depth if span is not None else 0,
                "locals": dict(local),
                "span_id": span_id,
                "_seq": seq,
                "_ts_ns": ts_ns,
                "_version": version,
            }
            if kind == "assign":
                frame["var"], frame["value"] = var, value
            elif kind == "return":
                frame["value"] = value
            elif kind == "exception":
                frame["exception"] = f"{var}: {value}" if value else var
            out.append(frame)
        return out

    def _spans(self, lo: int, hi: int, lo_ts: int, hi_ts: int) -> dict[str, _Span]:
        rows = self.store.query(SPANS_SQL, parameters=self._params(lo=lo, hi=hi, lo_ts=lo_ts, hi_ts=hi_ts)).rows
        spans: dict[str, _Span] = {}
        for span_id, parent, node_id, version, function, file, line, args, *_ in rows:
            spans[span_id] = _Span(span_id, parent, node_id, version, function, file, line,
                                   {k[len("execscope.arg."):]: v for k, v in args.items()})
        for span in spans.values():  # depth: instrumented ancestors alive in the window
            depth, parent, seen = 0, span.parent, 0
            while parent in spans and seen < 10000:
                depth += 1
                parent = spans[parent].parent
                seen += 1
            span.depth = depth
        return spans

    def _load_node_lines(self, rows: list[tuple[Any, ...]], spans: dict[str, _Span]) -> None:
        wanted: dict[str, set[str]] = {}
        for _kind, span_id, _seq, _ts, node_id, line, *_ in rows:
            span = spans.get(span_id)
            if not line and span is not None and (span.code_version, node_id) not in self._node_lines:
                wanted.setdefault(span.code_version, set()).add(node_id)
        for version, ids in wanted.items():
            found = self.store.query(
                "SELECT node_id, any(line) FROM cpg_nodes WHERE code_version = {v:String} "
                "AND node_id IN {ids:Array(String)} GROUP BY node_id", parameters={"v": version, "ids": sorted(ids)}
            ).rows
            for node_id, line in found:
                self._node_lines[(version, node_id)] = line
            for node_id in ids:
                self._node_lines.setdefault((version, node_id), 0)

    def source_lines(self, code_version: str, file: str = "") -> list[str] | None:
        """The module's source lines as recorded (``cpg_sources``), else the file if it is readable."""
        if code_version in self._sources:
            return self._sources[code_version]
        rows = self.store.query("SELECT any(source) FROM cpg_sources WHERE code_version = {v:String}",
                                parameters={"v": code_version}).rows
        text = rows[0][0] if rows and rows[0][0] else None
        if text is None and file and os.path.isfile(file):
            try:
                with open(file, encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
            except OSError:
                text = None
        lines = text.splitlines() if text is not None else None
        self._sources[code_version] = lines
        return lines

    def _source_line(self, version: str, file: str, line: int) -> str:
        lines = self.source_lines(version, file) if version else None
        if lines is None or not 0 < line <= len(lines):
            return ""
        return lines[line - 1]


def variable_label(function_node: str, target_node: str, name: str) -> str:
    """``name`` as the running frame sees it: a class body running inline in a function or module
    frame binds class attributes, shown as ``Class.name``."""
    scope = target_node.split(":")[1] if target_node.count(":") >= 2 else ""
    own = function_node.split(":", 1)[1] if ":" in function_node else ""
    if not scope or scope == own:
        return name
    return f"{scope.rsplit('.', 1)[-1]}.{name}"


def public(frame: dict[str, Any]) -> dict[str, Any]:
    """A frame without the private ordering keys (what JSON output shows)."""
    return {k: v for k, v in frame.items() if not k.startswith("_")}


def open_cinema(store: Store, trace_id: str, window: int = 1000) -> Cinema:
    """A Cinema over ``trace_id``; raises TraceNotFound when nothing was recorded for it."""
    cinema = Cinema(store, trace_id, window)
    if cinema.total == 0:
        raise TraceNotFound(f"no recorded frames for trace {trace_id!r} (see `execscope traces`)")
    return cinema


def transcript_line(frame: dict[str, Any]) -> str:
    """One readable line per frame (``execscope cinema --format text``)."""
    indent = "  " * frame["depth"]
    kind = frame["kind"]
    where = f"{frame['function']}:{frame['line']}"
    if kind == "call":
        args = ", ".join(f"{k}={v}" for k, v in frame["locals"].items())
        what = f"call {frame['function']}({args})"
    elif kind == "return":
        what = f"return {frame.get('value', '')}"
    elif kind == "assign":
        what = f"{frame['var']} = {frame['value']}"
    elif kind == "exception":
        what = f"raise {frame.get('exception', '')}"
    elif kind == "branch":
        what = f"branch {frame['node_id'].rsplit(':', 1)[-1]}"
    else:
        what = frame["source"].strip()
    return f"{frame['seq']:>7} {indent}{kind:<9} {where:<40} {what}"
