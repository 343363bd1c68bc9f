"""Cinema frames: one recorded trace as the ordered sequence of what the program did, with the
variables of the running function at every step, loaded lazily in windows.

A frame is a call (span start), a statement (``line``), a branch arm taken, a value written
(``assign``), a return (span end) or an exception. Frames are ordered by the recording's sequence
numbers: within a process one counter orders every call, event and return of every thread exactly;
a trace spanning several processes is ordered by hybrid logical clock (``Hlc``: the timestamp raised
past every message the process had received, see instrumentation/capture/clocks.py), ties by sequence.
``seq`` of a frame is its 0-based position in that order.

``locals`` of a frame maps each variable of the running function to the last value written to it up
to that point: the recorded arguments, then assignments in order. Values are the bounded, redacted
representations the recorder stored.

How it stays fast on long traces: opening a trace reads its spans (calls) and the sequence numbers
of its events, and keeps only the sorted frame keys (a few bytes per frame) and the span table; a
window of ``window`` frames is then one primary-key range read of ``execscope_events`` plus, for the
calls alive at the window's start, one aggregate giving their variables and line at that point.
Searches run in ClickHouse and come back as a key, turned into a position by bisection. Every
parameter is bound by the server.

Threading: a Cinema is not thread-safe; use one per viewer.
"""

from __future__ import annotations

import bisect
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from execscope.storage.store import Store

FRAME_KINDS = ("call", "line", "branch", "assign", "return", "exception")
_EVENT_KIND = {"execscope.line": "line", "execscope.branch": "branch", "execscope.assign": "assign",
               "exception": "exception"}
_EVENT_NAMES = tuple(_EVENT_KIND)

# The index of a trace, as one row of arrays in RowBinary (parsed with ``array``: no per-row objects).
SPAN_INDEX_SQL = """
SELECT groupArray(toFixedString(SpanId, 16)), groupArray(toFixedString(ParentSpanId, 16)),
       groupArray(Seq),
       groupArray(SeqEnd),
       groupArray(toUInt64(toUnixTimestamp64Nano(Timestamp))),
       groupArray(toUInt64(toUnixTimestamp64Nano(Timestamp) + Duration)),
       groupArray(toUInt8(StatusCode = 'STATUS_CODE_ERROR')),
       groupArray(Hlc), groupArray(HlcEnd),
       toUInt64(uniqExact(ResourceAttributes['host.name'], ResourceAttributes['process.pid']))
FROM otel_traces
WHERE TraceId = {trace:String} AND NodeId != '' AND length(SpanId) = 16
"""
EVENT_KEYS_SQL = """
SELECT groupArray(Seq), groupArray(Hlc) FROM execscope_events
WHERE TraceId = {trace:String} AND EventName IN {names:Array(String)}
"""
SPAN_DETAILS_SQL = """
SELECT SpanId, NodeId, CodeVersion, SpanAttributes['code.function.name'], SpanAttributes['code.file.path'],
       toUInt32OrZero(SpanAttributes['code.line.number']),
       mapFilter((k, v) -> startsWith(k, 'execscope.arg.'), SpanAttributes), Timestamp,
       SpanAttributes['execscope.return.value']
FROM otel_traces
WHERE TraceId = {trace:String} AND SpanId IN {spans:Array(String)}
"""
# Every call's details at once, each column one string of NUL-separated values (split in C, no
# per-value decoding; a value holding a NUL makes the counts differ and the blocks are read instead).
SPAN_BULK_SQL = """
SELECT count(), arrayStringConcat(groupArray(SpanId), '\\0'), arrayStringConcat(groupArray(NodeId), '\\0'),
       arrayStringConcat(groupArray(CodeVersion), '\\0'),
       arrayStringConcat(groupArray(SpanAttributes['code.function.name']), '\\0'),
       arrayStringConcat(groupArray(SpanAttributes['code.file.path']), '\\0'),
       arrayStringConcat(groupArray(toString(toUInt32OrZero(SpanAttributes['code.line.number']))), '\\0'),
       arrayStringConcat(groupArray(toJSONString(mapFilter((k, v) -> startsWith(k, 'execscope.arg.'), SpanAttributes))),
                         '\\0'),
       arrayStringConcat(groupArray(SpanAttributes['execscope.return.value']), '\\0')
FROM otel_traces
WHERE TraceId = {trace:String} AND NodeId != '' AND length(SpanId) = 16
"""
WINDOW_EVENTS_SQL = """
SELECT EventName, SpanId, Seq, Hlc, Timestamp, NodeId, LineNumber,
       if(EventName = 'exception', Attributes['exception.type'], VarName),
       if(EventName = 'exception', Attributes['exception.message'], VarValue)
FROM execscope_events
WHERE TraceId = {trace:String} AND EventName IN {names:Array(String)}
  AND if({multi:UInt8}, Hlc BETWEEN {lo_ts:UInt64} AND {hi_ts:UInt64},
         Seq BETWEEN {lo:UInt64} AND {hi:UInt64})
"""
# The same in one process (one sequence counter), with the state of the calls alive at the window's
# start read in the same query: recent calls' writes and lines before it, older calls' last ones.
WINDOW_STATE_SQL = """
SELECT EventName, SpanId, Seq, toUnixTimestamp64Nano(Timestamp), Timestamp, NodeId, LineNumber,
       if(EventName = 'exception', Attributes['exception.type'], VarName),
       if(EventName = 'exception', Attributes['exception.message'], VarValue),
       '', '', CAST(map(), 'Map(LowCardinality(String), String)')
FROM execscope_events
WHERE TraceId = {trace:String} AND EventName IN {names:Array(String)}
  AND (Seq BETWEEN {lo:UInt64} AND {hi:UInt64}"""
WINDOW_RECENT_SQL = """
       OR (Seq >= {since:UInt64} AND Seq < {lo:UInt64} AND SpanId IN {recent:Array(String)}
           AND EventName IN ('execscope.assign', 'execscope.line'))"""
WINDOW_POINTS_SQL = """
       OR (Seq IN {points:Array(UInt64)} AND SpanId IN {old:Array(String)})"""
WINDOW_DETAILS_SQL = """
UNION ALL
SELECT '', SpanId, toUInt64(0), toInt64(0), Timestamp, NodeId, toUInt32OrZero(SpanAttributes['code.line.number']),
       CodeVersion, SpanAttributes['execscope.return.value'], SpanAttributes['code.function.name'],
       SpanAttributes['code.file.path'], mapFilter((k, v) -> startsWith(k, 'execscope.arg.'), SpanAttributes)
FROM otel_traces
WHERE TraceId = {trace:String} AND NodeId != '' AND length(SpanId) = 16
  AND ({blocks})
"""
WINDOW_DETAILS_BLOCK = ("(Timestamp BETWEEN fromUnixTimestamp64Nano({{t0_{n}:Int64}}) "
                        "AND fromUnixTimestamp64Nano({{t1_{n}:Int64}}) "
                        "AND Seq BETWEEN {{s0_{n}:UInt64}} AND {{s1_{n}:UInt64}})")
"""The details of a block of calls read with a window (rows with an empty EventName; the calls of a
block started in this time and sequence range: the range prunes the table by its sort key)."""
WRITES_INDEX_SQL = """
SELECT SpanId, EventName, VarName, any(NodeId), arraySort(groupArray(Seq))
FROM execscope_events
WHERE TraceId = {trace:String} AND Seq BETWEEN {lo:UInt64} AND {hi:UInt64} AND SpanId IN {spans:Array(String)}
  AND EventName IN ('execscope.assign', 'execscope.line')
GROUP BY SpanId, EventName, VarName, if(EventName = 'execscope.assign', splitByChar(':', NodeId)[2], '')
"""
# Where each alive call stood at a window's start: its last line and its variables' last values.
STATE_BEFORE_SQL = """
SELECT SpanId, EventName, VarName, argMax((VarValue, NodeId, LineNumber), (Hlc, Seq))
FROM execscope_events
WHERE TraceId = {trace:String} AND EventName IN ('execscope.assign', 'execscope.line')
  AND SpanId IN {spans:Array(String)}
  AND if({multi:UInt8}, (Hlc, Seq) < ({lo_ts:UInt64}, {lo:UInt64}), Seq < {lo:UInt64})
GROUP BY SpanId, EventName, VarName, if(EventName = 'execscope.assign', splitByChar(':', NodeId)[2], '')
"""

Key = Any
"""Within one process the sequence number (an int: one counter orders everything); across processes
(hybrid logical clock ns, sequence number, 1 for a return)."""


@dataclass(slots=True)
class _Span:
    span_id: str
    parent: str
    s0: int
    s1: int
    t0: int
    t1: int
    failed: bool
    h0: int = 0  # hybrid logical clock (ns) at the call and at its end: the keys across processes
    h1: int = 0
    depth: int = -1
    call_key: Key = 0
    return_key: Key | None = None
    loaded: bool = False  # the details below are read when a window first needs them
    node_id: str = ""
    code_version: str = ""
    function: str = ""
    file: str = ""
    line: int = 0
    args: dict[str, str] = field(default_factory=dict)
    start: Any = None
    returned: str = ""


def _arrays(store: Store, sql: str, params: dict[str, Any], layout: tuple[str, ...], scalars: int
            ) -> tuple[list[Any], list[int]]:
    """One result row of arrays (``layout``: 'Q' UInt64, 'B' UInt8, 'S16' FixedString(16)) followed by
    ``scalars`` UInt64 values, read as RowBinary: large arrays cost no Python object per element."""
    import array as _array

    data = store.raw(sql, params, fmt="RowBinary")
    pos = 0
    out: list[Any] = []

    def varint() -> int:
        nonlocal pos
        shift = value = 0
        while True:
            b = data[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7

    for kind in layout:
        n = varint()
        if kind == "S16":
            chunk = data[pos:pos + 16 * n]
            pos += 16 * n
            text = chunk.decode("latin-1")
            out.append([text[i:i + 16].rstrip("\0") if text[i] == "\0" else text[i:i + 16]
                        for i in range(0, 16 * n, 16)])
        else:
            width = 8 if kind == "Q" else 1
            values = _array.array("Q" if kind == "Q" else "B")
            values.frombytes(data[pos:pos + width * n])
            pos += width * n
            out.append(values)
    tail = _array.array("Q")
    tail.frombytes(data[pos:pos + 8 * scalars])
    return out, list(tail)


class TraceNotFound(LookupError):
    """No recorded frames for the trace id."""


@dataclass(slots=True)
class _Index:
    keys: list[Key] = field(default_factory=list)
    spans: dict[str, _Span] = field(default_factory=dict)
    by_key: dict[Key, tuple[str, _Span]] = field(default_factory=dict)
    """Call and return keys -> ('call' | 'return', span)."""


class Cinema:
    """Random access to the frames of one trace (see the module docstring)."""

    def __init__(self, store: Store, trace_id: str, window: int = 256, cached_windows: int = 16) -> None:
        self.store = store
        self.trace_id = trace_id.strip().lower()
        self.window = window
        self.multi = 0
        self._windows: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        self._cached = cached_windows
        self._sources: dict[str, list[str] | None] = {}
        self._node_lines: dict[tuple[str, str], int] = {}
        self._by_call: list[_Span] | None = None
        self._call_rank: dict[int, int] = {}
        self._bulk: dict[str, tuple[str, ...]] | None = None
        self._write_index: dict[str, dict[tuple[str, str, str], list[int]]] = {}
        """Per older call: sequence numbers of its writes per variable and of its lines (_writes)."""
        self._starts: dict[int, tuple[dict[str, dict[str, str]], dict[str, int]]] = {}
        """Per cached window: variables and last line of the calls alive at its first frame."""
        self._index = self._load_index()
        self._call_keys: list[Key] = []
        self._block_end: list[Key] = []
        self._end_of: dict[int, Key] = {}
        self._alive_index()

    def _params(self, **extra: Any) -> dict[str, Any]:
        return {"trace": self.trace_id, "multi": self.multi, **extra}

    def _load_index(self) -> _Index:
        index = _Index()
        (ids, parents, s0s, s1s, t0s, t1s, failed, h0s, h1s), pids = _arrays(
            self.store, SPAN_INDEX_SQL, {"trace": self.trace_id}, ("S16", "S16", "Q", "Q", "Q", "Q", "B", "Q", "Q"), 1)
        self.multi = 1 if pids[0] > 1 else 0
        multi = self.multi
        by_key, by_id = index.by_key, index.spans
        for span_id, parent, s0, s1, t0, t1, bad, h0, h1 in zip(ids, parents, s0s, s1s, t0s, t1s, failed, h0s, h1s):
            span = _Span(span_id, parent, s0, s1, t0, t1, bad == 1, h0, h1)
            span.call_key = key = (h0, s0, 0) if multi else s0
            by_key[key] = ("call", span)
            if not bad:
                span.return_key = key = (h1, s1, 1) if multi else s1
                by_key[key] = ("return", span)
            by_id[span_id] = span
        spans = index.spans
        for span in spans.values():  # call depth: instrumented ancestors in this trace (memoised walk up)
            if span.depth >= 0:
                continue
            chain = [span]
            parent = spans.get(span.parent)
            while parent is not None and parent.depth < 0 and len(chain) < 1_000_000:
                chain.append(parent)
                parent = spans.get(parent.parent)
            depth = parent.depth + 1 if parent is not None and parent.depth >= 0 else 0
            for s in reversed(chain):
                s.depth = depth
                depth += 1
        (seqs, stamps), _ = _arrays(self.store, EVENT_KEYS_SQL, {"trace": self.trace_id, "names": list(_EVENT_NAMES)},
                                    ("Q", "Q"), 0)
        keys = list(index.by_key)
        keys.extend(zip(stamps, seqs, [0] * len(seqs)) if multi else seqs)
        keys.sort()
        index.keys = keys
        return index

    DETAIL_BLOCK = 256
    """Span details are read for blocks of this many spans (in call order) at once: reading a few
    spans costs about as much as reading a few hundred (the engine decodes whole granules), so one
    read serves the windows around it and most steps need none."""

    def _details(self, spans: list[_Span]) -> None:
        """Read what frames show about these spans (function, file, arguments, return value)."""
        if not any(not s.loaded for s in spans):
            return
        missing = self._missing_blocks(spans)
        for start in range(0, len(missing), 5000):
            chunk = {s.span_id: s for s in missing[start:start + 5000]}
            rows = self.store.query(SPAN_DETAILS_SQL, parameters={"trace": self.trace_id, "spans": list(chunk)}).rows
            self._set_details(chunk, rows)

    BULK_CALLS = 250_000
    """Traces with at most this many calls have every call's details read at once, when the first
    are needed (a few strings per call, parsed per call when shown); larger ones in blocks. The read
    peaks at about 1.3 KB per call (175 MB for the 130,002 calls of a 975,546-frame trace)."""

    def _bulk_details(self) -> bool:
        """Read every call's details as strings (once); False when the trace is too large or a value
        cannot be split apart."""
        if self._bulk is None:
            self._bulk = {}
            if len(self._index.spans) > self.BULK_CALLS:
                return False
            data = self.store.raw(SPAN_BULK_SQL, {"trace": self.trace_id}, fmt="RowBinary")
            count = int.from_bytes(data[:8], "little")
            pos, columns = 8, []
            for _ in range(8):
                shift = length = 0
                while True:
                    b = data[pos]
                    pos += 1
                    length |= (b & 0x7F) << shift
                    shift += 7
                    if b < 0x80:
                        break
                columns.append(data[pos:pos + length].decode("utf-8", errors="replace").split("\0") if count else [])
                pos += length
            if any(len(c) != count for c in columns):
                return False
            ids, *rest = columns
            for c in range(5):  # node, version, function, file, line: one string object per distinct value
                distinct: dict[str, str] = {}
                rest[c] = [distinct.setdefault(v, v) for v in rest[c]]
            self._bulk = {span_id: row for span_id, row in zip(ids, zip(*rest))}
        return bool(self._bulk)

    def details_in_memory(self) -> bool:
        """Whether every call's details are at hand without a query (:meth:`load_calls` is cheap)."""
        return self._bulk_details()

    def _fill(self, spans: list[_Span]) -> list[_Span]:
        """Fill the details of these calls from the bulk read; the calls it does not hold."""
        import json

        left = []
        bulk = self._bulk or {}
        for span in spans:
            row = bulk.get(span.span_id)
            if row is None:
                left.append(span)
                continue
            node_id, version, function, file, line, args, returned = row
            span.node_id, span.code_version, span.function, span.file, span.line = (
                node_id, version, function, file, int(line))
            span.args = {k[len("execscope.arg."):]: v for k, v in json.loads(args).items()}
            span.start = _EPOCH + timedelta(microseconds=span.t0 // 1000)
            span.returned, span.loaded = returned, True
        return left

    def _missing_blocks(self, spans: list[_Span]) -> list[_Span]:
        """The calls without details in the blocks holding these calls, in call order."""
        if self._bulk_details():
            spans = self._fill([s for s in spans if not s.loaded])
        by_call = self._calls_in_order()
        blocks = {self._call_rank[id(sp)] // self.DETAIL_BLOCK for sp in spans if not sp.loaded}
        return [sp for b in sorted(blocks)
                for sp in by_call[b * self.DETAIL_BLOCK:(b + 1) * self.DETAIL_BLOCK] if not sp.loaded]

    @staticmethod
    def _set_details(chunk: dict[str, _Span], rows: Any) -> None:
        """Fill the calls of ``chunk`` from rows of SPAN_DETAILS_SQL's shape (others are ignored)."""
        for span_id, node_id, version, function, file, line, args, ts, returned in rows:
            span = chunk.get(span_id)
            if span is not None:
                span.node_id, span.code_version, span.function, span.file, span.line = (
                    node_id, version, function, file, line)
                span.args = {k[len("execscope.arg."):]: v for k, v in args.items()}
                span.start, span.returned, span.loaded = ts, returned, True
        for span in chunk.values():
            span.loaded = True

    # --- size and random access ------------------------------------------------------------------
    @property
    def total(self) -> int:
        return len(self._index.keys)

    def frame(self, index: int) -> dict[str, Any]:
        """Frame at ``index`` (0-based; negative counts from the end). Raises IndexError."""
        if index < 0:
            index += self.total
        if not 0 <= index < self.total:
            raise IndexError(index)
        return self._window(index // self.window)[index % self.window]

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[dict[str, Any]]:
        """Frames ``start`` .. ``stop - 1`` in order, loading one window at a time."""
        stop = self.total if stop is None else min(stop, self.total)
        i = start
        while i < stop:
            window = self._window(i // self.window)
            for f in window[i % self.window: i % self.window + (stop - i)]:
                yield f
                i += 1

    # --- the span table (read by the debugger model in breakpoints.py) ---------------------------
    def calls(self) -> dict[str, _Span]:
        """Every recorded call of the trace by span id (ids, parent, keys, depth, failed flag); the
        details (function, file, arguments) are filled by :meth:`load_calls`."""
        return self._index.spans

    def load_calls(self, spans: list[_Span]) -> None:
        """Read the details of these calls (function, file, line, arguments, return value)."""
        self._details(spans)

    def position_at(self, ts: int, seq: int) -> int:
        """Position of the frame recorded at (timestamp ns, sequence number)."""
        return self.position_of(self._key(ts, seq))

    # --- navigation ------------------------------------------------------------------------------
    def position_of(self, key: Key) -> int:
        return bisect.bisect_left(self._index.keys, key)

    def _key(self, ts: int, seq: int) -> Key:
        return (ts, seq, 0) if self.multi else seq

    def _parts(self, key: Key) -> tuple[int, int, int]:
        """(timestamp or 0, sequence number, return flag) of a key."""
        return key if self.multi else (0, key, 0)

    def find(self, index: int, forward: bool = True, *, kind: str | None = None, var: str | None = None,
             line: int | None = None, text: str | None = None, span: str | None = None) -> int | None:
        """Position of the nearest frame after (before) ``index`` matching every given condition:
        ``kind``, a write of variable ``var``, source ``line``, ``text`` (in the value, variable or
        the node's code, case-insensitive) or belonging to ``span``. None when there is none."""
        here = self._index.keys[index]
        best: Key | None = None
        if kind in (None, "call", "return") and var is None and line is None and text is None:
            best = self._span_key(here, forward, kind, span)
        if kind in (None, "line", "branch", "assign", "exception"):
            found = self._event_key(here, forward, kind, var, line, text, span)
            if found is not None and (best is None or (found < best if forward else found > best)):
                best = found
        return None if best is None else self.position_of(best)

    def _span_key(self, here: Key, forward: bool, kind: str | None, span: str | None) -> Key | None:
        """Nearest call/return key of ``span`` (or of any span) beyond ``here``, from the span table."""
        candidates: list[Key] = []
        spans = [self._index.spans[span]] if span is not None and span in self._index.spans else (
            [] if span is not None else list(self._index.spans.values()))
        for s in spans:
            for k, key in (("call", s.call_key), ("return", s.return_key)):
                if key is not None and (kind is None or kind == k) and (key > here if forward else key < here):
                    candidates.append(key)
        if not candidates:
            return None
        return min(candidates) if forward else max(candidates)

    def _event_key(self, here: Key, forward: bool, kind: str | None, var: str | None, line: int | None,
                   text: str | None, span: str | None) -> Key | None:
        key_expr = "(if({multi:UInt8}, e.Hlc, 0), e.Seq, 0)"
        conditions = [f"{key_expr} {'>' if forward else '<'} ({{k0:UInt64}}, {{k1:UInt64}}, {{k2:UInt8}})",
                      "e.TraceId = {trace:String}", "e.EventName IN {names:Array(String)}"]
        names = [n for n, k in _EVENT_KIND.items() if kind is None or k == kind]
        k0, k1, k2 = self._parts(here)
        params = self._params(k0=k0, k1=k1, k2=k2, names=names)
        if var is not None:
            conditions.append("e.EventName = 'execscope.assign' AND e.VarName = {var:String}")
            params["var"] = var
        if line is not None:
            conditions.append("e.EventName = 'execscope.line' AND e.LineNumber = {line:UInt32}")
            params["line"] = line
        if span is not None:
            conditions.append("e.SpanId = {span:String}")
            params["span"] = span
        join = ""
        if text is not None:
            join = ("LEFT JOIN (SELECT node_id, any(code) AS code FROM cpg_nodes GROUP BY node_id) AS n "
                    "ON n.node_id = e.NodeId")
            conditions.append("(positionCaseInsensitiveUTF8(e.VarValue, {text:String}) > 0 OR "
                              "positionCaseInsensitiveUTF8(e.VarName, {text:String}) > 0 OR "
                              "positionCaseInsensitiveUTF8(n.code, {text:String}) > 0)")
            params["text"] = text
        sql = (f"SELECT e.Seq, e.Hlc FROM execscope_events AS e {join} "
               f"WHERE {' AND '.join(conditions)} ORDER BY {key_expr} {'ASC' if forward else 'DESC'} LIMIT 1")
        rows = self.store.query(sql, parameters=params).rows
        if not rows:
            return None
        seq, ts = rows[0]
        return self._key(ts, seq)

    def step_over(self, index: int, forward: bool = True) -> int | None:
        """Next (previous) frame of the same call, skipping callees; at the call's end, its caller's."""
        here = self.frame(index)
        found = self.find(index, forward, span=here["span_id"])
        if found is not None:
            return found
        return self.step_out(index, forward)

    def step_out(self, index: int, forward: bool = True) -> int | None:
        """The frame right after this call returns (forward) or the one before the call (backward)."""
        here = self.frame(index)
        span = self._index.spans.get(here["span_id"])
        if span is None:
            return None
        if forward:
            end = span.return_key
            if end is None:  # the call failed: no return frame; the first frame past its end (its own
                # exception frames, caught ones included, all come before)
                return min(self.position_of((span.h1, span.s1, 1) if self.multi else span.s1), self.total - 1)
            return min(self.position_of(end) + 1, self.total - 1)
        start = self.position_of(span.call_key)
        return max(start - 1, 0)

    # --- loading -----------------------------------------------------------------------------------
    def _window(self, n: int) -> list[dict[str, Any]]:
        cached = self._windows.get(n)
        if cached is not None:
            self._windows.move_to_end(n)
            return cached
        keys = self._index.keys[n * self.window: (n + 1) * self.window]
        frames = self._build(keys, n * self.window) if keys else []
        self._windows[n] = frames
        if len(self._windows) > self._cached:
            self._starts.pop(self._windows.popitem(last=False)[0], None)
        return frames

    def _build(self, keys: list[Key], first_index: int) -> list[dict[str, Any]]:
        lo, hi = self._parts(keys[0]), self._parts(keys[-1])
        events: dict[Key, tuple[Any, ...]] = {}
        spans = self._index.spans
        live = self._alive(keys[0], inclusive=False)
        before: list[tuple[Any, ...]] | None = None
        if self.multi:
            rows = self.store.query(WINDOW_EVENTS_SQL, parameters=self._params(
                names=list(_EVENT_NAMES), lo=lo[1], hi=hi[1], lo_ts=lo[0], hi_ts=hi[0])).rows
        else:  # one query: the window, what the calls alive at its start did before it, and the
            # details of the calls it shows (every event's call is alive at the start or starts in it)
            shown = list(live) + [e[1] for e in map(self._index.by_key.get, keys) if e is not None]
            rows, before = self._window_and_state(live, lo[1], hi[1], self._missing_blocks(shown))
        for row in rows:
            events[self._key(row[3], row[2])] = row
        used = {id(s): s for s in live}
        for key in keys:
            entry = self._index.by_key.get(key)
            if entry is not None:
                used[id(entry[1])] = entry[1]
        for row in events.values():
            span_of = spans.get(row[1])
            if span_of is not None:
                used[id(span_of)] = span_of
        self._details(list(used.values()))
        local, last_line = self._state_before(live, lo) if before is None else self._state_from(live, before)
        self._starts[first_index // self.window] = ({k: dict(v) for k, v in local.items()}, dict(last_line))
        self._load_node_lines(events.values())
        out: list[dict[str, Any]] = []
        for i, key in enumerate(keys):
            entry = self._index.by_key.get(key)
            if entry is not None:
                kind, span = entry
                node_id, line, var, value = span.node_id, 0, "", span.returned if kind == "return" else ""
                timestamp = span.start if kind == "call" else span.t1
            else:
                found = events.get(key)
                if found is None:  # an event written after the index was read: skip it
                    continue
                event, span_id, _seq, _ts_ns, timestamp, node_id, line, var, value = found
                kind = _EVENT_KIND[event]
                span = spans.get(span_id)  # type: ignore[assignment]
            span_id = span.span_id if span is not None else ""
            variables = local.setdefault(span_id, {})
            version = span.code_version if span is not None else ""
            if kind == "call":
                variables.clear()
                variables.update(span.args)
                line = span.line
            elif kind == "assign":
                var = variable_label(span.node_id if span is not None else "", node_id, var)
                variables[var] = value
            if not line:
                line = (last_line.get(span_id, 0) if kind == "return" else
                        self._node_lines.get((version, node_id), 0) or last_line.get(span_id, 0))
            if kind in ("line", "call"):
                last_line[span_id] = line
            frame: dict[str, Any] = {
                "seq": first_index + i,
                "timestamp": _iso(timestamp),
                "node_id": node_id,
                "kind": kind,
                "function": span.function if span is not None else "",
                "file": span.file if span is not None else "",
                "line": line,
                "source": self._source_line(version, span.file if span is not None else "", line),
                "depth": span.depth if span is not None else 0,
                "locals": dict(variables),
                "span_id": span_id,
                "_version": version,
                "_key": key,
            }
            if kind == "assign":
                frame["var"], frame["value"] = var, value
            elif kind == "return":
                frame["value"] = value
            elif kind == "exception":
                frame["exception"] = f"{var}: {value}" if value else var
            out.append(frame)
        return out

    ALIVE_BLOCK = 64
    """Calls in call order are grouped in blocks of this many, each with the latest end among them:
    finding the calls alive at a frame skips every block that ended before it."""

    def _calls_in_order(self) -> list[_Span]:
        if self._by_call is None:
            self._by_call = sorted(self._index.spans.values(), key=lambda sp: sp.call_key)
            self._call_rank = {id(sp): i for i, sp in enumerate(self._by_call)}
        return self._by_call

    def _end(self, s: _Span) -> Key:
        """The key a call is alive up to (inclusive): its return, or for a failed call the end of its
        time (several processes) or sequence range."""
        if s.return_key is not None:
            return s.return_key
        return (s.h1, 1 << 64, 2) if self.multi else s.s1

    def _alive_index(self) -> None:
        by_call = self._calls_in_order()
        self._call_keys = [s.call_key for s in by_call]
        ends = [self._end(s) for s in by_call]
        self._end_of = {id(s): e for s, e in zip(by_call, ends)}
        b = self.ALIVE_BLOCK
        self._block_end = [max(ends[i:i + b]) for i in range(0, len(ends), b)]

    def _alive(self, key: Key, inclusive: bool) -> list[_Span]:
        """Calls started before ``key`` (or at it) and not returned before it, in call order."""
        by_call, end_of, b = self._calls_in_order(), self._end_of, self.ALIVE_BLOCK
        n = (bisect.bisect_right if inclusive else bisect.bisect_left)(self._call_keys, key)
        out: list[_Span] = []
        for block, latest in enumerate(self._block_end[:(n + b - 1) // b]):
            if latest >= key:
                out.extend(s for s in by_call[block * b:min(n, (block + 1) * b)] if end_of[id(s)] >= key)
        return out

    RECENT = 2048
    """A call that started at most this many sequence numbers before a window has its state read by
    replaying its events up to the window; an older one through its write index."""

    def _writes(self, spans: list[_Span]) -> None:
        """Index the writes and lines of these calls (sequence numbers per variable, and of their
        line events), once per call: its state before any point is then a few primary-key reads."""
        todo = [s for s in spans if s.span_id not in self._write_index]
        if not todo:
            return
        for s in todo:
            self._write_index[s.span_id] = {}
        for span_id, event, name, target, seqs in self.store.query(WRITES_INDEX_SQL, parameters=self._params(
                spans=[s.span_id for s in todo], lo=min(s.s0 for s in todo), hi=max(s.s1 for s in todo))).rows:
            self._write_index[span_id][(event, name, target)] = seqs

    def index_long_calls(self, frames: int = 65_536) -> None:
        """Index the writes of the calls spanning more than ``frames`` sequence numbers now (one
        query), instead of on the first window inside each: a debugger calls this when it opens a
        trace, so no step pays for it. Several processes: nothing to do (windows read the state)."""
        if not self.multi:
            self._writes([s for s in self._index.spans.values() if s.s1 - s.s0 > frames])

    def _window_and_state(self, live: list[_Span], lo: int, hi: int, missing: list[_Span] | None = None
                          ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """(events of sequence numbers lo..hi, the events giving the state of the live calls before
        lo): the window read with, in the same query, the recent live calls' writes and lines before
        it and the last write of each variable (and the last line) of the older ones."""
        recent = [s for s in live if lo - s.s0 <= self.RECENT]
        old = [s for s in live if lo - s.s0 > self.RECENT]
        self._writes(old)
        points: list[int] = []
        for s in old:
            for seqs in self._write_index[s.span_id].values():
                i = bisect.bisect_left(seqs, lo) - 1
                if i >= 0:
                    points.append(seqs[i])
        sql = WINDOW_STATE_SQL
        params = self._params(names=list(_EVENT_NAMES), lo=lo, hi=hi)
        if recent:
            sql += WINDOW_RECENT_SQL
            params.update(recent=[s.span_id for s in recent], since=min(s.s0 for s in recent))
        if points:
            sql += WINDOW_POINTS_SQL
            params.update(old=[s.span_id for s in old], points=sorted(points))
        sql += ")"
        if missing:
            blocks: dict[int, list[_Span]] = {}
            for span in missing:
                blocks.setdefault(self._call_rank[id(span)] // self.DETAIL_BLOCK, []).append(span)
            sql += WINDOW_DETAILS_SQL.replace("{blocks}", " OR ".join(
                WINDOW_DETAILS_BLOCK.format(n=n) for n in range(len(blocks))))
            for n, block in enumerate(blocks.values()):
                params.update({f"t0_{n}": min(s.t0 for s in block), f"t1_{n}": max(s.t0 for s in block),
                               f"s0_{n}": min(s.s0 for s in block), f"s1_{n}": max(s.s0 for s in block)})
        window: list[tuple[Any, ...]] = []
        before: list[tuple[Any, ...]] = []
        details: list[tuple[Any, ...]] = []
        for row in self.store.query(sql, parameters=params).rows:
            if not row[0]:
                details.append((row[1], row[5], row[7], row[9], row[10], row[6], row[11], row[4], row[8]))
            else:
                (window if row[2] >= lo else before).append(row[:9])
        if missing:
            self._set_details({s.span_id: s for s in missing}, details)
        before.sort(key=lambda r: r[2])
        return window, before

    def _state_from(self, live: list[_Span], rows: list[tuple[Any, ...]]
                    ) -> tuple[dict[str, dict[str, str]], dict[str, int]]:
        """What :meth:`_state_before` gives, from the rows :meth:`_window_and_state` read before the
        window (in sequence order)."""
        local: dict[str, dict[str, str]] = {s.span_id: dict(s.args) for s in live}
        last_line: dict[str, int] = {}
        spans = self._index.spans
        for event, span_id, _seq, _ts, _t, node_id, line, name, value in rows:
            if span_id not in local:
                continue
            if event == "execscope.line":
                last_line[span_id] = line
            elif event == "execscope.assign":
                local[span_id][variable_label(spans[span_id].node_id, node_id, name)] = value
        return local, last_line

    def _state_before(self, live: list[_Span], before: tuple[int, int, int]
                      ) -> tuple[dict[str, dict[str, str]], dict[str, int]]:
        """Variables (arguments, then the last value written) and last line of each live call, from
        what happened strictly before ``before`` (timestamp, sequence, _)."""
        local: dict[str, dict[str, str]] = {s.span_id: dict(s.args) for s in live}
        last_line: dict[str, int] = {}
        if live:
            spans = self._index.spans
            for span_id, event, name, (value, target, line) in self.store.query(STATE_BEFORE_SQL, parameters=(
                    self._params(spans=[s.span_id for s in live], lo=before[1], lo_ts=before[0]))).rows:
                if event == "execscope.line":
                    last_line[span_id] = line
                else:
                    local[span_id][variable_label(spans[span_id].node_id, target, name)] = value
        return local, last_line

    def stack_at(self, index: int) -> list[tuple[int, str, str, dict[str, str]]]:
        """(depth, function, span id, variables) of every call alive at frame ``index``, outermost
        first, with what that frame itself wrote: what a debugger shows in each stack frame."""
        key = self._index.keys[index]
        ts, seq, _ = self._parts(key)
        live = self._alive(key, inclusive=True)
        self._details(live)
        local, _ = self._state_before(live, (ts, seq + 1, 0))
        return [(s.depth, s.function, s.span_id, local[s.span_id]) for s in live]

    def call_stack(self, index: int) -> list[tuple[_Span, dict[str, str], int]]:
        """Like :meth:`stack_at`, with each call's details loaded and the last line it ran up to frame
        ``index`` (0 when none): one query for every live call."""
        key = self._index.keys[index]
        ts, seq, _ = self._parts(key)
        live = self._alive(key, inclusive=True)
        self._details(live)
        replayed = self._replay(index)
        local, last_line = replayed if replayed is not None else self._state_before(live, (ts, seq + 1, 0))
        return [(s, local.get(s.span_id) or dict(s.args), last_line.get(s.span_id, 0)) for s in live]

    def _replay(self, index: int) -> tuple[dict[str, dict[str, str]], dict[str, int]] | None:
        """Variables and last line of every call up to frame ``index`` included, from its cached
        window: the state at the window's start, then the window's frames (no query); None when the
        window is not cached."""
        n = index // self.window
        frames, start = self._windows.get(n), self._starts.get(n)
        if frames is None or start is None or len(frames) != len(self._index.keys[n * self.window:
                                                                                   (n + 1) * self.window]):
            return None
        local = {k: dict(v) for k, v in start[0].items()}
        last_line = dict(start[1])
        spans = self._index.spans
        for frame in frames[:index - n * self.window + 1]:
            span_id, kind = frame["span_id"], frame["kind"]
            if kind == "call":
                span = spans.get(span_id)
                local[span_id] = dict(span.args) if span is not None else {}
            elif kind == "assign":
                local.setdefault(span_id, {})[frame["var"]] = frame["value"]
            elif kind == "line":
                last_line[span_id] = frame["line"]
        return local, last_line

    def _load_node_lines(self, rows: Any) -> None:
        wanted: dict[str, set[str]] = {}
        for row in rows:
            span = self._index.spans.get(row[1])
            if not row[6] and span is not None and (span.code_version, row[5]) not in self._node_lines:
                wanted.setdefault(span.code_version, set()).add(row[5])
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


_EPOCH = datetime(1970, 1, 1)


def _iso(value: Any) -> str:
    if isinstance(value, int):  # nanoseconds since the epoch
        import datetime as _dt

        return _dt.datetime.fromtimestamp(value / 1e9, tz=_dt.timezone.utc).replace(tzinfo=None).isoformat()
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


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


def open_cinema(store: Store, trace_id: str, window: int = 256) -> Cinema:
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
