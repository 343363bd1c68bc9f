"""The replay runtime the DAP session drives: where we are in a recording, and how to move.

The shape of ``vscode-mock-debug``'s ``MockRuntime``: the session translates requests into calls on
this object; this object keeps the position (a cinema frame) and asks the cinema
(:mod:`execscope.queries.cinema`) and the breakpoint matcher (:mod:`execscope.queries.breakpoints`)
for everything it shows. Every move returns a :class:`Stop` (position and reason) or None.

Threading: one runtime per session, used from the session's thread only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from execscope.queries.breakpoints import Breakpoint, Breakpoints, Thread, Threads
from execscope.queries.cinema import Cinema
from execscope.queries.safe_eval import evaluate, render

STOP_KINDS = ("line", "exception")
"""Frames a step stops at (calls, returns, branch arms and writes are passed over)."""
SCAN_LIMIT = 50_000


@dataclass(slots=True)
class Stop:
    position: int
    reason: str
    breakpoints: list[Breakpoint] = field(default_factory=list)
    text: str = ""


@dataclass(slots=True)
class StackEntry:
    span_id: str
    function: str
    file: str
    line: int
    position: int
    """The frame this entry shows (the innermost: the current one; outer: the caller's last line)."""
    code_version: str
    variables: dict[str, str]


class ReplayRuntime:
    def __init__(self, cinema: Cinema) -> None:
        self.cinema = cinema
        self.threads = Threads(cinema)
        self.matcher = Breakpoints(cinema, self.threads)
        self.position = 0
        self.line_breakpoints: dict[str, list[Breakpoint]] = {}
        self.function_breakpoints: list[Breakpoint] = []
        self.data_breakpoints: list[Breakpoint] = []
        self.exception_breakpoint: Breakpoint | None = None
        cinema.index_long_calls()

    # --- where we are -------------------------------------------------------------------------------
    def frame(self, position: int | None = None) -> dict[str, Any]:
        return self.cinema.frame(self.position if position is None else position)

    def thread_of(self, position: int | None = None) -> Thread | None:
        if len(self.threads.threads) <= 1:  # one thread: no frame to read
            return self.threads.threads[0] if self.threads.threads else None
        return self.threads.of_span(self.frame(position)["span_id"])

    def stack(self, thread_id: int | None = None) -> list[StackEntry]:
        """Live calls of a thread at the current position, innermost first, with their variables."""
        here = self.frame()
        current = self.thread_of()
        wanted = self.threads.get(thread_id) if thread_id is not None else current
        live = self.cinema.call_stack(self.position)
        mine = [entry for entry in live if wanted is None or self.threads.of_span(entry[0].span_id) is wanted]
        out: list[StackEntry] = []
        for span, local, line in reversed(mine):
            if span.span_id == here["span_id"]:
                out.append(StackEntry(span.span_id, span.function, span.file, here["line"], self.position,
                                      span.code_version, dict(here["locals"]) | self._extra(here)))
            else:
                out.append(StackEntry(span.span_id, span.function, span.file, line or span.line, self.position,
                                      span.code_version, local))
        return out

    @staticmethod
    def _extra(frame: dict[str, Any]) -> dict[str, str]:
        if frame["kind"] == "return":
            return {"(return)": frame.get("value", "")}
        if frame["kind"] == "exception":
            return {"(exception)": repr(frame.get("exception", ""))}
        return {}

    def evaluate(self, expression: str, names: dict[str, str] | None = None) -> tuple[str, Any]:
        """``expression`` on recorded values: (as shown, the value). Raises EvalError."""
        value = evaluate(expression, self.frame()["locals"] if names is None else names)
        return render(value), value

    # --- moving -------------------------------------------------------------------------------------
    def _scan(self, start: int, forward: bool, thread: Thread | None, kinds: tuple[str, ...] = STOP_KINDS
              ) -> int | None:
        """The nearest frame of ``thread`` of one of ``kinds`` after (before) ``start``."""
        step = 1 if forward else -1
        i = start + step
        for _ in range(SCAN_LIMIT):
            if not 0 <= i < self.cinema.total:
                return None
            f = self.cinema.frame(i)
            if f["kind"] in kinds and (thread is None or self.threads.of_span(f["span_id"]) is thread):
                return i
            i += step
        return None

    def _move(self, target: int | None, reason: str = "step") -> Stop:
        if target is None:
            target = self.cinema.total - 1 if reason == "step" else self.position
        self.position = max(0, min(target, self.cinema.total - 1))
        return Stop(self.position, reason)

    def _near(self, forward: bool, span_id: str) -> int | None:
        """The nearest line frame of call ``span_id`` within the loaded window and the next one (no
        query when the window is cached); -1 when the call begins (ends) first, so it has none; None
        when the answer is further away."""
        window = self.cinema.window
        step = 1 if forward else -1
        edge = ((self.position // window + 2) * window if forward else (self.position // window - 1) * window - 1)
        i = self.position + step
        while 0 <= i < self.cinema.total and (i < edge if forward else i > edge):
            f = self.cinema.frame(i)
            if f["span_id"] == span_id:
                if f["kind"] == "line":
                    return i
                if f["kind"] == ("return" if forward else "call"):
                    return -1
            i += step
        return None

    def step_over(self, forward: bool = True) -> Stop:
        span = self.frame()["span_id"]
        found = self._near(forward, span)
        if found is None:
            found = self.cinema.find(self.position, forward, span=span, kind="line")
        elif found < 0:
            found = None
        if found is None:
            out = self.cinema.step_out(self.position, forward)
            if out is None:
                return self._move(0 if not forward else None)
            found = out if forward else self._scan(out + 1, False, self.thread_of(), ("line", "call")) or out
        return self._move(found)

    def step_in(self, forward: bool = True) -> Stop:
        found = self._scan(self.position, forward, self.thread_of())
        if found is None:
            return self.step_over(forward)
        return self._move(found)

    def step_out(self, forward: bool = True) -> Stop:
        found = self.cinema.step_out(self.position, forward)
        return self._move(found if found is not None else (None if forward else 0))

    def all_breakpoints(self) -> list[Breakpoint]:
        out = [bp for bps in self.line_breakpoints.values() for bp in bps]
        out += self.function_breakpoints + self.data_breakpoints
        if self.exception_breakpoint is not None:
            out.append(self.exception_breakpoint)
        return out

    def prepare(self, breakpoints: list[Breakpoint]) -> None:
        """Decide new breakpoints' conditions around the current position (when they are set)."""
        for bp in breakpoints:
            self.matcher.prepare(bp, self.position)

    def run(self, forward: bool = True, on_log: Any = None, start: int | None = None) -> Stop:
        """Continue (reverse-continue) to the nearest breakpoint that stops; at the recording's end
        (start), stop there with reason 'entry'."""
        here = self.position if start is None else start
        found = self.matcher.next_stop(self.all_breakpoints(), here, forward, on_log)
        if found is None:
            self.position = self.cinema.total - 1 if forward else 0
            return Stop(self.position, "entry", text="end of the recording" if forward else
                        "start of the recording")
        position, hits = found
        self.position = position
        kind = hits[0].kind
        reason = {"line": "breakpoint", "function": "function breakpoint", "structural": "function breakpoint",
                  "flow": "function breakpoint", "watch": "data breakpoint", "data": "data breakpoint",
                  "exception": "exception"}[kind]
        return Stop(position, reason, hits, hits[0].description)

    def goto(self, position: int) -> Stop:
        return self._move(position, "goto")

    def restart_frame(self, span_id: str) -> Stop:
        span = self.cinema.calls()[span_id]
        call = self.cinema.position_of(span.call_key)
        first = self.cinema.find(call, True, span=span_id, kind="line")
        return self._move(first if first is not None else call, "restart")

    def line_executions(self, file: str, line: int, limit: int = 1000) -> list[tuple[int, int, str]]:
        """(execution number from 1, position, function) of the executions of ``file:line`` (goto
        targets): all of them up to ``limit``, else ``limit`` spread evenly from the first to the last,
        so a line run 40,000 times still offers jumps across the whole trace."""
        bp = self.matcher.line(file, line)
        count = len(bp.positions)
        if count <= limit:
            chosen = list(range(count))
        else:
            chosen = sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})
        span_ids = bp.spans or []
        calls = self.cinema.calls()
        spans = [calls[span_ids[i]] for i in chosen if i < len(span_ids) and span_ids[i] in calls]
        self.cinema.load_calls(spans)
        names = {s.span_id: s.function for s in spans}
        return [(i + 1, bp.positions[i], names.get(span_ids[i], "") if i < len(span_ids) else "") for i in chosen]
