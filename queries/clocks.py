"""Processes and their clocks: the process registry and the clock-skew estimates between processes.

Every recording process names itself in its spans' resource (``execscope.process.id``, ``host.name``,
``process.pid``, ``execscope.process.start_ns``) and records every message it receives from another
recording process (``execscope_clock_messages``: the sender's physical send time and its own receive
time, each on its own clock; see instrumentation/capture/clocks.py).

Skew of a pair (a, b), ``clock_b - clock_a``: a message a -> b took ``delay >= 0``, so
``recv_b - sent_a = delay + skew`` bounds the skew from above by the smallest such difference; a
message b -> a bounds it from below by ``-(min(recv_a - sent_b))``. With messages both ways (a
request and its response, a Kafka request and its reply) the estimate is the middle of the bounds
(for one request/response pair, NTP's ``((t2 - t1) + (t3 - t4)) / 2``), good to half the smallest
round trip; one-way traffic gives only its bound.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from execscope.storage.store import QueryResult, Store

PAIRS_SQL = """
SELECT Sender, Receiver, min(ReceivedNs - SentNs), count(), arrayStringConcat(arraySort(groupUniqArray(Transport)), ',')
FROM execscope_clock_messages
WHERE Sender != '' AND Receiver != '' AND Sender != Receiver
  AND ({trace:String} = '' OR (Sender IN (SELECT DISTINCT ResourceAttributes['execscope.process.id'] FROM otel_traces
                                          WHERE TraceId = {trace:String})
                               AND Receiver IN (SELECT DISTINCT ResourceAttributes['execscope.process.id']
                                                FROM otel_traces WHERE TraceId = {trace:String})))
GROUP BY Sender, Receiver
"""
PROCESSES_SQL = """
SELECT ResourceAttributes['execscope.process.id'] AS process, any(ServiceName) AS service,
       anyIf(ResourceAttributes['host.name'], ResourceAttributes['host.name'] != '') AS host,
       anyIf(ResourceAttributes['process.pid'], ResourceAttributes['process.pid'] != '') AS pid,
       fromUnixTimestamp64Nano(min(toInt64OrZero(ResourceAttributes['execscope.process.start_ns']))) AS started,
       toUInt64(countIf(SpanName != 'execscope.receive')) AS spans, toUInt64(countIf(NodeId != '')) AS calls,
       toUInt64(countIf(ParentSpanId = '')) AS roots,
       max(Hlc - toUInt64(toUnixTimestamp64Nano(Timestamp))) AS max_lead_ns,
       min(Timestamp) AS first_span
FROM otel_traces
WHERE ({trace:String} = '' OR TraceId = {trace:String}) AND ResourceAttributes['execscope.process.id'] != ''
GROUP BY process
ORDER BY roots > 0 DESC, started, process
"""


@dataclass(frozen=True, slots=True)
class Skew:
    """``clock_b - clock_a`` of two processes that talked: bounds (ns; None when no message went that
    way) and the estimate (ns; None without messages both ways)."""

    a: str
    b: str
    lower_ns: int | None
    upper_ns: int | None
    messages_ab: int
    messages_ba: int
    transports: str

    @property
    def estimate_ns(self) -> int | None:
        if self.lower_ns is None or self.upper_ns is None:
            return None
        return (self.lower_ns + self.upper_ns) // 2


def skews(store: Store, trace: str = "") -> list[Skew]:
    """One :class:`Skew` per pair of processes that talked (in ``trace``'s processes when given)."""
    found: dict[tuple[str, str], tuple[int, int, str]] = {}
    for sender, receiver, delta, count, transports in store.query(
            PAIRS_SQL, parameters={"trace": trace.strip().lower()}).rows:
        found[(sender, receiver)] = (int(delta), int(count), transports)
    out = []
    for a, b in sorted({tuple(sorted(pair)) for pair in found}):
        forth, back = found.get((a, b)), found.get((b, a))
        out.append(Skew(a, b, -back[0] if back else None, forth[0] if forth else None,
                        forth[1] if forth else 0, back[1] if back else 0,
                        ",".join(sorted({t for x in (forth, back) if x for t in x[2].split(",") if t}))))
    return out


def _ms(ns: int | None) -> float | None:
    return None if ns is None else round(ns / 1e6, 3)


def offsets_from(reference: str, pairs: list[Skew]) -> dict[str, int]:
    """Each process's clock minus ``reference``'s (ns), along estimated pairs (sums over a path)."""
    graph: dict[str, list[tuple[str, int]]] = {}
    for s in pairs:
        est = s.estimate_ns
        if est is not None:
            graph.setdefault(s.a, []).append((s.b, est))
            graph.setdefault(s.b, []).append((s.a, -est))
    offsets = {reference: 0}
    todo = deque([reference])
    while todo:
        here = todo.popleft()
        for there, est in graph.get(here, ()):
            if there not in offsets:
                offsets[there] = offsets[here] + est
                todo.append(there)
    return offsets


def clock_skew(store: Store, trace: str = "") -> QueryResult:
    """``execscope query clock-skew``: per pair of processes that talked, the estimated skew
    (``process_b``'s clock minus ``process_a``'s, ms), its bounds and the messages behind it."""
    names = {row[0]: row for row in store.query(PROCESSES_SQL, parameters={"trace": ""}).rows}
    rows = []
    for s in skews(store, trace):
        a, b = names.get(s.a), names.get(s.b)
        rows.append((s.a, a[1] if a else "", s.b, b[1] if b else "", _ms(s.estimate_ns), _ms(s.lower_ns),
                     _ms(s.upper_ns), s.messages_ab, s.messages_ba,
                     "round trip" if s.estimate_ns is not None else "one way: bound only", s.transports))
    return QueryResult(["process_a", "service_a", "process_b", "service_b", "skew_ms", "lower_ms", "upper_ms",
                        "messages_ab", "messages_ba", "method", "transports"], rows)


def processes(store: Store, trace: str = "") -> QueryResult:
    """``execscope query processes``: the processes (and hosts) a trace touched, or every recorded one:
    service, host, pid, start, spans and calls, the clock offset estimated against the first process
    (the one holding the trace's root span; ms, empty when no round trip links them) and the most the
    hybrid logical clock ran ahead of the process's own (ms)."""
    rows = store.query(PROCESSES_SQL, parameters={"trace": trace.strip().lower()}).rows
    if trace and not rows:
        raise LookupError(f"no spans of recording processes in trace {trace!r}")
    offsets = offsets_from(rows[0][0], skews(store, trace)) if rows else {}
    out: list[tuple[Any, ...]] = []
    for process, service, host, pid, started, spans, calls, _roots, lead, first in rows:
        out.append((process, service, host, pid, started, first, spans, calls, _ms(offsets.get(process)),
                    _ms(int(lead))))
    return QueryResult(["process", "service", "host", "pid", "started", "first_span", "spans", "calls",
                        "clock_offset_ms", "hlc_lead_ms"], out)
