"""The interactive execution cinema (Textual): step through a recorded trace forwards and backwards.

The screen shows the source around the current line (marked ``▶``), the running function's
variables, and where the frame is. Frames come from :class:`execscope.queries.cinema.Cinema`, which
loads windows on demand, so a long trace opens as fast as a short one.

Keys: ``→``/``n`` step, ``←``/``p`` step back, ``o``/``O`` step over forwards/backwards, ``u``/``U``
step out forwards/backwards, ``e``/``E`` next/previous exception, ``w``/``W`` next/previous write of
a variable, ``l`` jump to a line, ``g`` go to a frame number, ``/``/``?`` search forwards/backwards,
``b`` set a breakpoint (line, function, structural, data-flow or watch, with ``if CONDITION``), ``c``/``C``
continue to the next/previous breakpoint stop, ``Home``/``End`` first/last frame, ``q`` quit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Input, Static

from execscope.queries.cinema import Cinema

_PROMPTS = {
    "write": "next write of variable:", "write_back": "previous write of variable:", "line": "go to line:",
    "goto": "go to frame:", "search": "search forwards:", "search_back": "search backwards:",
    "break": "breakpoint (FILE:LINE, NAME, call NAME in loop, flow FUNC.VAR, watch FUNC.VAR) [if CONDITION]:",
}


class CinemaApp(App[None]):
    CSS = """
    #where { height: 1; background: $boost; }
    #body { height: 1fr; }
    #source { width: 2fr; border: round $primary; padding: 0 1; }
    #locals { width: 1fr; border: round $secondary; padding: 0 1; }
    #status { height: 1; }
    #prompt { display: none; }
    #prompt.visible { display: block; }
    """
    BINDINGS = [
        Binding("right,n", "step(1)", "step"), Binding("left,p", "step(-1)", "back"),
        Binding("o", "over(True)", "over"), Binding("O", "over(False)", "over back"),
        Binding("u", "out(True)", "out"), Binding("U", "out(False)", "out back"),
        Binding("e", "exception(True)", "exception"), Binding("E", "exception(False)", "exc back", show=False),
        Binding("w", "ask('write')", "write of"), Binding("W", "ask('write_back')", "write back", show=False),
        Binding("b", "ask('break')", "break"), Binding("c", "run(True)", "continue"),
        Binding("C", "run(False)", "continue back", show=False),
        Binding("l", "ask('line')", "line"), Binding("g", "ask('goto')", "frame"),
        Binding("slash", "ask('search')", "search"), Binding("question_mark", "ask('search_back')", "search back",
                                                              show=False),
        Binding("home", "jump(0)", "first", show=False), Binding("end", "jump(-1)", "last", show=False),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, cinema: Cinema, at: int = 0) -> None:
        super().__init__()
        self.cinema = cinema
        self.index = max(0, min(at, cinema.total - 1))
        self._asking: str | None = None
        self._breakpoints: list[Any] = []
        self._matcher: Any = None

    def compose(self) -> ComposeResult:
        yield Static(id="where")
        with Horizontal(id="body"):
            yield Static(id="source")
            yield Static(id="locals")
        yield Static(id="status")
        yield Input(id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"execscope cinema {self.cinema.trace_id}"
        self.query_one("#prompt", Input).disabled = True  # keys go to the bindings until a prompt opens
        self.set_focus(None)
        self.show()

    # --- rendering ---------------------------------------------------------------------------------
    def show(self, message: str = "") -> None:
        f = self.cinema.frame(self.index)
        where = (f"frame {self.index}/{self.cinema.total - 1}  {f['kind']:<9} {f['function']}  "
                 f"{f['file']}:{f['line']}  depth {f['depth']}")
        self.query_one("#where", Static).update(Text(where, no_wrap=True, overflow="ellipsis"))
        self.query_one("#source", Static).update(self._source(f))
        self.query_one("#locals", Static).update(self._locals(f))
        detail = ""
        if f["kind"] == "assign":
            detail = f"{f['var']} = {f['value']}"
        elif f["kind"] == "return":
            detail = f"return {f['value']}"
        elif f["kind"] == "exception":
            detail = f"raised {f['exception']}"
        self.query_one("#status", Static).update(Text(message or detail, no_wrap=True, overflow="ellipsis"))

    def _source(self, f: dict[str, Any]) -> Text:
        version = f.get("_version", "")
        lines = self.cinema.source_lines(version, f["file"]) if version else None
        text = Text(no_wrap=True, overflow="ellipsis")
        height = max(5, self.size.height - 6)
        if not lines:
            text.append(f"{f['line']:>5} ▶ {f['source']}\n", style="bold reverse")
            return text
        current = f["line"]
        start = max(1, current - height // 2)
        for n in range(start, min(len(lines), start + height - 1) + 1):
            marker = "▶" if n == current else " "
            style = "bold reverse" if n == current else ""
            text.append(f"{n:>5} {marker} {lines[n - 1]}\n", style=style)
        return text

    @staticmethod
    def _locals(f: dict[str, Any]) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("variables\n", style="bold underline")
        if not f["locals"]:
            text.append("(none yet)\n", style="dim")
        for name, value in f["locals"].items():
            changed = f["kind"] == "assign" and f.get("var") == name
            text.append(f"{name} = ", style="bold" if changed else "")
            text.append(f"{value}\n", style="bold yellow" if changed else "")
        return text

    # --- moving ------------------------------------------------------------------------------------
    def _go(self, target: int | None, what: str) -> None:
        if target is None:
            self.show(f"no {what}")
            return
        self.index = max(0, min(target, self.cinema.total - 1))
        self.show()

    def action_step(self, delta: int) -> None:
        self._go(self.index + delta if 0 <= self.index + delta < self.cinema.total else None,
                 "further frame" if delta > 0 else "earlier frame")

    def action_jump(self, target: int) -> None:
        self._go(target if target >= 0 else self.cinema.total + target, "frame")

    def action_over(self, forward: bool) -> None:
        self._go(self.cinema.step_over(self.index, forward), "frame in this call")

    def action_out(self, forward: bool) -> None:
        self._go(self.cinema.step_out(self.index, forward), "caller")

    def action_exception(self, forward: bool) -> None:
        self._go(self.cinema.find(self.index, forward, kind="exception"), "exception")

    def action_run(self, forward: bool) -> None:
        """Continue forwards (backwards) to the next stop of any breakpoint set with ``b``."""
        if not self._breakpoints:
            self.show("no breakpoints: set one with b")
            return
        found = self._matcher.next_stop(self._breakpoints, self.index, forward)
        self._go(None if found is None else found[0], "breakpoint hit " + ("ahead" if forward else "behind"))

    def _set_breakpoint(self, value: str) -> None:
        from execscope.queries.breakpoints import BreakpointError, Breakpoints, Threads, parse_spec
        from execscope.queries.safe_eval import EvalError

        spec, _, condition = value.partition(" if ")
        if self._matcher is None:
            self._matcher = Breakpoints(self.cinema, Threads(self.cinema))
        try:
            bp = parse_spec(self._matcher, spec, condition.strip() or None)
        except (BreakpointError, EvalError) as exc:
            self.show(str(exc))
            return
        self._breakpoints.append(bp)
        self.show(f"breakpoint {bp.id}: {bp.description} ({len(bp.positions)} executions); c / C to run to it")

    def action_ask(self, what: str) -> None:
        self._asking = what
        prompt = self.query_one("#prompt", Input)
        prompt.placeholder = _PROMPTS[what]
        prompt.value = ""
        prompt.disabled = False
        prompt.add_class("visible")
        prompt.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        prompt = self.query_one("#prompt", Input)
        prompt.remove_class("visible")
        prompt.disabled = True
        what, value = self._asking, event.value.strip()
        self._asking = None
        self.set_focus(None)
        if not value or what is None:
            self.show()
            return
        actions: dict[str, Callable[[], int | None]] = {
            "write": lambda: self.cinema.find(self.index, True, var=value),
            "write_back": lambda: self.cinema.find(self.index, False, var=value),
            "search": lambda: self.cinema.find(self.index, True, text=value),
            "search_back": lambda: self.cinema.find(self.index, False, text=value),
        }
        if what == "break":
            self._set_breakpoint(value)
            return
        if what in ("line", "goto"):
            if not value.isdigit():
                self.show(f"not a number: {value}")
                return
            number = int(value)
            if what == "goto":
                self._go(number if number < self.cinema.total else None, f"frame {number}")
            else:
                target = self.cinema.find(self.index, True, line=number)
                if target is None:
                    target = self.cinema.find(self.index, False, line=number)
                self._go(target, f"frame at line {number}")
            return
        self._go(actions[what](), f"match for {value!r}")


def run_cinema(cinema: Cinema, at: int = 0) -> None:
    CinemaApp(cinema, at).run()
